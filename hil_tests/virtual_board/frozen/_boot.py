# What an ESP32's firmware does between reset and the console: mount the flash at '/', then run
# boot.py and main.py from it. mcu.mjs imports this module before the console starts.
import asyncio
import os
import sys

import vfs
from flashfs import HostFlash

import __main__


def _run(main):
    # This port's asyncio has no run(): its tasks run on Node's event loop, which is already running.
    # So run() starts the task and returns at once; unlike on a board, the REPL stays reachable.
    return asyncio.create_task(main)


def start():
    """Mount the flash at '/' (the port mounts the Emscripten filesystem there) and supply asyncio.run."""
    vfs.umount("/")
    vfs.mount(HostFlash(), "/")
    os.chdir("/")
    asyncio.run = _run


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
