"""The firmware in the real MicroPython VM: heap after import, bytes allocated and time per frame;
heap after boot and boot time per board, its modules as .py source against .mpy.

The VM is the virtual board's (MicroPython 1.27 under Node). It collects garbage only when a call
into it returns (ports/webassembly/main.c: gc.collect() inside a call only asks for it), so a heap
figure is read in the call after the one that collects. The per-frame figures run on its unlimited
heap (mcu "none"): a round of 200 frames is one call, in which nothing is collected, so what
gc.mem_alloc() gained is what the frames allocated; the boot figures on the heap of the board's ESP32
(mcu.mjs). The virtual `cryptolib` and buses allocate nothing, as ESP32's C does. A telemetry frame's
figure counts its readings' conversion onto the wire from the drivers' whole numbers (sensors.telemetry_raw),
which takes no float: a float is an object on the heap, on an ESP32 too. The VM's qstr pools differ from a
board's: its chip models' qstrs fill the first pools, so the firmware's begin a larger one than a
board would allocate for them (py/qstr.c doubles each pool); the heap after boot says how much that
pool takes, and what a board's pools would (`board_qstr_pool_bytes`) for as many qstrs. A board
interns a few tens more or fewer (names its ROM holds, or that the VM's chip models interned
first): near a pool's end (620 entries with boot.py's), that decides whether a board begins a
pool of 640 entries (4,512 bytes). The chip models' objects the firmware holds (Pin, I2C, SPI:
Python instances here, static C objects on an ESP32) count about 1 KB here that a board spares.
With .py source the VM compiles all the boot's modules in main.py's one call and collects nothing
meanwhile, where a board collects between them: a MemoryError in a .py column is the VM's, not the board's.
Times are the VM's on this computer, not an ESP32's at 160 MHz: compare them with each other.
"""

from __future__ import annotations

import io
import json
import keyword
import shutil
import tempfile
import time
import tokenize
from pathlib import Path

from boards.profiles import load_profile, profile_names
from boards.provisioning import FIRMWARE_DIR, NodeOptions, build_config, firmware_files, secrets_from_master, stage
from simulator.test_keys import TEST_MASTER_KEY
from simulator.virtual_board import BoardExecError, RadioMedium
from simulator.virtual_board.board import BME280_ADDRESS, PN532_ADDRESS, VirtualBoard, radio_wiring

FIRMWARE = FIRMWARE_DIR / "borne"
ROUNDS = 200
DOOR_NODE_HEAP_GOAL = 40 * 1024  # bytes above a bare board: the budget set for a door node

IMPORT = """
from borne.crypto import DeviceKeys, badge_token
from borne.frame import Uplink, checkin_tag
keys = DeviceKeys(bytes(range(16)), bytes(range(16, 32)))
up = Uplink(0x0102, keys)
token = badge_token(bytes(16), b"\\x04\\xa1\\xb2\\xc3\\xd4\\xe5\\xf6")
"""
MEASURE = f"""
import gc, json, time
from borne.sensors import telemetry_raw
raws = [None] * 7
def readings():
    # A room node's readings as its drivers give them (0.01 °C, 0.01 %, Pa, ppm, mV), put on the wire.
    raws[0] = telemetry_raw(0, 2153, 100)
    raws[1] = telemetry_raw(1, 4550, 100)
    raws[2] = telemetry_raw(2, 101320, 100)
    raws[3] = 612
    raws[6] = telemetry_raw(6, 3700)
    return raws

def cost(build):
    build(1)  # warm up
    start_alloc = gc.mem_alloc()
    start = time.ticks_us()
    for n in range({ROUNDS}):
        build(n)
    elapsed = time.ticks_diff(time.ticks_us(), start)
    allocated = gc.mem_alloc() - start_alloc
    return allocated // {ROUNDS}, elapsed // {ROUNDS}

def checkin(n):
    up.add_checkin(checkin_tag(1, 3, 7), token, 12)
    return up.seal_checkins(n, n)

result = {{
    "telemetry_plain": cost(lambda n: up.telemetry(n, readings())),
    "telemetry_encrypted": cost(lambda n: up.telemetry(n, readings(), encrypt=True)),
    "checkin_encrypted": cost(checkin),
    "status_encrypted": cost(lambda n: up.status(n, (0, 4, 0), 3600, 1, 2, 0, 0, 1, 0, 0, 0, 0, 5, encrypt=True)),
}}
print(json.dumps(result))
"""


COLLECT = "import gc; gc.collect()"  # done as this call returns: read the heap in the next
HEAP_IN_USE = "import gc; print(gc.mem_alloc())"
QSTR_INFO = "import micropython; micropython.qstr_info()"  # qstr pool: n_pool=6, n_qstr=835, n_str_data_bytes=…

# The qstr pools of MicroPython 1.27 (py/qstr.c, qstr_add): the interned strings' entries live in pools on
# the heap, each one allocated when the last is full, with twice its entries; the first is twice the 10
# that tools/mpy-tool.py gives the frozen modules' pool in ROM, on an ESP32 as in the VM. An entry is a
# pointer, a 2-byte hash and a 1-byte length (ports/esp32: 32 bits, MICROPY_QSTR_BYTES_IN_HASH 2 at its
# ROM level); a pool has a 24-byte header; the heap gives whole 16-byte blocks (py/gc.c).
QSTR_FIRST_POOL = 20
QSTR_ENTRY_BYTES = 7
QSTR_POOL_HEADER = 24
GC_BLOCK = 16


def qstr_pool_bytes(interned: int) -> int:
    """Heap taken by the pools that hold `interned` qstrs made at run time."""
    total, entries, held = 0, QSTR_FIRST_POOL, 0
    while held < interned:
        total += -(-(QSTR_POOL_HEADER + QSTR_ENTRY_BYTES * entries) // GC_BLOCK) * GC_BLOCK
        held += entries
        entries *= 2
    return total


def boot_qstrs() -> int:
    """At most how many qstrs a bare board has interned at run time: the distinct names and short strings
    of boot.py and the modules it imports (fewer in truth: the ESP32's ROM pools hold many of them)."""
    names = {"boot.py", "borne"}
    for path in ("boot.py", "borne/__init__.py", "borne/watchdog.py", "borne/retained.py"):
        names |= {path, path.removesuffix(".py").replace("/", ".")}
        for token in tokenize.generate_tokens(io.StringIO((FIRMWARE_DIR / path).read_text()).readline):
            name = token.type == tokenize.NAME and not keyword.iskeyword(token.string)
            if name or (token.type == tokenize.STRING and len(token.string) < 12):  # short strings are interned
                names.add(token.string)
    return len(names)


def board_qstr_pool_bytes(added: int) -> tuple[int, int]:
    """The least and the most heap a board's pools take for `added` more qstrs, by how many were
    interned before them: from none to `boot_qstrs()`."""
    costs = [qstr_pool_bytes(before + added) - qstr_pool_bytes(before) for before in range(boot_qstrs() + 1)]
    return min(costs), max(costs)


def qstr_info(board: VirtualBoard) -> dict[str, int]:
    """The run-time qstr pools' figures, as micropython.qstr_info() prints them."""
    line = board.exec(QSTR_INFO).strip().splitlines()[0]
    return {key: int(value) for key, value in (item.split("=") for item in line.split(": ", 1)[1].split(", "))}


START_NODE = """
import asyncio
from borne import app, config
from borne.node import Node
node = Node(config.load())
del config
app.forget("borne.config")  # as app.start does once the configuration is loaded
app.forget("borne.contract")  # and once the role's modules are imported
task = asyncio.create_task(node.run())
"""
NODE_RUNS_S = 8  # its tasks start, read the badge reader and the sensor, send a status


def heap_after_boot() -> tuple[int, int, dict[str, int]]:
    """Heap in use (after a collection) on a bare board, and with a door node built and running; what the
    firmware added to the qstr pools (qstr_info's figures)."""
    options = NodeOptions(nfc="pn532", sensors=("bme280",), direction="in")
    profile = load_profile("heltec_v2")
    config = build_config(
        profile, "node", "bench", device_id=1, secrets=secrets_from_master(TEST_MASTER_KEY, 1), options=options
    )
    with tempfile.TemporaryDirectory() as folder, RadioMedium() as medium:
        directory = Path(folder)
        stage(config, directory / "flash")
        (directory / "flash" / "main.py").unlink()  # the bench starts the node itself, from the REPL
        with VirtualBoard(directory / "tty", directory / "flash", medium=medium) as board:
            i2c = profile["i2c"]
            board.wire_i2c("pn532", PN532_ADDRESS, sda=i2c["sda"], scl=i2c["scl"])
            board.wire_i2c("bme280", BME280_ADDRESS, sda=i2c["sda"], scl=i2c["scl"])
            board.exec(COLLECT)
            bare = int(board.exec(HEAP_IN_USE).strip())
            qstrs_bare = qstr_info(board)
            board.exec(START_NODE)
            time.sleep(NODE_RUNS_S)
            board.exec(COLLECT)
            running = int(board.exec(HEAP_IN_USE).strip())
            qstrs = qstr_info(board)
    return bare, running, {key: qstrs[key] - qstrs_bare[key] for key in qstrs}


def heap_table() -> str:
    with tempfile.TemporaryDirectory() as folder:
        directory = Path(folder)
        shutil.copytree(FIRMWARE, directory / "flash" / "borne")
        with VirtualBoard(directory / "tty", directory / "flash", mcu="none") as board:
            board.exec(COLLECT)
            before_import = int(board.exec(HEAP_IN_USE))
            board.exec(IMPORT)
            board.exec(COLLECT)
            imported = int(board.exec(HEAP_IN_USE)) - before_import
            figures = json.loads(board.exec(MEASURE, timeout=120).strip().splitlines()[-1])
    rows = [
        ("telemetry, 5 values from whole-number readings, plain", *figures["telemetry_plain"]),
        ("telemetry, 5 values from whole-number readings, encrypted", *figures["telemetry_encrypted"]),
        ("one check-in, encrypted", *figures["checkin_encrypted"]),
        ("status, encrypted", *figures["status_encrypted"]),
    ]
    bare, running, qstrs = heap_after_boot()
    used, text = running - bare, qstrs["n_str_data_bytes"]
    pools = qstrs["n_total_bytes"] - text
    least, most = board_qstr_pool_bytes(qstrs["n_qstr"])
    on_board = (used - pools + least, used - pools + most)  # the door node's heap on a board, the VM's pools aside
    lines = [
        "## Firmware in the real MicroPython VM",
        "",
        f"Heap taken by importing the codec, its keys and its frame buffer: {imported:,} bytes.",
        f"Heap in use after boot, a door node (PN532 + BME280) built and running: {used:,} bytes",
        f"above a bare board's {bare:,} (.mpy files: their bytecode lives in the heap, as on a board).",
        f"Of it, the {qstrs['n_qstr']:,} qstrs the firmware interned: {text:,} bytes of their text, and",
        f"{pools:,} of qstr pools (the VM began {qstrs['n_pool']} more). The pools are the VM's: its chip models'",
        "qstrs filled its first ones, so the firmware's began a larger one. A board's start at 20 entries and double",
        f"(py/qstr.c): the same qstrs take {least:,} to {most:,} bytes of pools there, by how many the board",
        f"interned before them; a door node on a board: {on_board[0]:,} to {on_board[1]:,} bytes.",
        "",
        "| frame built | bytes allocated per frame | µs per frame |",
        "|---|---:|---:|",
        *[f"| {name} | {allocated:,} | {micros:,} |" for name, allocated, micros in rows],
        "",
        "| goal | figure |",
        "|---|---|",
        f"| 0 bytes allocated per frame sent | {max(row[1] for row in rows):,} bytes at most, of the frames above "
        f"({'met' if all(row[1] == 0 for row in rows) else 'not met'}) |",
        f"| a door node's heap in use ≤ {DOOR_NODE_HEAP_GOAL // 1024} KB above a bare board | "
        f"{on_board[0]:,} to {on_board[1]:,} bytes on a board "
        f"({'met' if on_board[1] <= DOOR_NODE_HEAP_GOAL else 'not met'}): the modules' bytecode, loaded "
        "from .mpy files, lives in the heap; only frozen modules or a ROMFS partition keep it in flash, and "
        "MicroPython's ESP32 builds ship neither for an application's modules |",
    ]
    return "\n".join(lines)


NODE_HEAP = "import gc, sys; print(gc.mem_alloc(), 'borne.node' in sys.modules)"
# What main.py does at boot, timed: the imports of the firmware's start (boot.py's watchdog is in).
TIMED_BOOT = """
import time
started = time.ticks_us()
import borne.app, borne.node
print(time.ticks_diff(time.ticks_us(), started))
"""


def boot_figures(board_name: str, compiled: bool) -> tuple[str, str]:
    """Heap in use once a node has booted and run (bytes, after a collection), and the time its
    imports take (µs), for the board's profile, its modules as .mpy or as .py source."""
    profile = load_profile(board_name)
    config = build_config(profile, "node", "bench", device_id=1, secrets=secrets_from_master(TEST_MASTER_KEY, 1))
    with tempfile.TemporaryDirectory() as folder, RadioMedium() as medium:
        flash = Path(folder) / "flash"
        stage(config, flash)
        if not compiled:
            for mpy in flash.rglob("*.mpy"):
                mpy.unlink()
            for path, source in firmware_files().items():
                shutil.copyfile(source, flash / path)
        radio = {"radio": profile["radio"]["chip"], "radio_wiring": radio_wiring(profile["radio"]), "medium": medium}
        board = VirtualBoard(Path(folder) / "tty", flash, **radio, mcu=profile["mcu"], console=profile["console"])
        board.wire_power_chip(profile)  # a T-Beam's, before power-on
        with board:
            time.sleep(NODE_RUNS_S)  # main.py starts the node, which sends its first status
            try:
                board.exec(COLLECT)
                used, running = board.exec(NODE_HEAP).split()
            except TimeoutError as error:  # the node crashed or hung: the table says what the board printed
                printed = str(error).rpartition("printed: ")[2].strip("'").replace("\\r\\n", " ").strip()
                return f"no node: {printed}", "-"
            heap = f"{int(used):,}" if running == "True" else f"{int(used):,} (no node: it did not boot)"
            try:
                took = f"{int(board.exec(TIMED_BOOT, soft_reset=True).strip().splitlines()[-1]):,}"
            except BoardExecError as error:  # the table says what the board raised
                took = error.traceback.strip().splitlines()[-1]
    return heap, took


def boot_table() -> str:
    lines = [
        "## A node's boot per board, in the VM with its ESP32's heap (mcu.mjs): .py source against .mpy",
        "",
        "With .py source the VM compiles every module of the boot in main.py's one call and collects no garbage",
        "meanwhile, where a board collects between them: a MemoryError (no node booted) in a .py column is the",
        "VM's, not a board's. What it shows is what .mpy spares: no source compiled on the board.",
        "",
        "| board | MCU | heap in use after boot, .py | .mpy | imports at boot µs, .py | .mpy |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name in profile_names():
        source, compiled = boot_figures(name, compiled=False), boot_figures(name, compiled=True)
        mcu = load_profile(name)["mcu"]
        lines.append(f"| {name} | {mcu} | {source[0]} | {compiled[0]} | {source[1]} | {compiled[1]} |")
    return "\n".join(lines)
