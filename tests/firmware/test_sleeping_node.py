"""A node that deep-sleeps between reports sleeps lightly while its frame is on air, while it waits
for its receive window and in it; a node that stays awake waits in asyncio, where its other tasks go on."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from boards.profiles import load_profile
from boards.provisioning import RADIO_DEFAULTS, NodeOptions, build_config, secrets_from_master, stage
from payload_codec.vectorgen import TEST_MASTER_KEY
from simulator.virtual_board import RadioMedium, VirtualBoard
from simulator.virtual_board.board import DEEPSLEEP_RESET
from tests.firmware.conftest import require_vm

RX_EARLY_MS = 200  # borne.node: the window opens this much before the ACK is due
BME280_ADDRESS = 0x76

# The node built from its configuration, machine.lightsleep() and machine.deepsleep() recorded (the
# first still sleeps), and a status sent with its receive window.
STATUS_WINDOW = """
import asyncio, machine
from borne import config
from borne.node import Node
slept, deep = [], []
_lightsleep = machine.lightsleep
def lightsleep(ms=None):
    slept.append(ms)
    _lightsleep(ms)
machine.lightsleep = lightsleep
machine.deepsleep = deep.append
node = Node(config.load())
task = asyncio.create_task(node._send_status())
"""


@pytest.fixture(autouse=True)
def _vm() -> None:
    require_vm("sleeping node tests")


@contextlib.contextmanager
def node_board(tmp_path: Path, deep_sleep: bool) -> Iterator[VirtualBoard]:
    profile = load_profile("heltec_v2")
    options = NodeOptions(sensors=("bme280",), deep_sleep=deep_sleep)
    config = build_config(
        profile, "node", "test", device_id=9, secrets=secrets_from_master(TEST_MASTER_KEY, 9), options=options
    )
    stage(config, tmp_path / "flash")
    (tmp_path / "flash" / "main.py").unlink()  # the test builds the node itself
    with RadioMedium() as medium, VirtualBoard(tmp_path / "tty", tmp_path / "flash", medium=medium) as board:
        board.wire_i2c("bme280", BME280_ADDRESS, sda=profile["i2c"]["sda"], scl=profile["i2c"]["scl"])
        yield board


def status_sent(board: VirtualBoard) -> list[int]:
    """Send a status and wait out its receive window: what machine.lightsleep() was given."""
    board.exec(STATUS_WINDOW)
    deadline = time.monotonic() + 20
    while board.exec("print(task.done())").strip() != "True":
        assert time.monotonic() < deadline, "the status and its receive window did not end"
        time.sleep(0.2)
    return json.loads(board.exec("print(slept)").strip())


def test_a_node_that_deep_sleeps_spends_its_time_on_air_and_its_receive_window_in_light_sleep(
    tmp_path: Path,
) -> None:
    with node_board(tmp_path, deep_sleep=True) as board:
        on_air, before_window, window = status_sent(board)
        # The status frame's time on air: whole ms in the driver's light sleep, rounded up in the count.
        assert on_air <= int(board.exec("print(node.radio.air_ms)")) <= on_air + 1
        assert 0 < before_window <= int(RADIO_DEFAULTS["ack_delay_ms"]) - RX_EARLY_MS
        # Nothing answers: the window is slept through, until the line of the radio's IRQ (DIO0 on GPIO
        # 26, an RTC GPIO) would wake it.
        assert window >= RX_EARLY_MS


def test_a_node_that_stays_awake_waits_in_asyncio(tmp_path: Path) -> None:
    with node_board(tmp_path, deep_sleep=False) as board:
        assert status_sent(board) == []


# A DIO line already high when the light sleep ends, whose edge no IRQ handler saw (the ESP32 may
# miss it while its clocks are stopped).
MISSED_EDGE = """
import asyncio, machine
from borne.drivers.dio import DioWait
dio = DioWait(machine.Pin(%d, machine.Pin.IN), lambda: 0)  # no chip to ask for its IRQ flags
dio.arm()
waited = []
async def wait():
    waited.append(await dio.wait(1000, 20))
task = asyncio.create_task(wait())
"""
DIO_PIN = 34  # an input-only GPIO that nothing else on heltec_v2 uses


def test_after_light_sleep_a_dio_line_already_high_ends_the_wait_without_its_edge(tmp_path: Path) -> None:
    with node_board(tmp_path, deep_sleep=True) as board:
        board.set_pin(DIO_PIN, 1)
        board.exec(MISSED_EDGE % DIO_PIN)
        deadline = time.monotonic() + 10
        while board.exec("print(task.done())").strip() != "True":
            assert time.monotonic() < deadline, "the wait did not end"
            time.sleep(0.1)
        assert board.exec("print(waited)").strip() == "[True]"


# One wake of the node as main.py runs it: the Vext line's level at wake and when the sensors are
# read, written to the flash at machine.deepsleep(), which then sleeps `sleep_ms` (0: until a reset).
# Imported in a call of their own: this VM collects garbage only as a call into it returns (an ESP32
# collects when its heap is full), and the imports' garbage and a Node made in the same call would
# outgrow the ESP32's heap.
NODE_IMPORTS = "import asyncio, machine\nfrom borne import app, config\nfrom borne.node import Node"
WAKE_RECORDING_VEXT = """
cfg = config.load()
vext = machine.Pin(cfg["board"]["vext"]["pin"])
levels = [vext.value()]
app.power_up(cfg["board"])
node = Node(cfg)
_measure = node.sensors.measure
async def measure(*args):
    levels.append(vext.value())
    return await _measure(*args)
node.sensors.measure = measure
_deepsleep = machine.deepsleep
def deepsleep(ms):
    with open("vext.txt", "a") as f:
        f.write(" ".join(str(level) for level in levels) + "\\n")
    _deepsleep(%d)
machine.deepsleep = deepsleep
task = asyncio.create_task(node.run())
"""


def asleep_within(board: VirtualBoard, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not board.asleep:
        assert time.monotonic() < deadline, "the node did not go to deep sleep"
        time.sleep(0.1)


def test_a_sleeping_heltec_node_holds_vext_off_in_deep_sleep_and_switches_it_on_before_reading_its_sensors(
    tmp_path: Path,
) -> None:
    vext = load_profile("heltec_v2")["vext"]
    off = 1 - vext["on"]
    with node_board(tmp_path, deep_sleep=True) as board:
        # The line reads off unless the board drives it on, as through a pull-up to off.
        board.set_pin(vext["pin"], off)
        board.exec(NODE_IMPORTS)
        board.exec(WAKE_RECORDING_VEXT % 2000)
        asleep_within(board, 30)
        assert board.pin_output(vext["pin"]) == off  # held: a pad that floats is seen released (None)
        deadline = time.monotonic() + 30
        while board.asleep or board.reset_cause != DEEPSLEEP_RESET:
            assert time.monotonic() < deadline, "the node did not wake from deep sleep"
            time.sleep(0.1)
        board.exec(NODE_IMPORTS)
        board.exec(WAKE_RECORDING_VEXT % 0)
        asleep_within(board, 30)
        assert board.pin_output(vext["pin"]) == off
        # At each wake: off until power_up, then on when the sensors are read.
        assert (board.flash / "vext.txt").read_text().split("\n") == [f"{off} {vext['on']}"] * 2 + [""]
