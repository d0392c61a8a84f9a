"""The MFRC522 driver of firmware/borne/drivers, run by the real MicroPython VM against a register-level
model of the reader (and of the badge in its field) behind machine.SPI.

The virtual board wires an MFRC522 to the VSPI lines (SCK 18, MOSI 23, MISO 19), selected by GPIO 5;
each test sets the world (badge, faults) from the host and runs the real driver on the board.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import pytest

from simulator.virtual_board import VirtualBoard
from tests.firmware.conftest import DRIVER_HELPERS, board_with_firmware
from tests.firmware.conftest import run_on as run

SCK, MOSI, MISO = 18, 23, 19
CS, OTHER_CS, RESET = 5, 17, 16
ENODEV, EIO, ETIMEDOUT = 19, 5, 110

SETUP = (
    DRIVER_HELPERS
    + f"""
from machine import SPI, Pin
from borne.drivers.mfrc522 import MFRC522
spi = SPI(2, baudrate=4_000_000, sck=Pin({SCK}), mosi=Pin({MOSI}), miso=Pin({MISO}))
"""
)


@pytest.fixture(scope="module")
def vm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VirtualBoard]:
    """One virtual board for the module, with the drivers deployed by mpremote."""
    for board in board_with_firmware(tmp_path_factory, "mfrc522_vm"):
        board.exec(SETUP)
        yield board


@pytest.fixture
def board(vm: VirtualBoard) -> VirtualBoard:
    """The board with one MFRC522 wired, powered, no badge in its field."""
    vm.wire_spi("mfrc522", cs=CS, sck=SCK, mosi=MOSI, miso=MISO)
    with contextlib.suppress(ValueError):
        vm.unwire_spi(OTHER_CS)
    return vm


def open_reader(board: VirtualBoard, name: str = "reader", arguments: str = f"spi, Pin({CS})") -> None:
    board.exec(f"{name} = MFRC522({arguments})")


def test_spi_reaches_the_chip_only_while_its_chip_select_is_low(board: VirtualBoard) -> None:
    # Reading VersionReg (0x37): the address byte, then a second byte that clocks its value out.
    printed = board.exec(
        f"cs = Pin({CS}, Pin.OUT, value=0)\n"
        "selected = list(spi.read(2, 0xEE))\n"
        "cs(1)\n"
        "print(json.dumps([selected, list(spi.read(2, 0xEE))]))"
    )
    assert json.loads(printed) == [[0x00, 0x92], [0x00, 0x00]]


def test_version_reads_the_chips_version_register(board: VirtualBoard) -> None:
    assert run(board, f"MFRC522(spi, Pin({CS})).version()") == 0x92
    board.wire_spi("mfrc522", cs=CS, sck=SCK, mosi=MOSI, miso=MISO, version=0x91)
    assert run(board, f"MFRC522(spi, Pin({CS})).version()") == 0x91


@pytest.mark.parametrize(
    ("uid", "presented", "read_as"),
    [
        ("04a1b2c3", "mifare_classic", "mifare_classic"),
        ("04a1b2c3d4e5f6", "mifare_classic", "mifare_classic"),
        ("04a1b2c3d4e5f60718a9", "mifare_classic", "mifare_classic"),
        ("04a1b2c3d4e5f6", "mifare_ultralight", "mifare_ultralight"),
        ("04a1b2c3d4e5f6", "ntag", "mifare_ultralight"),  # Type 2 tags share ATQA and SAK
        ("04a1b2c3d4e5f6", "mifare_desfire", "mifare_desfire"),
        ("04a1b2c3d4e5f6", "mifare_plus", "iso14443_4"),  # at level 3 a Plus answers as any ISO 14443-4
        ("04a1b2c3d4e5f60718a9", "iso14443_4", "iso14443_4"),
    ],
)
def test_reads_the_uid_and_tag_type_of_a_presented_badge(
    board: VirtualBoard, uid: str, presented: str, read_as: str
) -> None:
    board.present_badge(bytes.fromhex(uid), presented, cs=CS)
    assert run(board, f"badge(MFRC522(spi, Pin({CS})))") == [uid, read_as]


def test_a_badge_held_on_the_reader_is_read_at_every_poll(board: VirtualBoard) -> None:
    board.present_badge(bytes.fromhex("deadbeef"), cs=CS)
    open_reader(board)
    # One poll per call, as the firmware's task polls: the VM collects the chip model's garbage between calls.
    assert [run(board, "badge(reader)") for _ in range(3)] == [["deadbeef", "mifare_classic"]] * 3


def test_with_no_badge_reads_none_and_then_the_next_badge(board: VirtualBoard) -> None:
    board.present_badge(bytes.fromhex("deadbeef"), cs=CS)
    open_reader(board)
    assert run(board, "badge(reader)") == ["deadbeef", "mifare_classic"]
    board.remove_badge(cs=CS)
    assert run(board, "badge(reader)") is None
    board.present_badge(bytes.fromhex("04a1b2c3d4e5f6"), "ntag", cs=CS)
    assert run(board, "badge(reader)") == ["04a1b2c3d4e5f6", "mifare_ultralight"]


@pytest.mark.parametrize("uid", ["deadbeef", "04a1b2c3d4e5f6"])
def test_a_damaged_answer_is_an_eio_and_the_next_read_succeeds(board: VirtualBoard, uid: str) -> None:
    board.present_badge(bytes.fromhex(uid), cs=CS)
    open_reader(board)
    board.corrupt_next_answer(cs=CS)
    polls = run(board, "[attempt(lambda: badge(reader)) for _ in range(2)]")
    assert polls[0]["errno"] == EIO
    assert "BCC" in polls[0]["message"]
    assert polls[1] == {"ok": [uid, "mifare_classic"]}


def test_a_reader_that_does_not_answer_raises_enodev(board: VirtualBoard) -> None:
    open_reader(board)
    board.silence_spi(CS)
    assert run(board, "attempt(lambda: badge(reader))")["errno"] == ENODEV
    assert run(board, f"attempt(lambda: MFRC522(spi, Pin({CS})))")["errno"] == ENODEV


def test_a_reader_that_lost_power_raises_until_it_is_opened_again(board: VirtualBoard) -> None:
    board.present_badge(bytes.fromhex("deadbeef"), cs=CS)
    open_reader(board)
    board.silence_spi(CS)
    board.silence_spi(CS, silent=False)  # back with its reset values: antenna and timer off
    assert run(board, "attempt(lambda: badge(reader))")["errno"] == ETIMEDOUT
    assert run(board, f"badge(MFRC522(spi, Pin({CS})))") == ["deadbeef", "mifare_classic"]


def test_a_reader_held_in_reset_answers_once_the_driver_releases_its_reset_line(board: VirtualBoard) -> None:
    board.wire_spi("mfrc522", cs=CS, sck=SCK, mosi=MOSI, miso=MISO, reset=RESET)
    board.present_badge(bytes.fromhex("deadbeef"), cs=CS)
    assert run(board, f"attempt(lambda: MFRC522(spi, Pin({CS})))")["errno"] == ENODEV
    assert run(board, f"badge(MFRC522(spi, Pin({CS}), reset=Pin({RESET})))") == ["deadbeef", "mifare_classic"]


def test_two_readers_on_one_bus_each_read_their_own_badge(board: VirtualBoard) -> None:
    board.wire_spi("mfrc522", cs=OTHER_CS, sck=SCK, mosi=MOSI, miso=MISO)
    board.present_badge(bytes.fromhex("deadbeef"), cs=CS)
    board.present_badge(bytes.fromhex("04a1b2c3d4e5f6"), "ntag", cs=OTHER_CS)
    # Both chip selects high first: one left floating would select its chip during the other's transfers.
    board.exec(f"idle = [Pin(cs, Pin.OUT, value=1) for cs in ({CS}, {OTHER_CS})]")
    read = [run(board, f"badge(MFRC522(spi, Pin({cs})))") for cs in (CS, OTHER_CS)]
    assert read == [["deadbeef", "mifare_classic"], ["04a1b2c3d4e5f6", "mifare_ultralight"]]


@pytest.mark.parametrize(
    "bus",
    [
        f"SPI(2, polarity=1, sck=Pin({SCK}), mosi=Pin({MOSI}), miso=Pin({MISO}))",
        f"SPI(2, phase=1, sck=Pin({SCK}), mosi=Pin({MOSI}), miso=Pin({MISO}))",
        f"SPI(2, firstbit=SPI.LSB, sck=Pin({SCK}), mosi=Pin({MOSI}), miso=Pin({MISO}))",
        f"SPI(2, baudrate=20_000_000, sck=Pin({SCK}), mosi=Pin({MOSI}), miso=Pin({MISO}))",
        "SPI(1)",  # other pins
    ],
    ids=["polarity", "phase", "lsb-first", "too-fast", "other-pins"],
)
def test_a_reader_clocked_otherwise_than_it_expects_does_not_answer(board: VirtualBoard, bus: str) -> None:
    assert run(board, f"attempt(lambda: MFRC522({bus}, Pin({CS})))")["errno"] == ENODEV
