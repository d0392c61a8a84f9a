"""A battery node's report per board, its modules as .py source against .mpy: the time it is awake
from wake to deep sleep (boot and imports, sensors, time on air, receive windows), its heap, the
charge it draws per report from a current model of each board, and the battery life that projects.

The firmware runs unmodified in the real MicroPython VM (the virtual board; its heap is not limited
to the ESP32's here, since the chips' models allocate in it too); the bench times each part of one
wake from the REPL, around the node's own calls, and stops it at machine.deepsleep(). Waits (a
sensor's conversion, time on air, receive windows, light sleep) last as long in the VM as on the
board: their lengths come from the chip models (datasheet timings). CPU time does not: the VM runs
on this computer, tens of times faster than an ESP32 at 160 MHz. So the bench reads the CPU time of
the VM's process (which waits do not use and other processes do not stretch), leaves out what the
simulated world takes (the chips' models, pins, files: hardware or C on a board) and puts back what
the board's buses would take, and multiplies the rest by the VM's speed on a calibration workload,
measured before each wake, against the ESP32's (CPU_SCALE_SOURCE says from what, and how sure that
is). Time the VM's event loop spends around the firmware's tasks counts as the firmware's: CPU time
is an upper bound.

Currents come from datasheets and from measurements others published: each figure has its source
beside it. Where a figure is uncertain the stricter one (more current) is used.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from boards.profiles import load_profile, profile_names
from boards.provisioning import NodeOptions, build_config, firmware_files, secrets_from_master, stage
from simulator.test_keys import TEST_MASTER_KEY
from simulator.virtual_board import RadioMedium
from simulator.virtual_board.board import BME280_ADDRESS, VirtualBoard, radio_wiring

REPORT_S = 300  # a report every 5 minutes (the provisioning default, telemetry_s)
STATUS_S = 3600  # and a status every hour (status_s), which opens a receive window
CELL_MAH = 2600  # an 18650 cell
GOAL_YEARS = 2.0
HOURS_PER_YEAR = 24 * 365


@dataclass(frozen=True)
class Figure:
    """A current in mA, and where it comes from; `needs_vext_off`: measured with Vext off, so it applies
    only where the firmware holds Vext off through deep sleep."""

    ma: float
    source: str
    needs_vext_off: bool = False


@dataclass(frozen=True)
class Asleep:
    """What the firmware switched off for deep sleep, as the VM had it at machine.deepsleep()."""

    vext_off: bool = False  # Vext's pad held at its off level (it keeps it through deep sleep)
    radio_rail_off: bool = False  # the power chip's rail that feeds the radio


# The microcontrollers at MicroPython's default 160 MHz, the Wi-Fi and Bluetooth radios off.
MCU_CURRENTS = {
    "esp32": {
        "active": Figure(
            44,
            "ESP32 Series Datasheet, Table 'Power Consumption by Power Modes': modem-sleep, 160 MHz, 27-44 mA (the "
            "upper figure)",
        ),
        "light_sleep": Figure(0.8, "ESP32 Series Datasheet, same table: light-sleep 0.8 mA"),
        "deep_sleep": Figure(
            0.010,
            "ESP32 Series Datasheet, same table: deep-sleep, RTC timer + RTC memory 10 µA (RTC memory holds the "
            "counter)",
        ),
    },
    "esp32s3": {
        "active": Figure(
            44,
            "no primary figure retrieved: the ESP32's 160 MHz upper figure, above the 31.7 mA an ESP32-S3-DevKitM-1 "
            "drew awake and idle (lucidar.me measurement)",
        ),
        "light_sleep": Figure(0.24, "ESP32-S3 Datasheet light-sleep 240 µA, as quoted on esp32.com (secondary)"),
        "deep_sleep": Figure(
            0.008,
            "ESP32-S3 Datasheet deep-sleep 7 µA (quoted); 8 µA measured on a DevKitM-1 at 3.3 V (lucidar.me): the "
            "higher",
        ),
    },
}

# Transmit at the configuration's 14 dBm (EU868's limit at 868.1 MHz).
RADIO_CURRENTS = {
    "sx1276": {
        "tx": Figure(
            87,
            "SX1276 datasheet Table 6 IDDT: +17 dBm on PA_BOOST 87 mA (no +14 dBm row for PA_BOOST, which these "
            "boards use: the next one up)",
        ),
        "rx": Figure(
            11.5,
            "SX1276 datasheet Table 6 IDDR_L, LnaBoost on, 11.5 mA (page 1 headline: 9.9 mA; recalled, not re-read)",
        ),
        "standby": Figure(1.6, "SX1276 datasheet Table 6 IDDST 1.6 mA (recalled, not re-read)"),
        "sleep": Figure(0.0002, "SX1276 datasheet page 1: 0.2 µA with register retention"),
    },
    "sx1262": {
        "tx": Figure(
            45,
            "SX1262 datasheet Table 3-5, +14 dBm on the high-power PA, DC-DC: 45 mA (commonly quoted; not retrieved)",
        ),
        "rx": Figure(
            4.6,
            "SX1262 datasheet page 1: 4.2 mA 'active receive'; 4.6 mA with DC-DC at 125 kHz (Table 3-4, commonly "
            "quoted): the higher",
        ),
        "standby": Figure(
            0.8, "SX1262 datasheet Table 3-4 STDBY_XOSC 0.8 mA (commonly quoted; the TCXO's own current is not in it)"
        ),
        "sleep": Figure(
            0.0006, "SX1262 sleep, warm start (the driver's): 600 nA (Arm mbed-os SX126X SleepMode.txt, secondary)"
        ),
    },
}

BME280_MEASURING = Figure(0.714, "BME280 datasheet Table 1: pressure measurement IDDP 714 µA (the highest of T, P, H)")
BME280_SLEEP = Figure(0.0003, "BME280 datasheet Table 1: sleep current 0.1 µA typical, 0.3 µA max")
BME280_MEASURE_MS = 9.3  # datasheet section 9.1, maximum forced-mode time at x1 oversampling (the chip model's)

# What the rest of each board draws, awake and asleep, with the radio asleep: its regulator, its
# USB-UART bridge, its PMU, its OLED left powered. Published measurements of the whole board asleep,
# less the chips' own figures above. A figure measured with Vext off applies only if the firmware
# holds Vext off through deep sleep (borne.app.power_down), which the bench checks at each wake.
BOARD_QUIESCENT = {
    "heltec_v2": Figure(
        9.2,
        "whole board ≈9.2 mA in deep sleep: the CP2102 USB-UART stays powered from the battery (Heltec "
        "WiFi_Kit_series issues #128, #6)",
    ),
    "heltec_v3": Figure(
        0.007,
        "whole board 15 µA in deep sleep with Vext off and the radio asleep (Heltec WiFi_Kit_series issue #6, "
        "2024-01-07), less the ESP32-S3's 8 µA: the firmware holds Vext (GPIO36, a digital pad) off through deep "
        "sleep with Pin(hold=True) and esp32.gpio_deep_sleep_hold(True), which the bench checks at each wake",
        needs_vext_off=True,
    ),
    "ttgo_lora32_v21": Figure(
        12,
        "no measurement of v2.1 found; a TTGO LoRa32 v1.0 drew 11-12 mA in deep sleep on battery "
        "(LilyGO/TTGO-LORA32 issue #28): the higher",
    ),
    "tbeam_sx1276": Figure(
        0.59,
        "T-Beam (ESP32 + AXP192) 0.6 mA in deep sleep (Xinyuan-LilyGO/LilyGo-LoRa-Series issue #39, SoftRF's "
        "author), less the ESP32's 10 µA: mostly the AXP192's own and what its other rails feed, which switching "
        "the radio's rail off (as the firmware does) does not lower",
    ),
    "tbeam_sx1262": Figure(
        0.59,
        "as tbeam_sx1276 (same board and PMU; no measurement of the SX1262 version or of the v1.2's AXP2101 found)",
    ),
    "lilygo_t3s3": Figure(
        2.5,
        "T3-S3 v1.2 ≈2.5 mA in deep sleep when its OLED is not put to sleep, 20-100 µA once it is "
        "(Xinyuan-LilyGO/LilyGo-LoRa-Series issue #128): the firmware does not drive the OLED (the board's "
        "profile names it only in a source note, not as a part the firmware could command)",
    ),
}

FLASH_BYTES_PER_S = 1_000_000  # files read through littlefs: an assumption (no measurement found), a tenth of the
# raw rate of the flash at 40 MHz, dual I/O
SPI_OVERHEAD_US = 28  # ESP-IDF SPI Master Driver, 'Transaction Duration': an interrupt transaction of one byte, ESP32
# ROM, second-stage bootloader and ESP-IDF start-up, before MicroPython runs: not in the VM.
STARTUP_MS = 300
STARTUP_SOURCE = (
    "ESP Techpedia, 'ESP Chip Startup Time Optimization': an unoptimised start-up to app_main takes about 300 ms"
)

# How CPU time in the VM becomes an ESP32's. ESP32_PYSTONES is the ESP32's score in MicroPython's own
# tests/perf_bench/misc_pystone.py; CALIBRATION_PER_PYSTONE is how much of CALIBRATION (below) the VM
# runs per pystone loop, measured once by running both in the VM (MicroPython 1.27 under Node 20).
ESP32_PYSTONES = 1166
CALIBRATION_PER_PYSTONE = 2.75  # 2.72-2.81 in three runs (process CPU time, the best of three each)
CPU_SCALE_SOURCE = (
    "CPU time is scaled by the VM's speed on a calibration workload, measured at each run, against the ESP32's: "
    f"{ESP32_PYSTONES} pystone loops/s in MicroPython's perf_bench misc_pystone.py (micropython/micropython "
    "issue #6565, the maintainer's run of v1.13 at the default clock; 1732 before MicroPython was pinned to one core, "
    "and the optimisations of PR #7850 came after: the ESP32 of v1.27 is likely faster, so CPU time is likely "
    "overstated, by up to half)"
)

# A CPU-bound workload of the kinds of work the firmware does (calls, attributes, integers, bytes).
CALIBRATION = """
import js
_process = js.process
def _cpu():
    used = _process.cpuUsage()
    return used.user + used.system
class _Frame:
    def __init__(self):
        self.buf = bytearray(32)
        self.n = 0
    def put(self, value):
        b = self.buf
        b[self.n] = value & 0xFF
        self.n = (self.n + 1) & 31
        return value >> 8
def _work(rounds):
    f = _Frame()
    total = 0
    for i in range(rounds):
        v = i * 2654435761
        while v:
            v = f.put(v)
        total += f.n
    return total
_work(100)
_best = None
for _ in range(3):  # the least disturbed of three
    _start = _cpu()
    _work(%(rounds)d)
    _took = _cpu() - _start
    _best = _took if _best is None else min(_best, _took)
print(_best)
"""
CALIBRATION_ROUNDS = 5000

# One wake of the node, timed around its own calls; machine.deepsleep() records instead of sleeping.
# What the VM spends in the simulated world (the chips' models on the buses, the pins, RTC memory,
# NVS and the flash's files, all Python or host calls here, hardware or C on a board) is timed apart,
# `sim`, and replaced by what the buses take on the board, `bus`: SPI bytes at the driver's clock
# plus the ESP-IDF transaction overhead, I2C bytes of 9 clocks at 100 kHz plus the address byte,
# files read (the imports) at FLASH_BYTES_PER_S, and the SX126x's BUSY polled as long as it is here.
WAKE = """
import gc, json, time, machine, esp32, flashfs, js, radio_chip
# The host's clocks, to the µs (the VM's ticks_us counts whole ms): the time, and the CPU time of the
# VM's process, which other processes on this computer do not stretch and which waits do not use.
_performance, _process = js.performance, js.process
def _us():
    return int(_performance.now() * 1000)
def _cpu():
    used = _process.cpuUsage()
    return used.user + used.system
_clock = [0, 0, 0, 0]  # CPU µs in the simulated world, µs on the board's buses, nesting depth, calls
def _simulate(call, bus=None, busy=False):
    def timed(*args, **kwargs):
        _clock[2] += 1
        start, began = _cpu(), _us()
        try:
            return call(*args, **kwargs)
        finally:
            _clock[2] -= 1
            if not _clock[2]:
                _clock[0] += _cpu() - start
                _clock[3] += 1
                if bus:
                    _clock[1] += bus(args)
                if busy:  # a busy wait for a chip: as long on the board as here
                    _clock[1] += _us() - began
    return timed
def _simulated(cls, names, bus=None):
    for name in names:
        setattr(cls, name, _simulate(getattr(cls, name), bus))
# SPI._transfer(self, out, into): `out` is a buffer or, when reading, the one byte sent meanwhile (an int).
_simulated(
    machine.SPI,
    ("_transfer",),
    lambda a: len(a[1] if a[2] is None else a[2]) * 8 * 1000000 // a[0]._config[0] + %(spi_overhead_us)d,
)
_simulated(machine.SoftI2C, ("writeto", "readfrom_into"), lambda a: (len(a[2]) + 1) * 90)
_simulated(machine.Pin, ("init", "value"))
_simulated(machine.RTC, ("memory",))
_simulated(esp32.NVS, [n for n in dir(esp32.NVS) if not n.startswith("__")])
_simulated(flashfs.FlashFile, ("readinto",), lambda a: len(a[1]) * 1000000 // %(flash_bytes_per_s)d)
_simulated(flashfs.FlashFile, ("read", "readline", "write", "close"))
_simulated(flashfs.HostFlash, ("open", "stat", "ilistdir"))
_start_timer = radio_chip.RadioChip.start_timer
def _start_simulated_timer(chip, us, then):  # a radio chip's TX done or RX timeout
    _start_timer(chip, us, _simulate(then))
radio_chip.RadioChip.start_timer = _start_simulated_timer
_light = [0]  # ms in machine.lightsleep(), as slept: a pin may end it early
def _now():
    return (_us(), _cpu(), _clock[0], _clock[1], _clock[3], _light[0])
class _Probe:  # what the timing wrapper itself costs per call, outside the time it counts as simulated
    def nothing(self):
        pass
_simulated(_Probe, ("nothing",))
_probe = _Probe()
_mark = _now()
for _ in range(2000):
    _probe.nothing()
_end = _now()
_wrapper_us = ((_end[1] - _mark[1]) - (_end[2] - _mark[2])) / 2000
_clock[3] = 0
gc.collect()
_heap0 = gc.mem_alloc()
_t0 = _now()
import borne.app, borne.node
from borne import config as _config
_cfg = _config.load()
from borne.drivers.dio import DioWait
_dio_wait = DioWait.wait
async def _waiting_for_dio(self, *args):  # the VM's event loop meanwhile: a board's CPU waits for the IRQ
    start, sim = _cpu(), _clock[0]
    try:
        return await _dio_wait(self, *args)
    finally:
        _clock[0] = sim + _cpu() - start
        _clock[3] += 1
DioWait.wait = _waiting_for_dio
if _cfg["board"]["radio"]["chip"] != "sx1276":
    from borne.drivers.sx126x import SX126x
    SX126x._wait_ready = _simulate(SX126x._wait_ready, busy=True)  # polls BUSY
borne.app.power_up(_cfg["board"])
node = borne.node.Node(_cfg)
_setup = _now()
gc.collect()
_heap = [gc.mem_alloc()]
_events = []
def _timed(name, call):
    async def timed(*args):
        start = _now()
        result = await call(*args)
        detail = len(args[0]) if name == "send" else args[1] if name == "receive" else 0  # bytes sent, window ms
        _events.append((name, start, _now(), detail))
        return result
    return timed
node.sensors.measure = _timed("sensors", node.sensors.measure)
node.radio.send = _timed("send", node.radio.send)
node.radio.receive = _timed("receive", node.radio.receive)
_result = {}
def _since(mark):
    return [mark[i] - _t0[i] for i in range(6)]
import axp_chip
def _asleep():  # what the firmware switched off: a pad that keeps its level through deep sleep, the PMU's rails
    board = _cfg["board"]
    vext, pmu = board.get("vext"), board.get("pmu") or {}
    radio_rails = [rail for rails in pmu.values() for rail in rails]
    return {"vext_off": bool(vext) and machine._kept_level(vext["pin"]) == 1 - vext["on"],
            "radio_rail_off": bool(radio_rails) and not any(axp_chip.rails.get(rail) for rail in radio_rails)}
def _deepsleep(ms):
    end = _now()
    gc.collect()
    _heap.append(gc.mem_alloc())
    _result.update(setup=_since(_setup), go=_since(_go), end=_since(end), sleep_ms=ms, heap=max(_heap) - _heap0,
                   asleep=_asleep(),
                   wrapper_us=_wrapper_us,
                   events=[(n, _since(s), _since(e), x) for n, s, e, x in _events],
                   airtime=[node.radio.airtime_us(x) for n, s, e, x in _events if n == "send"])
machine.deepsleep = _deepsleep
_lightsleep = machine.lightsleep
def _sleep_lightly(ms=None):
    start = time.ticks_ms()
    _lightsleep(ms)
    _light[0] += time.ticks_diff(time.ticks_ms(), start)
machine.lightsleep = _sleep_lightly
import asyncio
async def _run():  # once the REPL is done with this script: its work is not the node's
    global _go
    await asyncio.sleep_ms(200)
    _go = _now()
    await node.run()
_task = asyncio.create_task(_run())
"""
WAKE_S = 4  # a wake lasts about 2.5 s in the VM at SF9
RESULT = "import json; print(json.dumps(_result) if _result else '')"


def _options() -> NodeOptions:
    return NodeOptions(sensors=("bme280",), telemetry_s=REPORT_S, status_s=STATUS_S, deep_sleep=True)


# Since the wake: µs, CPU µs, CPU µs simulated, µs on the buses, calls simulated, ms in light sleep.
Mark = tuple[int, int, int, int, int, int]


@dataclass
class Wake:
    """One wake in the VM, as the WAKE script recorded it."""

    setup: Mark  # imports, configuration, the board powered and the node built
    go: Mark  # the node's task created (the bench's own set-up in between)
    end: Mark  # machine.deepsleep() called
    heap: int  # what the heap grew by to its highest sample, garbage included (no collection within a call)
    wrapper_us: float  # what timing one simulated call costs the VM beside the call
    scale: float  # how many times faster than an ESP32 the VM ran, just before
    events: list[tuple[str, Mark, Mark, int]]  # sensors, send (bytes), receive (window ms)
    airtime_us: list[int]  # of each frame sent
    asleep: Asleep  # what the firmware switched off for deep sleep


def measure_wake(board_name: str, compiled: bool, timeout_s: float = 60) -> Wake:
    """Run one wake of a BME280 battery node on `board_name`, its modules as .mpy or .py source: the
    first after power-on, which sends its telemetry, then a status and listens in its receive window."""
    profile = load_profile(board_name)
    config = build_config(
        profile, "node", "bench", device_id=1, secrets=secrets_from_master(TEST_MASTER_KEY, 1), options=_options()
    )
    with tempfile.TemporaryDirectory() as folder, RadioMedium() as medium:
        flash = Path(folder) / "flash"
        stage(config, flash)
        (flash / "main.py").unlink()  # the bench starts the node itself, from the REPL
        if not compiled:
            for mpy in flash.rglob("*.mpy"):
                mpy.unlink()
            for path, source in firmware_files().items():
                if path != "main.py":
                    (flash / path).parent.mkdir(parents=True, exist_ok=True)
                    (flash / path).write_bytes(source.read_bytes())
        radio = {"radio": profile["radio"]["chip"], "radio_wiring": radio_wiring(profile["radio"]), "medium": medium}
        # The VM's heap is not the ESP32's here: the chips' models allocate in it too (the report says how much
        # the node holds, beside the ESP32's heap).
        # mcu "none": the calibration and the timing run in one call each, and this VM collects no garbage
        # within a call; the boot table (bench/firmware.py) measures the heap on the ESP32's.
        board = VirtualBoard(Path(folder) / "tty", flash, **radio, mcu="none")
        board.wire_power_chip(profile)
        with board:
            i2c = profile["i2c"]
            board.wire_i2c("bme280", BME280_ADDRESS, sda=i2c["sda"], scl=i2c["scl"])
            scale = calibrate(board)
            board.exec(WAKE % {"spi_overhead_us": SPI_OVERHEAD_US, "flash_bytes_per_s": FLASH_BYTES_PER_S})
            deadline = time.monotonic() + timeout_s
            time.sleep(WAKE_S)  # the REPL's work would count as the node's: ask once it is done
            while time.monotonic() < deadline:
                printed = board.exec(RESULT).strip()
                if printed:
                    r = json.loads(printed.splitlines()[-1])
                    events = [(name, tuple(s), tuple(e), x) for name, s, e, x in r["events"]]
                    return Wake(
                        tuple(r["setup"]),
                        tuple(r["go"]),
                        tuple(r["end"]),
                        r["heap"],
                        r["wrapper_us"],
                        scale,
                        events,
                        r["airtime"],
                        Asleep(**r["asleep"]),
                    )
                time.sleep(0.5)
    raise TimeoutError(f"{board_name}: the node did not reach deep sleep within {timeout_s} s")


def calibrate(board: VirtualBoard) -> float:
    """How many times faster than an ESP32 at 160 MHz the VM runs Python on this computer, now."""
    vm_us = int(board.exec(CALIBRATION % {"rounds": CALIBRATION_ROUNDS}, timeout=120).strip().splitlines()[-1])
    esp32_us = CALIBRATION_ROUNDS / (ESP32_PYSTONES * CALIBRATION_PER_PYSTONE) * 1e6
    return esp32_us / vm_us


@dataclass
class Awake:
    """A report on the board, in ms: what each part of a wake takes, waits unscaled and CPU scaled."""

    startup: float  # ROM, bootloader, ESP-IDF
    setup: float  # imports, configuration, the node built (CPU and buses)
    cpu: float  # the rest of the CPU work: frames built, RTC memory, the radio put to sleep
    sensor_wait: float  # the BME280's conversion
    sensor_cpu: float
    on_air: float  # telemetry's time on air
    status_on_air: float  # a status frame's
    send_cpu: float  # the telemetry's send: the modem set up and filled
    status_send_cpu: float
    rx_wait: float  # from the status frame's end until its receive window opens
    rx_wait_light: float  # how much of it the firmware spends in light sleep
    rx_window: float  # listening
    on_air_light: float = 0.0  # how much of the telemetry's time on air the firmware spends in light sleep
    status_on_air_light: float = 0.0  # and of the status frame's
    sensor_wait_light: float = 0.0  # and of the BME280's conversion
    rx_window_light: float = 0.0  # and of the receive window (a frame's IRQ wakes it)

    def telemetry_ms(self) -> float:
        """A wake that only sends telemetry."""
        return self.startup + self.setup + self.cpu + self.sensor_wait + self.sensor_cpu + self.on_air + self.send_cpu

    def status_ms(self) -> float:
        """What a wake that also sends a status adds."""
        return self.status_on_air + self.status_send_cpu + self.rx_wait + self.rx_window


def on_the_board(wake: Wake) -> Awake:
    """The wake measured in the VM, as it would last on the board: waits as measured, Python's CPU time
    times the wake's scale, the simulated world's time replaced by the buses'."""

    def cpu(start: Mark, end: Mark, busy_us: float = 0) -> float:
        """The board's CPU ms between two marks: Python's (the VM process's CPU time but the simulated
        world's, the timing's and `busy_us` of busy waiting), scaled, and the buses'."""
        _, used, sim, bus, calls, _ = (end[i] - start[i] for i in range(6))
        python = max(0.0, used - sim - calls * wake.wrapper_us - busy_us)
        return (python * wake.scale + bus) / 1000

    def between(start: Mark, end: Mark) -> Mark:
        return tuple(e - s for s, e in zip(start, end, strict=True))  # type: ignore[return-value]

    zero: Mark = (0, 0, 0, 0, 0, 0)
    sensors = [(s, e) for name, s, e, _ in wake.events if name == "sensors"]
    sends = [(s, e) for name, s, e, _ in wake.events if name == "send"]
    receives = [(s, e) for name, s, e, _ in wake.events if name == "receive"]
    (sensor_start, sensor_end), (send_start, send_end) = sensors[0], sends[0]
    status_start, status_end = sends[1]
    rx_start, rx_end = receives[0]
    conversion_us = BME280_MEASURE_MS * 1000
    sensor_bus = sensor_end[3] - sensor_start[3]
    sensor_light_us = (sensor_end[5] - sensor_start[5]) * 1000
    # The driver waits out the BME280's conversion in light sleep, or polls it (time.sleep_ms, a busy wait
    # in this VM): bus time within the conversion is no extra time.
    polled_us = max(0.0, conversion_us - sensor_light_us)
    sensor_cpu = cpu(sensor_start, sensor_end, polled_us) - sensor_bus / 1000
    phases = [between(s, e) for s, e in (*sensors, *sends, *receives)] + [between(status_end, rx_start)]
    rest = tuple(wake.end[i] - wake.go[i] - sum(phase[i] for phase in phases) for i in range(6))
    rx_wait = (rx_start[0] - status_end[0]) / 1000
    return Awake(
        startup=STARTUP_MS,
        setup=cpu(zero, wake.setup),
        cpu=cpu(zero, rest),  # type: ignore[arg-type]
        sensor_wait=max(conversion_us, sensor_light_us, sensor_bus) / 1000,
        sensor_wait_light=sensor_light_us / 1000,
        sensor_cpu=max(0.0, sensor_cpu),
        on_air=wake.airtime_us[0] / 1000,
        status_on_air=wake.airtime_us[1] / 1000,
        send_cpu=cpu(send_start, send_end),
        status_send_cpu=cpu(status_start, status_end),
        rx_wait=rx_wait,
        rx_wait_light=min(rx_start[5] - status_end[5], rx_wait),
        on_air_light=min(send_end[5] - send_start[5], wake.airtime_us[0] / 1000),
        status_on_air_light=min(status_end[5] - status_start[5], wake.airtime_us[1] / 1000),
        rx_window=(rx_end[0] - rx_start[0]) / 1000,
        rx_window_light=min(rx_end[5] - rx_start[5], (rx_end[0] - rx_start[0]) / 1000),
    )


@dataclass(frozen=True)
class Charge:
    """What a wake costs the battery (µAh, averaged over the wakes that send a status), the average current
    with the sleep between wakes, and the life that gives a full cell."""

    wake_uah: float
    average_ua: float
    years: float


def board_asleep(board_name: str, asleep: Asleep) -> Figure:
    """The rest of the board's current, if its figure holds for what the firmware switched off."""
    figure = BOARD_QUIESCENT[board_name]
    if figure.needs_vext_off and not asleep.vext_off:
        raise ValueError(
            f"{board_name}: its deep-sleep figure was measured with Vext off, but the firmware did not hold Vext off "
            "through deep sleep: hold it off in borne.app.power_down, or give bench/battery.py a figure with Vext on"
        )
    return figure


def charge(board_name: str, awake: Awake, *, light_sleep: bool = False, asleep: Asleep = Asleep()) -> Charge:
    """The charge of a report every REPORT_S and a status every STATUS_S, from the board's current model.
    What the firmware spends in light sleep is charged so; `light_sleep`: every wait (conversion, time on
    air, receive windows) is. `asleep`: what the firmware switched off for deep sleep (a radio whose rail is
    off draws nothing; a board figure measured with Vext off needs Vext held off)."""
    profile = load_profile(board_name)
    mcu, radio = MCU_CURRENTS[profile["mcu"]], RADIO_CURRENTS[_radio_family(profile["radio"]["chip"])]
    board = board_asleep(board_name, asleep).ma
    active = mcu["active"].ma + board
    light = mcu["light_sleep"].ma + board
    waiting = light if light_sleep else active
    standby = radio["standby"].ma
    # mA x ms: µC.
    telemetry = (
        awake.startup * (active + radio["sleep"].ma)
        + (awake.setup + awake.cpu + awake.sensor_cpu + awake.send_cpu) * (active + standby)
        + awake.sensor_wait_light * (light + standby + BME280_MEASURING.ma)
        + (awake.sensor_wait - awake.sensor_wait_light) * (waiting + standby + BME280_MEASURING.ma)
        + awake.on_air_light * (light + radio["tx"].ma)
        + (awake.on_air - awake.on_air_light) * (waiting + radio["tx"].ma)
    )
    status = (
        awake.status_send_cpu * (active + standby)
        + awake.status_on_air_light * (light + radio["tx"].ma)
        + (awake.status_on_air - awake.status_on_air_light) * (waiting + radio["tx"].ma)
        + awake.rx_wait_light * (light + standby)
        + (awake.rx_wait - awake.rx_wait_light) * (waiting + standby)
        + awake.rx_window_light * (light + radio["rx"].ma)
        + (awake.rx_window - awake.rx_window_light) * (waiting + radio["rx"].ma)
    )
    status_share = REPORT_S / STATUS_S
    awake_ms = awake.telemetry_ms() + awake.status_ms() * status_share
    radio_asleep = 0.0 if asleep.radio_rail_off else radio["sleep"].ma
    sleeping = (REPORT_S * 1000 - awake_ms) * (mcu["deep_sleep"].ma + radio_asleep + board + BME280_SLEEP.ma)
    wake = telemetry + status * status_share  # µC
    average_ma = (wake + sleeping) / (REPORT_S * 1000)
    return Charge(wake / 3600, average_ma * 1000, CELL_MAH / average_ma / HOURS_PER_YEAR)


def _radio_family(chip: str) -> str:
    return "sx1276" if chip == "sx1276" else "sx1262"


RUNS = 3  # wakes measured per board and install: the table shows the quickest (what disturbs a run only adds)


def typical_wake(board_name: str, compiled: bool) -> tuple[Wake, Awake]:
    """The quickest of RUNS wakes, by the time a report keeps the board awake: the VM's process shares
    this computer, and its garbage collections and event loop add CPU time that is not the firmware's."""
    share = REPORT_S / STATUS_S
    runs = []
    for _ in range(RUNS):
        wake = measure_wake(board_name, compiled)
        runs.append((wake, on_the_board(wake)))
    return min(runs, key=lambda run: run[1].telemetry_ms() + share * run[1].status_ms())


def battery_table() -> str:
    rows, lives, scales = [], {}, []
    share = REPORT_S / STATUS_S
    for name in profile_names():
        profile = load_profile(name)
        for compiled in (False, True):
            wake, awake = typical_wake(name, compiled)
            scales.append(wake.scale)
            now = charge(name, awake, asleep=wake.asleep)
            lighter = charge(name, awake, light_sleep=True, asleep=wake.asleep)
            if compiled:
                lives[name] = (now, lighter, awake)
            cells = (
                name,
                f"{profile['mcu']}, {profile['radio']['chip']}",
                ".mpy" if compiled else ".py",
                f"{awake.startup + awake.setup:,.0f}",
                f"{awake.sensor_wait + awake.sensor_cpu:,.0f}",
                f"{awake.on_air + share * awake.status_on_air:,.0f}",
                f"{share * (awake.rx_wait + awake.rx_window):,.0f}",
                f"{awake.telemetry_ms() + share * awake.status_ms():,.0f}",
                f"{wake.heap:,}",
                f"{now.wake_uah:,.1f}",
                f"{now.average_ua:,.0f}",
                f"{now.years:,.2f}",
                f"{lighter.years:,.2f}",
                _switched_off(wake.asleep),
            )
            rows.append(f"| {' | '.join(cells)} |")
    best = min(lives, key=lambda n: BOARD_QUIESCENT[n].ma)  # the board that sleeps best
    now, lighter, awake = lives[best]
    waits = awake.sensor_wait + awake.on_air + awake.status_on_air + awake.rx_wait + awake.rx_window
    waits_light = (
        awake.sensor_wait_light
        + awake.rx_wait_light
        + awake.on_air_light
        + awake.status_on_air_light
        + awake.rx_window_light
    )
    staged = _staged_sources()
    lines = [
        f"## A battery node's report per board: BME280, a report every {REPORT_S // 60} min, a status every "
        f"{STATUS_S // 60} min, SF9, on a {CELL_MAH:,} mAh cell",
        "",
        f"Times are the board's, in ms per report (a status's share included), the quickest of {RUNS} wakes: waits as "
        f"long as in the VM, CPU time times {min(scales):.0f}-{max(scales):.0f} (the VM's speed against an ESP32 at "
        "160 MHz, measured before each wake), the simulated chips' and files' time replaced by the buses' and the "
        f"flash's. Boot is {STARTUP_MS} ms of ESP-IDF start-up plus MicroPython's imports and the node's set-up. "
        "Heap: what the VM's heap grew by from before the imports to its highest sample. The wake runs in one call "
        "to the VM, which collects garbage only between calls: it counts the garbage an ESP32 (112 KiB of heap, "
        "128 KiB on an ESP32-S3) collects as it goes, and the chips' models. The heap a node keeps in use is in "
        "the boot table, measured on the ESP32's heap.",
        "",
        "| board | MCU, radio | install | boot and imports | sensors | on air | receive windows | awake "
        "| heap | µAh per wake | average µA | years | years, every wait in light sleep | off in deep sleep |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        *rows,
        "",
        "| goal | figure |",
        "|---|---|",
        f"| no source compiled on the board at boot (.mpy install) | {staged} |",
        "| waits (sensor conversion, time on air, receive windows) in light sleep where the chip allows | "
        f"{waits_light:,.0f} of {waits:,.0f} ms of waits on a wake with a status ({best}, .mpy): the BME280's "
        "conversion, time on air, the wait for the receive window and the window itself, where the radio's IRQ "
        "line can wake the CPU (an RTC GPIO: not on the T3-S3, whose DIO1 is GPIO 33); the rest at the active "
        "current (the last column: all of them in light sleep) |",
        f"| ≥ {GOAL_YEARS:.0f} years on the board that sleeps best ({best}) | {now.years:.2f} years "
        f"({'met' if now.years >= GOAL_YEARS else 'not met'}); {lighter.years:.2f} with every wait in light sleep |",
        "",
        f"CPU scale: {CPU_SCALE_SOURCE}.",
        f"Start-up: {STARTUP_SOURCE}.",
        "Currents (bench/battery.py has each source): "
        + "; ".join(f"{name} {figure.ma * 1000:,.0f} µA" for name, figure in BOARD_QUIESCENT.items())
        + " for the rest of the board asleep.",
    ]
    return "\n".join(lines)


def _switched_off(asleep: Asleep) -> str:
    off = [name for name, is_off in (("Vext held", asleep.vext_off), ("radio rail", asleep.radio_rail_off)) if is_off]
    return ", ".join(off) or "-"


def _staged_sources() -> str:
    """What a .mpy install puts on the board: modules compiled, and the source files the board compiles at boot."""
    profile = load_profile("heltec_v3")
    config = build_config(
        profile, "node", "bench", device_id=1, secrets=secrets_from_master(TEST_MASTER_KEY, 1), options=_options()
    )
    with tempfile.TemporaryDirectory() as folder:
        flash = Path(folder)
        stage(config, flash)
        compiled = len(list(flash.rglob("*.mpy")))
        sources = sorted(str(path.relative_to(flash)) for path in flash.rglob("*.py"))
    return f"{compiled} modules as .mpy; compiled at boot: {', '.join(sources)} (they import the firmware)"


if __name__ == "__main__":
    print(battery_table())
