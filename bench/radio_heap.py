"""Bytes the firmware allocates per LoRa frame sent and received, in the real MicroPython VM: the
firmware's `Radio` (borne/radio.py) and our drivers (borne/drivers/sx127x.py, sx126x.py, dio.py) on a
virtual board whose radio chip is the model of an SX1276 or an SX1262 (frozen/sx127x_chip.py,
sx126x_chip.py) on the SPI bus model.

On a board the chip is hardware, and machine's Pin and SPI are C that allocates nothing; here the
models and machine are Python in the same VM, and this port's asyncio loop is its own (it schedules
itself with JavaScript timers, ports/webassembly/asyncio/core.py, where an ESP32's polls). So a meter
(METER, run in the VM before the measure) counts gc.mem_alloc() by who runs: the firmware, in each
step of a task and in each IRQ handler the chip's DIO line runs; and apart, what runs inside those
calls on the board's side: machine.Pin and machine.SPI with the chip models behind them, and the
port's loop scheduling itself (and the meter's own wrapper of each task). The loop's own rounds,
between the steps, and the host's calls that deliver a frame are neither. The figure is the
firmware's alone: asyncio's own Python (tasks, events, locks) is counted in it, as an ESP32 runs
the same. A task that only sleeps must read 0 (the meter's zero, printed under the table).

The VM collects garbage only when a call into it returns (see firmware.py), never inside a step of a
task or a handler: each count is exact. A send waits for its TX-done on the board's clock, so a round
of frames spans many calls, and the counts add up the steps. Before the counts start, a few frames
warm the firmware up (what it makes once: its channel's settings).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

from boards.profiles import load_profile
from boards.provisioning import FIRMWARE_DIR, build_config, secrets_from_master
from simulator.test_keys import TEST_MASTER_KEY
from simulator.virtual_board.board import VirtualBoard, radio_wiring

FRAMES = 20
WARM_UP = 2
FRAME = bytes(range(20))  # a telemetry frame's size
BOARDS = {"sx1276": "heltec_v2", "sx1262": "heltec_v3"}  # a board profile per chip
DEAD_DIO = {"sx1276": "dio0_dead", "sx1262": "dio1_dead"}  # the DIO line that never reaches the board
ROUND_TIMEOUT_S = 120

# Counts the bytes allocated by who runs (see the module's docstring). Allocates nothing itself while
# it counts: small ints, attributes already there, no bound method made (module functions).
METER = """
import asyncio, gc, machine, _board
from asyncio import core

_mode = 0  # who runs: 0 the loop and the host's calls (not counted), 1 the firmware, 2 the board's side
_last = 0
firmware = 0
board_side = 0

def _enter(mode):
    global _mode, _last, firmware, board_side
    now = gc.mem_alloc()
    if _mode == 1:
        firmware += now - _last
    elif _mode == 2:
        board_side += now - _last
    _last = now
    was = _mode
    _mode = mode
    return was

def start_counting():
    global _last, firmware, board_side
    _last = gc.mem_alloc()
    firmware = board_side = 0

class _Steps:
    # A task's coroutine: each of its steps is the firmware's.
    def __init__(self, coro):
        self.coro = coro
    def send(self, value):
        was = _enter(1)
        try:
            return self.coro.send(value)
        finally:
            _enter(was)
    def throw(self, error):
        was = _enter(1)
        try:
            return self.coro.throw(error)
        finally:
            _enter(was)
    def close(self):
        return self.coro.close()

_create_task = core.create_task
def _counted_task(coro):
    was = _enter(2)  # the meter's wrapper is not the firmware's: the task is (below)
    try:
        steps = _Steps(coro)
    finally:
        _enter(was)
    return _create_task(steps)
core.create_task = asyncio.create_task = _counted_task

_schedule = core._schedule_run_iter
def _counted_schedule(dt):
    was = _enter(2)  # the port's loop sets a JavaScript timer: an ESP32's loop polls instead
    try:
        _schedule(dt)
    finally:
        _enter(was)
core._schedule_run_iter = _counted_schedule
asyncio.new_event_loop()  # its task queue calls the above when a task is queued

_value, _write = machine.Pin.value, machine.SPI.write
_readinto, _write_readinto = machine.SPI.readinto, machine.SPI.write_readinto
def _pin_value(self, x=None):
    was = _enter(2)
    try:
        return _value(self, x)
    finally:
        _enter(was)
def _spi_write(self, buf):
    was = _enter(2)
    try:
        _write(self, buf)
    finally:
        _enter(was)
def _spi_readinto(self, buf, write=0):
    was = _enter(2)
    try:
        _readinto(self, buf, write)
    finally:
        _enter(was)
def _spi_write_readinto(self, out, into):
    was = _enter(2)
    try:
        _write_readinto(self, out, into)
    finally:
        _enter(was)
machine.Pin.value = machine.Pin.__call__ = _pin_value
machine.SPI.write = _spi_write
machine.SPI.readinto = _spi_readinto
machine.SPI.write_readinto = _spi_write_readinto

def count_irq_handlers():
    # The firmware's IRQ handlers, which a chip's DIO line runs through machine: the firmware's.
    for pad in machine._pads.values():
        if pad.handler is not None:
            pad.handler = _counted_handler(pad.handler)

def _counted_handler(handler):
    def irq(pin):
        was = _enter(1)
        try:
            handler(pin)
        finally:
            _enter(was)
    return irq

def _start_timer(ms, then):
    was = _enter(2)  # a JavaScript timer: on a board, the host's part (the air) is not there at all
    try:
        _board.timer_start(ms, False, then)
    finally:
        _enter(was)
"""

MEASURE = f"""
import json, radio_chip
from borne.radio import Radio
config = json.loads(CONFIG)
radio = Radio(config["board"], config["radio"])
radio.air_ms = 365 * 24 * 36000  # a year at 1 % duty on air already: its count must stay a small int
count_irq_handlers()
frame = {FRAME!r}
heard = {FRAME.hex()!r}
freq_khz = config["radio"]["freq_khz"]
figures = {{}}

def _from_the_air():
    radio_chip.host_frame(heard, -90, 32, True)  # as the host's radio_frame message brings it

missed = 0  # frames that did not go, or did not come

async def _round(way, n):
    global missed
    i = 0
    while i < n:
        if way == "received":
            _start_timer(5, _from_the_air)  # once the modem listens
            if not await radio.receive(freq_khz, 1000):
                missed += 1
        elif way == "sent":
            if await radio.send(frame) is None:
                missed += 1
        else:
            await asyncio.sleep_ms(1)  # the meter's zero: a task that only sleeps allocates nothing
        i += 1

async def _measure():
    global missed
    for way in ("slept", "sent", "received"):
        await _round(way, {WARM_UP})
        measured = _round(way, {FRAMES})  # made before the counts start
        missed = 0
        start_counting()
        await measured
        figures[way] = [firmware, board_side, missed]
    figures["coroutines"] = _coroutines()

def _coroutines():
    # What making (not running) the awaitables of a send and of a receive allocates: nothing for a
    # Reused (borne/reused.py), a coroutine's frame else. These calls leave them under way: the last.
    before = gc.mem_alloc()
    radio.receive(freq_khz, 1000)
    radio.modem.recv(1000)
    received = gc.mem_alloc() - before
    before = gc.mem_alloc()
    radio.send(frame)
    radio.modem.send(frame)
    radio.modem._dio.wait(0)
    return [gc.mem_alloc() - before, received]

asyncio.create_task(_measure())
"""
FIGURES = "print('FIGURES', json.dumps(figures) if 'coroutines' in figures else '')"
WAYS = ("sent", "received")


def measure(chip: str, dio_dead: bool = False) -> dict[str, list[int]]:
    """By way ("sent", "received", "slept": a task that only sleeps as long): the bytes the firmware
    and the board's side allocated over FRAMES frames, and the frames missed; and "coroutines": the
    bytes that making the awaitables of one send, and of one receive, allocates.

    `dio_dead`: the chip's DIO line never reaches the board, so the drivers poll its IRQ flags over SPI
    (the first frame of the warm-up finds the line dead)."""
    profile = load_profile(BOARDS[chip])
    config = build_config(profile, "node", "bench", device_id=1, secrets=secrets_from_master(TEST_MASTER_KEY, 1))
    radio_config = json.dumps({"board": config["board"]["radio"], "radio": config["radio"]})
    with tempfile.TemporaryDirectory() as folder:
        directory = Path(folder)
        shutil.copytree(FIRMWARE_DIR / "borne", directory / "flash" / "borne")
        wiring = radio_wiring(profile["radio"])
        if dio_dead:
            wiring["faults"] = [DEAD_DIO[chip]]
        with VirtualBoard(directory / "tty", directory / "flash", radio=chip, radio_wiring=wiring, mcu="none") as board:
            board.exec(METER)
            board.exec(f"CONFIG = {radio_config!r}")
            board.exec(MEASURE)
            deadline = time.monotonic() + ROUND_TIMEOUT_S
            while time.monotonic() < deadline:
                printed = board.exec(FIGURES).strip().partition(" ")[2]
                if printed:
                    return json.loads(printed)
                time.sleep(0.5)
    raise TimeoutError(f"the {chip} board did not finish its frames within {ROUND_TIMEOUT_S} s")


def radio_heap_table() -> str:
    rows = []
    zeros = []
    for chip, board in BOARDS.items():
        for dio_dead in (False, True):
            figures = measure(chip, dio_dead)
            zeros.append(figures["slept"][0])
            polled = f", {DEAD_DIO[chip].partition('_')[0].upper()} dead: IRQ flags polled" if dio_dead else ""
            for way, coroutines in zip(WAYS, figures["coroutines"], strict=True):
                firmware, board_side, missed = figures[way]
                failed = f" ({missed} frames missed: not a clean run)" if missed else ""
                rows.append(
                    f"| {chip} ({board}){polled}, frame {way}{failed} | {firmware / FRAMES:,.0f} | {coroutines:,}"
                    f" | {board_side / FRAMES:,.0f} |"
                )
    zero = "0 bytes"
    if any(zeros):
        zero = f"{max(zeros) / FRAMES:,.0f} bytes per sleep: the figures may be off by as much"
    lines = [
        "## A LoRa frame sent and received through the firmware's Radio, in the real MicroPython VM",
        "",
        f"{FRAMES} frames of {len(FRAME)} bytes (after {WARM_UP}) through borne/radio.py and our drivers, the chip's",
        "model on the SPI bus model. The firmware's bytes are counted apart from those of the board's side in its",
        "calls (the chip model behind machine's Pin and SPI, this VM's asyncio loop: C and hardware on a board).",
        "",
        "| frame | bytes allocated per frame, firmware | of which its awaitables' | board's side, not counted |",
        "|---|---:|---:|---:|",
        *rows,
        "",
        "The awaitables of a send (Radio.send, the driver's send, DioWait.wait) and of a receive (Radio.receive, the",
        "driver's recv, DioWait.wait) are generators made once and resumed (borne/reused.py), where a coroutine's",
        "frame is made on the heap at each call, on an ESP32 as here. A received frame of another length than the",
        "last gets a view of its own (16 bytes; these are all of one length). A DIO line that never reaches the",
        "board (the chip's IRQ flags read over SPI every 5 ms instead) adds nothing.",
        f"The meter's zero, a task that only sleeps as long: {zero}.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(radio_heap_table())
