# What an ESP32's firmware does between reset and the console: mount the flash at '/', then run
# boot.py and main.py from it. mcu.mjs imports this module before the console starts.
import asyncio
import gc
import os
import sys
from binascii import hexlify

import _board
import _console
import vfs
from flashfs import HostFlash

import __main__

_main_task = None  # the task of asyncio.run() called by main.py, while it runs


def _run(main):
    # This port's asyncio has no run(): its tasks run on Node's event loop, which is already running.
    # So run() starts the task and returns at once. If main.py called it, mcu.mjs then keeps the REPL
    # off and gives the console to main.py until Ctrl-C or the end of the task, as a board does.
    global _main_task
    task = asyncio.create_task(_holding(main))
    if _main_task is None:
        _main_task = task
    return task


async def _holding(main):
    global _main_task
    try:
        return await main
    finally:
        if _main_task is asyncio.current_task():
            _main_task = None
            if _console.held:
                _console.held = False
                _board.release_console()  # mcu.mjs starts the REPL


def holds_console():
    """After main.py: True if it left a task running, which then holds the console."""
    _console.held = _main_task is not None
    return _console.held


def console_input(hex_data):
    """Bytes (in hex) that arrived on the console while main.py holds it."""
    _console.uart_input.receive(bytes.fromhex(hex_data))


def console_room():
    """How many bytes the console's receive buffer has room for."""
    return _console.uart_input.room()


def console_leftover():
    """What main.py left unread on the console (in hex): the REPL reads it next, as on a board."""
    return hexlify(_console.uart_input.read()).decode()


def interrupt():
    """Ctrl-C while main.py holds the console: its task ends; mcu.mjs starts the REPL."""
    global _main_task
    _console.held = False
    if _main_task is not None:
        _main_task.cancel()  # asyncio.run() would raise KeyboardInterrupt: its task sees CancelledError
        _main_task = None


class _ThreadSafeFlag:
    # ESP32's asyncio.ThreadSafeFlag, which this port lacks: set() from an IRQ handler wakes the task
    # in wait(), which clears it. Here IRQ handlers run on Node's event loop, as the tasks do, so an
    # Event is safe to set from them.
    def __init__(self):
        self._event = asyncio.Event()

    def set(self):
        self._event.set()

    def clear(self):
        self._event.clear()

    async def wait(self):
        await self._event.wait()
        self._event.clear()


def start():
    """Mount the flash at '/' (the port mounts the Emscripten filesystem there) and supply
    asyncio.run and asyncio.ThreadSafeFlag."""
    vfs.umount("/")
    vfs.mount(HostFlash(), "/")
    os.chdir("/")
    asyncio.run = _run
    asyncio.ThreadSafeFlag = _ThreadSafeFlag


_filler = None  # what fills the holes between the frozen modules
_reserved = None  # the VM's heap beyond the ESP32's: what the frozen modules took, and a block nobody uses
_reserved_bytes = 0


class _Gc:
    # gc as the firmware sees it: mem_alloc() leaves out the reserve (the frozen modules are in flash on
    # an ESP32); mem_free() is the VM's, whose heap cannot grow (mcu.mjs), so it is what is left of the
    # ESP32's. This port's gc cannot be changed, hence a stand-in in sys.modules.
    def __getattr__(self, name):
        return getattr(gc, name)

    def mem_alloc(self):
        return gc.mem_alloc() - _reserved_bytes


_PROBE_ITEMS = 32 * 1024  # a tuple of 128 KiB: larger than any hole the frozen modules leave


def fill_holes():
    """Fill the holes that the frozen modules' garbage left between them, so that the firmware's heap is
    one free block as on a freshly booted board; mcu.mjs calls it once that garbage is collected."""
    global _filler
    probe = (None,) * _PROBE_ITEMS  # lands where the free end of the heap starts: the holes are smaller
    chain = None
    while True:
        link = (chain, None)  # one 16-byte block, first fit: the lowest hole left
        if id(link) > id(probe):
            break
        chain = link
    _filler = chain


def limit_heap(heap_bytes, bare_bytes):
    """Leave the firmware `heap_bytes` of heap, less `bare_bytes` that the bare interpreter uses, as an
    ESP32's port has; mcu.mjs calls it once the frozen modules' garbage is collected."""
    global _reserved, _reserved_bytes
    spare = gc.mem_free() - (heap_bytes - bare_bytes)
    if spare < 0:
        raise MemoryError("the VM's heap is too small for the frozen modules and the ESP32's heap")
    _reserved = bytearray(spare)
    _reserved_bytes = gc.mem_alloc() - bare_bytes
    sys.modules["gc"] = _Gc()


def run_script(name):
    """Run a file from flash as MicroPython's pyexec_file_if_exists does; True if it asked for a soft reset."""
    try:
        with open(name) as f:
            source = f.read()
    except OSError:
        return False
    try:
        exec(compile(source, name, "exec"), __main__.__dict__)
    except SystemExit:
        return True
    except BaseException as e:  # a board prints any error of boot.py or main.py, then starts the REPL
        sys.print_exception(e)
    return False
