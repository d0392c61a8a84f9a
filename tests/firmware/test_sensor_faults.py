"""Faults of the node's parts, each seen by the real firmware in the VM: a sensor absent, an answer whose
CRC is wrong, a first sample slower than the driver waits; a PN532 that NACKs while it starts, stretches
the clock past the bus's timeout, or answers with a bad checksum. Each is counted (a fault bit of the
status frame's sensor faults, or a reader error) and the next reading recovers; none raises."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from boards.profiles import load_profile
from boards.provisioning import NodeOptions, build_config, secrets_from_master, stage
from payload_codec.vectorgen import TEST_MASTER_KEY
from simulator.virtual_board import RadioMedium, VirtualBoard
from tests.firmware.conftest import DRIVER_HELPERS, board_with_firmware, require_vm
from tests.firmware.conftest import run_on as run

SDA, SCL = 21, 22
BME280, SCD4X, SHT4X, PN532 = 0x76, 0x62, 0x44, 0x24
T, H, P, CO2 = 1 << 0, 1 << 1, 1 << 2, 1 << 3  # telemetry bits: temperature, humidity, pressure, CO2
# An SCD4x that fails flags CO2 only (sensors.py), though its temperature and humidity go missing too.
ENODEV, EIO, ETIMEDOUT = 19, 5, 116

SETUP = (
    DRIVER_HELPERS
    + f"""
import asyncio
from machine import I2C, Pin
from borne.sensors import Sensors
from borne.contract import TELEMETRY_FIELDS
def in_unit(bit, raw):  # a value on the wire back in its field's unit, to 0.1
    _, _, _, _, divisor, step, offset = TELEMETRY_FIELDS[bit]
    return round(raw * step / divisor + offset, 1)
from borne.drivers import pn532
i2c = I2C(0, scl=Pin({SCL}), sda=Pin({SDA}), freq=100000)
sensors = None
def reading(names=None, deep_sleep=False):
    global sensors
    if names is not None:
        sensors = Sensors(names, {{}}, i2c, deep_sleep=deep_sleep)
    values = sensors.read()
    return [None if v is None else in_unit(i, v) for i, v in enumerate(values[:4])], sensors.faults
reader_errors = 0
def poll(reader=None):
    # What the node's badge task does at each poll: open the reader if needed, read, count an error.
    global reader_errors
    try:
        return badge(reader or pn532.PN532(i2c))
    except OSError as e:
        reader_errors += 1
        return e.errno
"""
)
AIR = {"temperature_c": 22.5, "humidity_pct": 40.0, "pressure_hpa": 990.0, "co2_ppm": 800}
BME_VALUES = [22.5, 40.0, 990.0, None]
SHT_VALUES = [22.5, 40.0, None, None]
SCD_VALUES = [22.5, 40.0, None, 800]


@pytest.fixture(scope="module")
def vm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VirtualBoard]:
    yield from board_with_firmware(tmp_path_factory, "faults_vm")


@pytest.fixture
def board(vm: VirtualBoard) -> VirtualBoard:
    """Each chip new (as at power-on), answering, in a known air."""
    for kind, address, state in (
        ("bme280", BME280, {}),
        ("scd4x", SCD4X, {"interval_ms": 0}),
        ("sht4x", SHT4X, {}),
        ("pn532", PN532, {}),
    ):
        with contextlib.suppress(ValueError):  # the first test: not wired yet
            vm.unwire_i2c(address)
        vm.wire_i2c(kind, address, sda=SDA, scl=SCL, **state)
    vm.set_air(**AIR)
    vm.exec(SETUP)
    return vm


# Absent.


@pytest.mark.parametrize(
    ("name", "address", "bits", "values"),
    [
        ("bme280", BME280, T | H | P, BME_VALUES),
        ("sht4x", SHT4X, T | H, SHT_VALUES),
        ("scd4x", SCD4X, CO2, SCD_VALUES),
    ],
)
def test_an_absent_sensor_is_a_fault_of_its_quantities_until_it_answers(board, name, address, bits, values):
    board.silence_i2c(address)
    assert run(board, f"reading([{name!r}])") == [[None] * 4, bits]
    board.silence_i2c(address, silent=False)
    assert run(board, "reading()") == [values, 0]


# Sensirion CRC errors.


@pytest.mark.parametrize(
    ("name", "address", "bits", "values"),
    [("sht4x", SHT4X, T | H, SHT_VALUES), ("scd4x", SCD4X, CO2, SCD_VALUES)],
)
def test_an_answer_with_a_bad_crc_is_a_fault_and_the_next_reading_has_the_values(board, name, address, bits, values):
    assert run(board, f"reading([{name!r}])") == [values, 0]
    board.corrupt_next_answer(address)
    assert run(board, "reading()") == [[None] * 4, bits]
    assert run(board, "reading()") == [values, 0]


# A slow first sample.


@pytest.mark.parametrize(
    ("name", "address", "bits", "values"),
    [
        ("bme280", BME280, T | H | P, BME_VALUES),  # the driver polls its status for 20 ms
        ("sht4x", SHT4X, T | H, SHT_VALUES),  # the driver reads 10 ms after its command
    ],
)
def test_a_first_sample_slower_than_the_driver_waits_is_one_fault(board, name, address, bits, values):
    board.wire_i2c(name, address, sda=SDA, scl=SCL, first_sample_ms=500)
    assert run(board, f"reading([{name!r}])") == [[None] * 4, bits]
    time.sleep(0.6)  # the slow sample ends; the next one takes the datasheet's time
    assert run(board, "reading()") == [values, 0]


def test_an_scd4x_reports_nothing_before_its_first_periodic_sample_and_counts_no_fault(board):
    board.wire_i2c("scd4x", SCD4X, sda=SDA, scl=SCL, interval_ms=1000)
    assert run(board, "reading(['scd4x'])") == [[None] * 4, 0]  # measuring, as it should: not a fault
    time.sleep(1.2)
    assert run(board, "reading()") == [SCD_VALUES, 0]


def test_a_sleeping_nodes_scd4x_with_no_shot_taken_is_a_co2_fault_and_its_single_shot_reads(board):
    assert run(board, "reading(['scd4x'], deep_sleep=True)") == [[None] * 4, CO2]  # nothing measured
    run(board, "[asyncio.create_task(sensors.measure()), 0][1]")
    time.sleep(6)  # measure() waits the datasheet's 5 s for its single shot
    assert run(board, "[sensors.values[3], sensors.faults]") == [800, 0]


# machine.lightsleep() recorded: the ms it was asked.
SLEEPS_RECORDED = """
import machine
slept = []
_lightsleep = machine.lightsleep
def _recording(ms=None):
    slept.append(ms)
    _lightsleep(ms)
machine.lightsleep = _recording
"""


def test_a_sleeping_node_waits_for_its_bme280_and_its_scd4x_single_shot_in_light_sleep(board):
    board.exec(SLEEPS_RECORDED)
    try:
        run(board, "[reading(['bme280', 'scd4x'], deep_sleep=True), 0][1]")
        run(board, "[asyncio.create_task(sensors.measure()), 0][1]")
        time.sleep(6)  # the single shot's 5 s, asleep
        # The BME280's longest measurement time (datasheet §9.1: 9.3 ms) at each reading; the single shot's 5 s.
        assert run(board, "[sensors.values[3], sensors.faults, slept]") == [800, 0, [10, 5000, 10]]
    finally:
        board.exec("machine.lightsleep = _lightsleep")


# PN532.


def test_a_pn532_that_nacks_while_it_starts_is_counted_until_it_answers(board):
    board.wire_i2c("pn532", PN532, sda=SDA, scl=SCL, power_up_ms=1500)
    board.silence_i2c(PN532)
    board.silence_i2c(PN532, silent=False)  # powered again: it starts
    assert run(board, "poll()") == ENODEV
    time.sleep(1.6)
    board.present_badge(bytes.fromhex("deadbeef"))
    assert run(board, "[poll(), reader_errors]") == [["deadbeef", "mifare_classic"], 1]


def test_clock_stretching_within_the_bus_timeout_is_harmless_and_past_it_an_error_counted(board):
    badge = {"uid": "deadbeef", "tag_type": "mifare_classic"}
    board.wire_i2c("pn532", PN532, sda=SDA, scl=SCL, stretch_ms=20, badge=badge)
    assert run(board, "poll()") == ["deadbeef", "mifare_classic"]  # under the ESP32's 50 ms default
    board.wire_i2c("pn532", PN532, sda=SDA, scl=SCL, stretch_ms=80, badge=badge)
    assert run(board, "[poll(), reader_errors]") == [ETIMEDOUT, 1]
    board.wire_i2c("pn532", PN532, sda=SDA, scl=SCL, badge=badge)
    assert run(board, "[poll(), reader_errors]") == [["deadbeef", "mifare_classic"], 1]


def test_a_pn532_answer_with_a_bad_checksum_is_counted_and_the_next_poll_reads(board):
    board.present_badge(bytes.fromhex("deadbeef"))
    run(board, "[globals().__setitem__('reader', pn532.PN532(i2c)), 0][1]")
    board.corrupt_next_answer(PN532)
    assert run(board, "[poll(reader), poll(reader), reader_errors]") == [EIO, ["deadbeef", "mifare_classic"], 1]


@pytest.fixture
def door_node(tmp_path: Path) -> Iterator[VirtualBoard]:
    """A provisioned door node (heltec_v2, a PN532 on its I2C bus 4/15), its PN532 still starting."""
    require_vm("door node tests")
    options = NodeOptions(nfc="pn532")
    config = build_config(
        load_profile("heltec_v2"),
        "node",
        "test",
        device_id=7,
        secrets=secrets_from_master(TEST_MASTER_KEY, 7),
        options=options,
    )
    stage(config, tmp_path / "flash")
    with RadioMedium() as medium, VirtualBoard(tmp_path / "tty", tmp_path / "flash", medium=medium) as board:
        yield board


def test_the_node_counts_reader_errors_while_its_pn532_starts_then_checks_badges_in(door_node):
    board = door_node
    # The firmware that main.py started stops for the REPL: this one runs the badge task alone. Its modules
    # are imported in a call of their own: this VM collects garbage only as a call returns.
    board.exec("import asyncio, json\nfrom borne import config\nfrom borne.node import Node")
    board.exec("node = Node(config.load())")
    board.wire_i2c("pn532", PN532, sda=4, scl=15, power_up_ms=2000)
    board.silence_i2c(PN532)
    board.silence_i2c(PN532, silent=False)  # powered: it NACKs for 2 s
    board.exec("task = asyncio.create_task(node._badges(node.queue))")
    time.sleep(1)
    assert run(board, "[node.reader_errors > 0, node.queue.depth]") == [True, 0]
    time.sleep(1.5)
    board.present_badge(bytes.fromhex("deadbeef"))
    deadline = time.monotonic() + 10
    while run(board, "node.queue.depth") == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    errors = run(board, "node.reader_errors")
    assert run(board, "node.queue.depth") == 1  # the badge checked in once the reader answered
    time.sleep(0.5)
    assert run(board, "node.reader_errors") == errors  # and no more errors since
