"""The I2C drivers of firmware/borne/drivers, run by the real MicroPython VM against bus-level models.

The virtual board wires a BME280, an SCD4x and a PN532 to the I2C lines on GPIO 21 (SDA) and 22 (SCL);
each test sets the world (air, badge, faults) from the host and runs the real driver on the board.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from simulator.virtual_board import VirtualBoard
from tests.firmware.conftest import DRIVER_HELPERS, board_with_firmware
from tests.firmware.conftest import run_on as run

SDA, SCL = 21, 22
BME280, SCD4X, PN532 = 0x76, 0x62, 0x24
ENODEV, EIO = 19, 5

SETUP = (
    DRIVER_HELPERS
    + f"""
from machine import I2C, Pin
import time
from borne.drivers import bme280, pn532, scd4x
i2c = I2C(0, scl=Pin({SCL}), sda=Pin({SDA}))
"""
)


@pytest.fixture(scope="module")
def vm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VirtualBoard]:
    """One virtual board for the module, with the drivers deployed by mpremote."""
    yield from board_with_firmware(tmp_path_factory, "drivers_vm")


@pytest.fixture
def board(vm: VirtualBoard) -> VirtualBoard:
    """The board with all three chips wired, answering, no badge, a mild indoor air."""
    for kind, address in (("bme280", BME280), ("scd4x", SCD4X), ("pn532", PN532)):
        vm.wire_i2c(kind, address, sda=SDA, scl=SCL, interval_ms=0)
    vm.set_air(temperature_c=21.0, humidity_pct=45.0, pressure_hpa=1013.25, co2_ppm=420)
    vm.unwire_i2c(SCD4X)  # then a new one: idle, as at power-on (it refuses a start while it measures)
    vm.wire_i2c("scd4x", SCD4X, sda=SDA, scl=SCL, interval_ms=0)
    vm.exec(SETUP)
    return vm


def test_scan_lists_the_addresses_of_the_chips_on_the_lines(board: VirtualBoard) -> None:
    assert run(board, "i2c.scan()") == [PN532, SCD4X, BME280]


def test_a_transfer_to_an_address_nobody_acks_raises_enodev(board: VirtualBoard) -> None:
    assert run(board, "attempt(lambda: i2c.readfrom(0x50, 1))")["errno"] == ENODEV


def test_chips_on_other_pins_are_not_on_this_bus(board: VirtualBoard) -> None:
    assert run(board, "I2C(1).scan()") == []


@pytest.mark.parametrize(
    ("temperature_c", "humidity_pct", "pressure_hpa"),
    [(21.0, 45.0, 1013.25), (-10.5, 90.0, 950.0), (35.2, 12.3, 1050.0), (0.0, 60.0, 870.4)],
)
def test_bme280_reads_the_air_within_its_tolerance(
    board: VirtualBoard, temperature_c: float, humidity_pct: float, pressure_hpa: float
) -> None:
    board.set_air(temperature_c=temperature_c, humidity_pct=humidity_pct, pressure_hpa=pressure_hpa)
    centi_c, centi_pct, pa = run(board, "bme280.BME280(i2c).read()")
    assert abs(centi_c / 100 - temperature_c) <= 0.1
    assert abs(centi_pct / 100 - humidity_pct) <= 0.5
    assert abs(pa / 100 - pressure_hpa) <= 0.2


def test_bme280_that_does_not_answer_raises_enodev(board: VirtualBoard) -> None:
    run(board, "[globals().__setitem__('sensor', bme280.BME280(i2c)), 0][1]")
    board.silence_i2c(BME280)
    assert run(board, "attempt(sensor.read)")["errno"] == ENODEV
    assert run(board, "attempt(lambda: bme280.BME280(i2c))")["errno"] == ENODEV


def test_scd4x_crc8_matches_sensirions_example(board: VirtualBoard) -> None:
    assert run(board, "scd4x.crc8(b'\\xbe\\xef')") == 0x92  # the datasheet's worked example


def test_scd4x_reads_co2_temperature_and_humidity(board: VirtualBoard) -> None:
    board.set_air(co2_ppm=812, temperature_c=23.4, humidity_pct=51.0)
    ready, (co2, centi_c, centi_pct) = run(
        board, "[globals().__setitem__('co2', scd4x.SCD4x(i2c)), co2.start(), co2.data_ready(), co2.read()][2:]"
    )
    assert ready is True
    assert co2 == 812
    assert abs(centi_c / 100 - 23.4) <= 0.02
    assert abs(centi_pct / 100 - 51.0) <= 0.02


def test_scd4x_answer_with_a_bad_crc_raises_eio_and_the_next_one_reads(board: VirtualBoard) -> None:
    board.set_air(co2_ppm=1500)
    run(board, "[globals().__setitem__('co2', scd4x.SCD4x(i2c)), co2.start()][0]")
    board.corrupt_next_answer(SCD4X)
    assert run(board, "attempt(co2.read)")["errno"] == EIO
    assert run(board, "co2.read()")[0] == 1500


def test_scd4x_without_a_new_sample_raises_enodev(board: VirtualBoard) -> None:
    board.wire_i2c("scd4x", SCD4X, sda=SDA, scl=SCL)  # 5 s between samples, as the chip
    assert run(board, "[globals().__setitem__('co2', scd4x.SCD4x(i2c)), co2.start(), co2.data_ready()][2]") is False
    assert run(board, "attempt(co2.read)")["errno"] == ENODEV


def test_pn532_reports_its_firmware_version(board: VirtualBoard) -> None:
    assert run(board, "pn532.PN532(i2c).firmware_version()") == [0x32, 1, 6, 7]


@pytest.mark.parametrize(
    ("uid", "presented", "read_as"),
    [
        ("04a1b2c3", "mifare_classic", "mifare_classic"),
        ("04a1b2c3d4e5f6", "mifare_ultralight", "mifare_ultralight"),
        ("04a1b2c3d4e5f6", "ntag", "mifare_ultralight"),  # Type 2 tags share ATQA and SAK
        ("04a1b2c3d4e5f6", "mifare_desfire", "mifare_desfire"),
        ("04a1b2c3d4e5f60718a9", "mifare_classic", "mifare_classic"),
        ("04a1b2c3d4e5f60718a9", "iso14443_4", "iso14443_4"),
    ],
)
def test_pn532_reads_the_uid_and_tag_type_of_a_presented_badge(
    board: VirtualBoard, uid: str, presented: str, read_as: str
) -> None:
    board.present_badge(bytes.fromhex(uid), presented)
    assert run(board, "badge(pn532.PN532(i2c))") == [uid, read_as]


def test_pn532_with_no_badge_reads_none(board: VirtualBoard) -> None:
    board.present_badge(b"\x01\x02\x03\x04")
    run(board, "[globals().__setitem__('reader', pn532.PN532(i2c)), reader.read_badge()][0]")
    board.remove_badge()
    assert run(board, "badge(reader)") is None


def test_pn532_bad_checksum_is_an_eio_the_node_counts_and_survives(board: VirtualBoard) -> None:
    board.present_badge(bytes.fromhex("deadbeef"))
    run(board, "[globals().__setitem__('reader', pn532.PN532(i2c)), 0][1]")
    board.corrupt_next_answer(PN532)
    polls = run(board, "[attempt(lambda: badge(reader)) for _ in range(2)]")
    assert polls[0]["errno"] == EIO
    assert "checksum" in polls[0]["message"]
    assert polls[1] == {"ok": ["deadbeef", "mifare_classic"]}


def test_pn532_that_does_not_answer_raises_enodev(board: VirtualBoard) -> None:
    run(board, "[globals().__setitem__('reader', pn532.PN532(i2c)), 0][1]")
    board.silence_i2c(PN532)
    assert run(board, "attempt(lambda: badge(reader))")["errno"] == ENODEV
    assert run(board, "attempt(lambda: pn532.PN532(i2c))")["errno"] == ENODEV


def test_scd4x_single_shot_is_refused_while_periodic_measurement_runs(board: VirtualBoard) -> None:
    run(board, "[globals().__setitem__('co2', scd4x.SCD4x(i2c)), co2.start()][0]")
    assert run(board, "attempt(co2.measure_single_shot)")["errno"] == ENODEV  # datasheet §3.4 Table 9
    assert run(board, "attempt(lambda: [co2.stop(), co2.measure_single_shot()][1])") == {"ok": None}


def test_scd4x_single_shot_answers_nothing_while_it_measures_then_gives_one_sample(board: VirtualBoard) -> None:
    board.wire_i2c("scd4x", SCD4X, sda=SDA, scl=SCL, single_shot_ms=300)
    board.set_air(co2_ppm=655)
    run(board, "[globals().__setitem__('co2', scd4x.SCD4x(i2c)), co2.stop(), co2.measure_single_shot()][0]")
    assert run(board, "attempt(co2.data_ready)")["errno"] == ENODEV  # executing: no acknowledge
    ready, sample = run(board, "[time.sleep_ms(300), co2.data_ready(), co2.read()][1:]")
    assert ready is True
    assert sample[0] == 655
    assert run(board, "co2.data_ready()") is False  # read out: the buffer is empty until the next shot
