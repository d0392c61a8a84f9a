"""borne/sensors.py on the board: configured sensors read into telemetry values, and a missing or
failing one reported as a fault, never raised."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction

import pytest

from payload_codec.schema import TELEMETRY_FIELDS
from simulator.virtual_board import VirtualBoard
from tests.firmware.conftest import board_with_firmware
from tests.firmware.conftest import run_on as run

SDA, SCL = 21, 22
BME280, SHT4X = 0x76, 0x44
T, H, P = 1 << 0, 1 << 1, 1 << 2  # telemetry bits: temperature, humidity, pressure

SETUP = f"""
import gc, json
from machine import I2C, Pin
from borne.sensors import Sensors, telemetry_raw
from borne.contract import TELEMETRY_FIELDS
def in_unit(bit, raw):  # a value on the wire back in its field's unit, to 0.1
    _, _, _, _, divisor, step, offset = TELEMETRY_FIELDS[bit]
    return round(raw * step / divisor + offset, 1)
i2c = I2C(0, scl=Pin({SCL}), sda=Pin({SDA}))
def reading(names):
    sensors = Sensors(names, {{}}, i2c)
    values = sensors.read()
    return [None if v is None else in_unit(i, v) for i, v in enumerate(values[:3])], sensors.faults
"""


@pytest.fixture(scope="module")
def vm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VirtualBoard]:
    yield from board_with_firmware(tmp_path_factory, "sensors_vm")


@pytest.fixture
def board(vm: VirtualBoard) -> VirtualBoard:
    for kind, address in (("bme280", BME280), ("sht4x", SHT4X)):
        vm.wire_i2c(kind, address, sda=SDA, scl=SCL)
    vm.set_air(temperature_c=22.5, humidity_pct=40.0, pressure_hpa=990.0)
    vm.exec(SETUP)
    return vm


def test_every_sensor_answering_gives_values_and_no_fault(board):
    assert run(board, "reading(['bme280'])") == [[22.5, 40.0, 990.0], 0]


def test_a_silent_sensor_is_a_fault_of_its_quantities_not_an_error(board):
    board.silence_i2c(BME280)
    assert run(board, "reading(['bme280'])") == [[None, None, None], T | H | P]


def test_what_another_sensor_measures_is_no_fault(board):
    board.silence_i2c(BME280)
    assert run(board, "reading(['bme280', 'sht4x'])") == [[22.5, 40.0, None], P]


def test_a_sensor_plugged_in_later_is_found_at_the_next_reading(board):
    board.silence_i2c(BME280)
    board.exec("sensors = Sensors(['bme280'], {}, i2c)\nsensors.read()")
    board.silence_i2c(BME280, silent=False)
    assert run(board, "[sensors.read()[0] is not None, sensors.faults]") == [True, 0]


def exact_raw(field: int, value: int, per: int) -> int:
    """payload_codec's raw = round((value - offset) * divisor / step), in exact fractions, half to even."""
    spec = TELEMETRY_FIELDS[field]
    return round((Fraction(value, per) - spec.offset) * spec.divisor / spec.step)


# Whole-number readings as the drivers give them, ties of each field's rounding among them.
READINGS = [
    *[(0, centi_c, 100) for centi_c in (2153, -1, -4500, 0, 12999, -32768)],
    *[(1, centi_pct, 100) for centi_pct in (4525, 4575, 4550, 25, 75, 0, 10000, 9999)],
    *[(2, pa, 100) for pa in (101325, 101315, 99005, 99015, 100000, 30000, 110000)],
    (3, 612, 1),
    (4, 250, 1),
    (5, 2**32 - 1, 1),
    *[(6, mv, 1) for mv in (3700, 3705, 3715, 2000, 2004, 4550, 1999)],
]


def test_whole_number_readings_go_on_the_wire_as_payload_codec_rounds_them_exactly(board):
    got = run(board, f"[telemetry_raw(*reading) for reading in {READINGS!r}]")
    assert got == [exact_raw(*reading) for reading in READINGS]


def test_whole_number_readings_put_nothing_on_the_heap(board):
    # A call of the VM collects nothing until it returns: what mem_alloc gained is what the readings took.
    allocated = run(
        board,
        "[gc.collect(), telemetry_raw(0, 2153, 100), gc.mem_alloc(),"
        " [telemetry_raw(f, v, p) for f, v, p in ((0, 2153, 100), (1, 4525, 100), (2, 101325, 100), (6, 3705, 1))],"
        " gc.mem_alloc()]",
    )
    assert allocated[4] - allocated[2] <= 64, allocated  # the list of four results, and none of its values
