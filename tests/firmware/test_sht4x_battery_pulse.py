"""The SHT4x, battery and pulse-counter drivers of firmware/borne/drivers, run by the real MicroPython VM.

The virtual board wires an SHT4x to the I2C lines on GPIO 21 (SDA) and 22 (SCL); the host sets the
air, the voltage on the battery's ADC pin and the level on the meter's pulse pin, and the real drivers
read them on the board.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from simulator.virtual_board import VirtualBoard
from tests.firmware.conftest import DRIVER_HELPERS, board_with_firmware
from tests.firmware.conftest import run_on as run

SDA, SCL = 21, 22
SHT4X = 0x44
BATTERY_PIN, PULSE_PIN = 35, 27
ENODEV, EIO = 19, 5

SETUP = (
    DRIVER_HELPERS
    + f"""
from machine import I2C, Pin
from borne.drivers import battery, pulse, sht4x
i2c = I2C(0, scl=Pin({SCL}), sda=Pin({SDA}))
"""
)


@pytest.fixture(scope="module")
def vm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VirtualBoard]:
    """One virtual board for the module, with the drivers deployed by mpremote."""
    for board in board_with_firmware(tmp_path_factory, "sht4x_vm"):
        board.exec(SETUP)
        yield board


@pytest.fixture
def board(vm: VirtualBoard) -> VirtualBoard:
    """The board with an SHT4x wired and answering, and nothing driving the pulse pin."""
    vm.wire_i2c("sht4x", SHT4X, sda=SDA, scl=SCL)
    vm.set_pin(PULSE_PIN, None)
    return vm


@pytest.mark.parametrize(
    ("temperature_c", "humidity_pct"),
    [(21.0, 45.0), (-10.5, 90.0), (35.25, 12.3), (0.0, 0.0), (60.0, 100.0)],
)
def test_sht4x_reads_the_air_within_its_resolution(
    board: VirtualBoard, temperature_c: float, humidity_pct: float
) -> None:
    board.set_air(temperature_c=temperature_c, humidity_pct=humidity_pct)
    centi_c, centi_pct = run(board, "sht4x.SHT4x(i2c).read()")  # whole numbers: 0.01 °C and 0.01 %RH
    assert isinstance(centi_c, int) and isinstance(centi_pct, int)
    assert abs(centi_c - temperature_c * 100) <= 1  # one step is 175/65535 °C, then rounded to 0.01
    assert abs(centi_pct - humidity_pct * 100) <= 1  # and 125/65535 %RH


def test_sht4x_reads_its_serial_number(board: VirtualBoard) -> None:
    board.wire_i2c("sht4x", SHT4X, sda=SDA, scl=SCL, serial=0x12345678)
    assert run(board, "sht4x.SHT4x(i2c).serial_number()") == 0x12345678


def test_sht4x_answer_with_a_bad_crc_raises_eio_and_the_next_one_reads(board: VirtualBoard) -> None:
    board.set_air(temperature_c=23.5, humidity_pct=40.0)
    board.exec("sensor = sht4x.SHT4x(i2c)")
    board.corrupt_next_answer(SHT4X)
    reads = run(board, "[attempt(sensor.read) for _ in range(2)]")
    assert reads[0]["errno"] == EIO
    assert abs(reads[1]["ok"][0] - 2350) <= 1


def test_sht4x_that_does_not_answer_raises_enodev(board: VirtualBoard) -> None:
    board.silence_i2c(SHT4X)
    assert run(board, "attempt(sht4x.SHT4x(i2c).read)")["errno"] == ENODEV
    board.unwire_i2c(SHT4X)
    assert run(board, "attempt(sht4x.SHT4x(i2c).read)")["errno"] == ENODEV


@pytest.mark.parametrize(
    ("pin", "ratio", "microvolts", "millivolts"),
    [
        (str(BATTERY_PIN), "2", 1_850_000, 3700),  # 100k/100k, a GPIO number
        (f"Pin({BATTERY_PIN})", "3.2", 1_300_000, 4160),  # 220k/100k, a Pin
        (str(BATTERY_PIN), "2", 0, 0),  # no battery
    ],
)
def test_battery_millivolts_are_the_pin_voltage_times_the_divider_ratio(
    board: VirtualBoard, pin: str, ratio: str, microvolts: int, millivolts: int
) -> None:
    board.set_adc(BATTERY_PIN, microvolts)
    assert run(board, f"battery.Battery({pin}, {ratio}).millivolts()") == millivolts


def pulses(board: VirtualBoard, n: int, pause_s: float) -> None:
    """`n` pulses of an S0 output closing to ground, `pause_s` closed and `pause_s` open."""
    for _ in range(n):
        board.set_pin(PULSE_PIN, 0)
        time.sleep(pause_s)
        board.set_pin(PULSE_PIN, 1)
        time.sleep(pause_s)


def test_pulse_counter_counts_every_pulse_and_take_resets(board: VirtualBoard) -> None:
    board.exec(f"meter = pulse.PulseCounter({PULSE_PIN}, debounce_ms=5)")
    pulses(board, 25, 0.01)
    assert run(board, "[meter.count, meter.take(), meter.take()]") == [25, 25, 0]
    pulses(board, 3, 0.01)
    assert run(board, "[meter.count, meter.take()]") == [28, 3]


def test_pulse_counter_counts_a_bouncing_contact_once(board: VirtualBoard) -> None:
    board.exec(f"meter = pulse.PulseCounter(Pin({PULSE_PIN}), debounce_ms=500)")
    for level in (0, 1, 0, 1, 0):  # closing, with bounces well within 500 ms
        board.set_pin(PULSE_PIN, level)
    board.set_pin(PULSE_PIN, 1)  # opening
    time.sleep(0.6)
    board.set_pin(PULSE_PIN, 0)  # the next pulse, after a rest
    assert run(board, "meter.take()") == 2
