"""borne/sensors.py on the board: configured sensors read into telemetry values, and a missing or
failing one reported as a fault, never raised."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from simulator.virtual_board import VirtualBoard
from tests.firmware.conftest import board_with_firmware
from tests.firmware.conftest import run_on as run

SDA, SCL = 21, 22
BME280, SHT4X = 0x76, 0x44
T, H, P = 1 << 0, 1 << 1, 1 << 2  # telemetry bits: temperature, humidity, pressure

SETUP = f"""
import json
from machine import I2C, Pin
from borne.sensors import Sensors
i2c = I2C(0, scl=Pin({SCL}), sda=Pin({SDA}))
def reading(names):
    sensors = Sensors(names, {{}}, i2c)
    values = sensors.read()
    return [None if v is None else round(v, 1) for v in values[:3]], sensors.faults
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
