"""The ESP32's limits on the virtual board, as MicroPython's ESP32 port has them: the Python heap of
the profile's MCU, the console's 260-byte receive buffer (which a UART console overflows and a native
USB one does not), soft pin IRQs only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from textwrap import indent

import pytest
import serial

from simulator.virtual_board import BoardExecError, VirtualBoard
from simulator.virtual_board.board import HARD_RESET
from tests.virtual_board.conftest import read_when_written, run_mpremote, wait_for

HEAP_BYTES = {"esp32": 112 * 1024, "esp32s3": 128 * 1024}  # initial heap grown once (mcu.mjs)
BARE_BYTES = 16 * 1024  # at most what the interpreter and the raw REPL hold before the program runs
CHUNK = 1024
KEEP_CHUNKS = """\
kept = []
try:
    while True:
        kept.append(bytearray(1024))
except MemoryError as error:
    count, kept = len(kept), None
    print(count, error)
"""


@pytest.fixture(params=sorted(HEAP_BYTES))
def mcu_board(request: pytest.FixtureRequest, board_tools: None, tmp_path: Path) -> Iterator[VirtualBoard]:
    with VirtualBoard(tmp_path / "ttyBORNE0", tmp_path / "flash", mcu=request.param) as board:
        yield board


def test_the_heap_is_the_ports_for_the_mcu(mcu_board: VirtualBoard) -> None:
    used, free = map(int, mcu_board.exec("import gc; print(gc.mem_alloc(), gc.mem_free())").split())
    assert HEAP_BYTES[mcu_board.mcu] - BARE_BYTES <= used + free <= HEAP_BYTES[mcu_board.mcu]


def test_a_program_that_outgrows_the_heap_gets_memory_error(mcu_board: VirtualBoard) -> None:
    count, error = (mcu_board.exec(KEEP_CHUNKS) + " ").split(" ", 1)
    heap = HEAP_BYTES[mcu_board.mcu]
    assert (heap - BARE_BYTES) // (CHUNK + 32) <= int(count) < heap // CHUNK
    # The message, when there is room left to make it (else the port raises it bare, as here).
    assert error.strip() in ("", f"memory allocation failed, allocating {CHUNK} bytes")
    # The memory comes back: the board goes on.
    assert mcu_board.exec("print(len(bytearray(32 * 1024)))").strip() == str(32 * 1024)


# A program that filled the heap to its last block, and still holds it all.
FILL_THE_HEAP = """\
kept = []
for size in (1024, 64, 16):
    try:
        while True:
            kept.append(bytearray(size))
    except MemoryError:
        pass
"""


def on_a_full_heap(board: VirtualBoard, before: str, then: str) -> str:
    """Run `before` (what must exist first: objects allocate on a board too), fill the heap, run `then`
    on the full heap; "done" once it ran, the heap given back."""
    return board.exec(before + FILL_THE_HEAP + then + "kept = None\nprint('done')", timeout=20).strip()


def test_a_board_whose_heap_is_full_still_resets(mcu_board: VirtualBoard) -> None:
    # As a crash handler does once a task ran the heap out: machine.reset() is C on a board, which
    # allocates nothing (ports/esp32/modmachine.c), so it works on a full heap.
    (mcu_board.flash / "main.py").write_text(
        f"import machine\nif machine.reset_cause() != machine.HARD_RESET:\n{indent(FILL_THE_HEAP, '    ')}"
        "    machine.reset()\n"
    )
    boots = mcu_board.boots
    mcu_board.reset()
    wait_for(lambda: mcu_board.boots == boots + 2)  # the reset button's boot, then machine.reset()'s
    assert mcu_board.reset_cause == HARD_RESET


def test_the_watchdog_is_fed_and_pins_driven_on_a_full_heap(mcu_board: VirtualBoard) -> None:
    done = on_a_full_heap(
        mcu_board,
        "import machine\nwdt = machine.WDT(timeout=5000)\nled = machine.Pin(25, machine.Pin.OUT)\n",
        "wdt.feed()\nled.value(1)\nled.value()\n",
    )
    assert done == "done"


def test_an_open_file_and_nvs_are_written_on_a_full_heap(mcu_board: VirtualBoard) -> None:
    # A check-in's journal record and the frame counter: littlefs writes an open file through the
    # buffer it took at open, and NVS is ESP-IDF's C, so neither needs the Python heap.
    done = on_a_full_heap(
        mcu_board,
        "import esp32\nnvs = esp32.NVS('borne')\njournal = open('journal', 'wb')\nrecord = b'check-in record!'\n",
        "journal.write(record)\njournal.close()\nnvs.set_i32('counter', 7)\nnvs.commit()\n",
    )
    assert done == "done"
    kept = mcu_board.exec("import esp32\nprint(open('journal', 'rb').read(), esp32.NVS('borne').get_i32('counter'))")
    assert kept.strip() == "b'check-in record!' 7"


def test_one_allocation_larger_than_the_heap_fails(mcu_board: VirtualBoard) -> None:
    with pytest.raises(BoardExecError) as raised:
        mcu_board.exec(f"buffer = bytearray({HEAP_BYTES[mcu_board.mcu]})")
    assert "MemoryError" in raised.value.traceback


# The firmware polls the SX1262's BUSY line thousands of times a command and clocks every command over
# SPI: the ESP32's C does both without allocating (ports/esp32/machine_pin.c, machine_hw_spi.c), and
# so must the model, or its garbage fills the heap where the board's would not. Within one call this
# VM collects nothing: what gc.mem_alloc() gained is what was allocated (in a function: no new global).
POLL_AND_CLOCK = """\
import gc, machine
spi = machine.SPI(1, sck=machine.Pin(9), mosi=machine.Pin(10), miso=machine.Pin(11))
cs, busy = machine.Pin(8, machine.Pin.OUT, value=1), machine.Pin(13, machine.Pin.IN)
command, answer = bytearray(b"\\xc0\\x00"), bytearray(2)  # GetStatus
def exchange():
    while busy():  # the chip takes a command once BUSY is low (SX1261/2 datasheet section 8.3.1)
        pass
    cs(0)
    spi.write_readinto(command, answer)
    cs(1)
def measure():
    before = gc.mem_alloc()
    for _ in range(100):
        exchange()
    return gc.mem_alloc() - before
exchange()
print(measure(), answer[1] != 0)
"""


def test_pin_reads_and_spi_transfers_allocate_nothing(board_tools: None, tmp_path: Path) -> None:
    with VirtualBoard(tmp_path / "tty", tmp_path / "flash", radio="sx1262") as board:
        assert board.exec(POLL_AND_CLOCK).split() == ["0", "True"]  # the chip answered: it took part


# main.py holds the console and does not read it for a while, as firmware busy elsewhere.
SLOW_READER = """\
import asyncio, select, sys
async def main():
    await asyncio.sleep_ms(1500)
    poller = select.poll()
    poller.register(sys.stdin, select.POLLIN)
    got = b''
    while poller.poll(0):
        got += sys.stdin.buffer.read(64)
    with open('got.txt', 'w') as f:
        f.write(str(len(got)))
asyncio.run(main())
"""


def flood_console(board: VirtualBoard, main_py: str, flood: bytes) -> str:
    """Boot `main_py`, send `flood` to the console at once, and return what main.py wrote to got.txt."""
    (board.flash / "main.py").write_text(main_py)
    with serial.Serial(str(board.port), 115200, timeout=0.2) as console:
        board.reset()
        console.write(flood)
        return read_when_written(board.flash / "got.txt").decode()


def test_a_console_flood_beyond_the_uart_buffer_loses_the_excess(board: VirtualBoard) -> None:
    # ports/esp32/mphalport.c's 260-byte ring buffer, which keeps one slot free.
    assert flood_console(board, SLOW_READER, b"x" * 1000) == "259"


# main.py drains a full console buffer a byte at a time in one task step, as the bridge reads its link.
# The ESP32's stream read allocates the bytes it returns and nothing else (py/stream.c, from
# mphalport.c's ring buffer); within one call this VM collects nothing, so what gc.mem_alloc() gained
# is what the reads allocated. A model that copied the rest of its buffer at every read made garbage
# quadratic in the buffer's length: the bridge's heap ran out mid-step where a board's does not.
BYTEWISE_READER = """\
import asyncio, gc, sys
async def main():
    await asyncio.sleep_ms(1500)
    stdin = sys.stdin.buffer
    got = 0
    before = gc.mem_alloc()
    while stdin.read(1):
        got += 1
    grew = gc.mem_alloc() - before
    with open('got.txt', 'w') as f:
        f.write('%d %d' % (got, grew))
asyncio.run(main())
"""
# A read(1) allocates two 16-byte blocks on the ESP32 (the bytes object and its data); the model fills a
# buffer of its own first, twice that. Copying the rest of a full buffer at each read made over 200.
READ_BYTES_PER_BYTE = 80


def test_draining_the_console_buffer_bytewise_allocates_only_what_it_returns(board: VirtualBoard) -> None:
    got, grew = map(int, flood_console(board, BYTEWISE_READER, b"U" * 1000).split())
    assert got == 259
    assert grew <= got * READ_BYTES_PER_BYTE


@pytest.fixture
def usb_board(board_tools: None, tmp_path: Path) -> Iterator[VirtualBoard]:
    """A board whose console is the ESP32-S3's native USB, as the T3-S3's is (boards/lilygo_t3s3.json)."""
    with VirtualBoard(tmp_path / "ttyACM0", tmp_path / "flash", mcu="esp32s3", console="usb") as board:
        yield board


# main.py is busy while a burst arrives, then reads it up to its last byte, a newline, which the host
# sends once main.py has begun to read (there is room for it then, whatever the console).
READ_A_LINE = """\
import asyncio, select, sys
async def main():
    await asyncio.sleep_ms(1500)
    poller = select.poll()
    poller.register(sys.stdin, select.POLLIN)
    got = b''
    while not got.endswith(b'\\n'):
        if poller.poll(0):
            got += sys.stdin.buffer.read(64)
            open('reading.txt', 'w').close()
        else:
            await asyncio.sleep_ms(10)
    with open('got.txt', 'wb') as f:
        f.write(got)
asyncio.run(main())
"""
BURST = b"".join(b"%04d" % i for i in range(250))  # 1000 bytes, none of them Ctrl-C


def read_a_burst(board: VirtualBoard) -> bytes:
    """What READ_A_LINE in main.py gets of BURST and a newline sent after it."""
    (board.flash / "main.py").write_text(READ_A_LINE)
    board.reset()
    with serial.Serial(str(board.port), 115200, timeout=0.2) as console:
        console.write(BURST)
        wait_for(lambda: (board.flash / "reading.txt").exists())
        console.write(b"\n")
        return read_when_written(board.flash / "got.txt")


def test_a_burst_beyond_the_buffer_loses_its_excess_on_a_uart_console(board: VirtualBoard) -> None:
    assert read_a_burst(board) == BURST[:259] + b"\n"


def test_a_burst_beyond_the_buffer_reaches_main_py_whole_on_a_native_usb_console(usb_board: VirtualBoard) -> None:
    # USB holds the host back until main.py has read room free (shared/tinyusb/mp_usbd_cdc.c).
    assert read_a_burst(usb_board) == BURST + b"\n"


# main.py reads nothing for a while, then reads; it notes that it was still running when it began.
READ_LATE = """\
import asyncio, sys
async def main():
    await asyncio.sleep_ms(1500)
    open('still_running.txt', 'w').close()
    while True:
        sys.stdin.buffer.read(64)
        await asyncio.sleep_ms(10)
asyncio.run(main())
"""


def test_a_ctrl_c_behind_unread_input_waits_for_main_py_to_read_on_a_native_usb_console(
    usb_board: VirtualBoard,
) -> None:
    (usb_board.flash / "main.py").write_text(READ_LATE)
    usb_board.reset()
    with serial.Serial(str(usb_board.port), 115200, timeout=0.2) as console:
        console.write(b"x" * 300 + b"\x03")  # the Ctrl-C comes after more than the buffer holds
        # A UART console would have stopped main.py at once; here the Ctrl-C waits in USB's FIFO.
        wait_for(lambda: (usb_board.flash / "still_running.txt").exists())
    # main.py's reads made room: the Ctrl-C got through and stopped it, and the REPL answers.
    assert usb_board.exec("print(6 * 7)").strip() == "42"


def test_mpremote_interrupts_main_py_and_copies_files_over_a_native_usb_console(
    usb_board: VirtualBoard, tmp_path: Path
) -> None:
    (usb_board.flash / "main.py").write_text(READ_LATE)  # the firmware holds the console, as an installed one does
    usb_board.reset()
    (tmp_path / "greet.py").write_text("print('hello from the T3-S3')\n")
    done = run_mpremote(
        usb_board.port, "fs", "cp", str(tmp_path / "greet.py"), ":greet.py", "+", "exec", "import greet"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith("hello from the T3-S3")


def test_a_reset_takes_a_native_usb_port_from_the_host_which_opens_it_again(usb_board: VirtualBoard) -> None:
    with serial.Serial(str(usb_board.port), 115200, timeout=5) as console:
        usb_board.reset()  # the chip's USB device leaves the bus, and comes back as a new one
        with pytest.raises(serial.SerialException):
            console.write(b"\r\n")
            console.read(1)
    assert usb_board.exec("print(6 * 7)").strip() == "42"


def test_a_native_usb_port_is_gone_while_the_chip_deep_sleeps_and_back_when_it_wakes(
    usb_board: VirtualBoard,
) -> None:
    (usb_board.flash / "main.py").write_text(
        "import machine\nif machine.reset_cause() != machine.DEEPSLEEP_RESET:\n    machine.deepsleep(2000)\n"
    )
    usb_board.reset()
    wait_for(lambda: usb_board.asleep and not usb_board.port.exists())  # no /dev/ttyACM0 while it sleeps
    with pytest.raises(serial.SerialException):
        serial.Serial(str(usb_board.port), 115200)
    wait_for(lambda: not usb_board.asleep)
    assert usb_board.exec("import machine; print(machine.reset_cause() == machine.DEEPSLEEP_RESET)").strip() == "True"


def test_a_uart_consoles_port_stays_while_the_chip_deep_sleeps(board: VirtualBoard) -> None:
    (board.flash / "main.py").write_text("import machine\nmachine.deepsleep()\n")  # until a reset wakes it
    board.reset()
    wait_for(lambda: board.asleep)
    with serial.Serial(str(board.port), 115200, timeout=0.5) as console:  # the USB-UART bridge stays powered
        console.write(b"\r\n")
        assert console.read(16) == b""  # a sleeping chip hears nothing
    (board.flash / "main.py").unlink()
    board.reset()
    assert board.exec("print(6 * 7)").strip() == "42"


def test_a_reset_leaves_a_uart_consoles_port_open(board: VirtualBoard) -> None:
    with serial.Serial(str(board.port), 115200, timeout=5) as console:
        board.reset()  # the USB-UART bridge stays on the bus
        console.write(b"\r\n")
        assert console.read_until(b">>> ").endswith(b">>> ")


def test_a_hard_pin_irq_is_refused_as_the_port_refuses_it(board: VirtualBoard) -> None:
    code = (
        "import machine\n"
        "try:\n"
        "    machine.Pin(0, machine.Pin.IN).irq(lambda pin: None, machine.Pin.IRQ_FALLING, hard=True)\n"
        "except TypeError as error:\n"
        "    print(error)"
    )
    assert board.exec(code).strip() == "extra keyword arguments given"


def test_a_soft_pin_irq_with_wake_positional_is_taken(board: VirtualBoard) -> None:
    code = "import machine\nmachine.Pin(0, machine.Pin.IN).irq(lambda pin: None, machine.Pin.IRQ_FALLING, None)"
    board.exec(code)
