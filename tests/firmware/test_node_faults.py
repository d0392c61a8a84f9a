"""Faults of a running node, seen where the gateway sees them: in its status frames, heard on the air.

A modem that stops answering is reset and set up again, and its failure is in the next status
(`radio_errors`); a radio chip whose DIO line never reaches the board is polled over SPI, counted
once in `radio_errors`, and the node's frames go on without a reset; a reader that does not answer
is in `reader_errors`, a sensor that does not in `sensor_faults`, a write the flash refuses in
`flash_errors`. A door whose parts all fail, and whose
flash is full or refuses every write, goes on sending its status boot after boot, never a crash, and
checks badges in once its reader answers; a config downlink such a flash cannot keep is applied until
the next boot rather than crash the node. Only a modem that never answers stops the firmware: that is
safe mode (`test_radio_faults.py`).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import serial

from boards.profiles import load_profile
from boards.provisioning import NodeOptions, build_config, secrets_from_master, stage
from payload_codec import CheckinBatch, CodecError, Config, Status, derive_device_keys, open_frame
from payload_codec.frame import build_frame
from payload_codec.vectorgen import TEST_MASTER_KEY
from simulator.virtual_board import RadioMedium, VirtualBoard
from tests.firmware.conftest import require_vm
from tests.firmware.conftest import run_on as run
from tests.virtual_board.conftest import wait_for

DEVICE = 7
KEYS = derive_device_keys(TEST_MASTER_KEY, DEVICE)
PN532 = 0x24
WAIT_S = 120  # for a frame on the air: a loaded machine runs the VM slowly
PARTITION = 0x200000  # flash.mjs: MicroPython's 2 MiB vfs partition
NODE_IMPORTS = "import asyncio, json\nfrom borne import config\nfrom borne.node import Node"


def start_node(board: VirtualBoard) -> None:
    """A Node on the board, as `node`: main.py's stops for the REPL. Its modules are imported in a call of
    their own: this VM collects garbage only as a call into it returns (an ESP32 collects when its heap is
    full), and the imports' garbage and a Node made in the same call would outgrow the ESP32's heap."""
    board.exec(NODE_IMPORTS)
    board.exec("node = Node(config.load())")


class Heard:
    """The node's frames heard on the medium, opened: its status messages, and its check-in frames."""

    def __init__(self, medium: RadioMedium) -> None:
        self.statuses: list[Status] = []
        self.checkins = 0
        self._changed = threading.Condition()
        medium.add_listener(self._heard, name="listener")

    def _heard(self, payload: bytes, *_radio: object) -> None:
        frame = open_frame(payload, KEYS, None)
        if isinstance(frame, CodecError):
            return
        with self._changed:
            if isinstance(frame.message, Status):
                self.statuses.append(frame.message)
            elif isinstance(frame.message, CheckinBatch):
                self.checkins += 1
            self._changed.notify_all()

    def wait(self, what: str, done: Callable[[], bool]) -> None:
        deadline = time.monotonic() + WAIT_S
        with self._changed:
            while not done():
                left = deadline - time.monotonic()
                assert left > 0, f"{what} not heard within {WAIT_S} s"
                self._changed.wait(left)

    def next_status(self, after: int) -> Status:
        """The first status heard after the `after` first ones."""
        self.wait(f"status frame {after + 1}", lambda: len(self.statuses) > after)
        return self.statuses[after]


def node_config(profile: str, **options: object) -> dict:
    return build_config(
        load_profile(profile),
        "node",
        "test",
        device_id=DEVICE,
        secrets=secrets_from_master(TEST_MASTER_KEY, DEVICE),
        options=NodeOptions(**options),  # type: ignore[arg-type]
        radio={"sf": 7},
    )


def fill_flash(board: VirtualBoard) -> None:
    """Another program's file takes the whole partition: every write that needs a block is refused."""
    (board.flash / "photos.bin").write_bytes(bytes(PARTITION))


FLASH_FAULTS: dict[str, Callable[[VirtualBoard], None]] = {
    "full": fill_flash,  # ENOSPC
    "failing": lambda board: board.refuse_flash_writes(),  # EIO, every write
}


@contextlib.contextmanager
def node_on_air(tmp_path: Path, profile: str) -> Iterator[tuple[VirtualBoard, RadioMedium, Heard]]:
    """A node of `profile` flashed and powered on (its main.py runs), its frames heard on the air."""
    require_vm("node fault tests")
    stage(node_config(profile), tmp_path / "flash")
    chip = load_profile(profile)["radio"]["chip"]
    with (
        RadioMedium() as medium,
        VirtualBoard(tmp_path / "tty", tmp_path / "flash", radio=chip, medium=medium) as board,
    ):
        yield board, medium, Heard(medium)


def send_status(board: VirtualBoard) -> None:
    """The node's status task's one step (a status, then its receive window), run to its end."""
    board.exec("task = asyncio.create_task(node._send_status())")
    wait_for(lambda: run(board, "task.done()"), 30)


# The modem.


def unpower_sx1276(board: VirtualBoard) -> None:
    board.silence_spi(18)


def power_sx1276(board: VirtualBoard) -> None:
    board.silence_spi(18, False)


def mend(board: VirtualBoard) -> None:
    board.break_radio()


# (board profile, the fault, its end, whether the modem could be set up again at once)
RADIO_FAULTS = {
    # An SX1276 that lost its power: the send never ends (no TxDone), RegVersion reads 0x00.
    "sx1276 unpowered": ("heltec_v2", unpower_sx1276, power_sx1276, False),
    # An SX1262 that hangs with BUSY high: every command times out, the reset's set-up too.
    "sx1262 stuck busy": ("heltec_v3", lambda board: board.break_radio("busy_stuck"), mend, False),
    # An SX1262 whose oscillator does not start: SetTx refused (an OpError).
    "sx1262 refuses to send": ("heltec_v3", lambda board: board.break_radio("xosc_fails"), mend, True),
}


@pytest.mark.parametrize("case", RADIO_FAULTS)
def test_a_modem_that_failed_is_set_up_again_and_counted_in_the_next_status(tmp_path: Path, case: str) -> None:
    profile, fail, end, set_up_at_once = RADIO_FAULTS[case]
    with node_on_air(tmp_path, profile) as (board, _medium, heard):
        start_node(board)  # this one runs its status step alone
        fail(board)
        before = len(heard.statuses)
        send_status(board)
        # Set up again at once, or (no chip to set up) before the modem's next use.
        assert run(board, "[node.radio.errors, node.radio.resets]") == [1, 1 if set_up_at_once else 0]
        end(board)
        send_status(board)
        heard.wait("the status after", lambda: bool(heard.statuses[before:] and heard.statuses[-1].radio_errors))
        # (A chip that lost only its IRQ did send the first, which counted no error yet.)
        assert [status.radio_errors for status in heard.statuses[before:]] in ([1], [0, 1])
        assert run(board, "[node.radio.errors, node.radio.resets]") == [1, 1]


def test_a_node_whose_dio0_never_reaches_the_board_goes_on_sending_and_says_so_once(tmp_path: Path) -> None:
    # An SX1276 whose DIO0 never rises (a cold solder joint): TxDone goes unseen, the chip answers.
    with node_on_air(tmp_path, "heltec_v2") as (board, _medium, heard):
        start_node(board)
        board.break_radio("dio0_dead")
        boots = board.boots
        before = len(heard.statuses)
        for _ in range(3):
            send_status(board)
        heard.wait("three status frames", lambda: len(heard.statuses) >= before + 3)
        # The first went before the line was found dead (at its TX-done); the next say so.
        assert [status.radio_errors for status in heard.statuses[before:]] == [0, 1, 1]
        assert run(board, "[node.radio.errors, node.radio.resets, node.radio.dio_dead]") == [1, 0, True]
        assert board.boots == boots


def test_a_boot_status_lost_on_the_air_goes_out_again_within_half_a_minute(tmp_path: Path) -> None:
    # Boards powered on together, at a power cut's end, may lose their boot statuses in a collision, and
    # a status is not acknowledged: the node sends it again 10 to 30 s later, not an hour later.
    with node_on_air(tmp_path, "heltec_v2") as (board, medium, heard):
        medium.set_one_way_loss(board, "listener", 1.0)  # main.py has not sent its status yet: it waits 3 s
        wait_for(lambda: medium.stats["lost"] > 0, WAIT_S)
        lost_at = time.monotonic()
        medium.set_one_way_loss(board, "listener", 0.0)
        status = heard.next_status(0)
        assert time.monotonic() - lost_at >= 10  # the boot status's second, not the first heard late
        assert status.reset_cause == "power_on"


# Every part failing, boot after boot.


MFRC522_CS = 33  # heltec_v2's nfc_spi: SCK 17, MOSI 23, MISO 22, reset 32


@pytest.fixture
def reader() -> str:
    return "pn532"


def power_reader(board: VirtualBoard, reader: str, powered: bool) -> None:
    if reader == "pn532":
        board.silence_i2c(PN532, silent=not powered)
    else:
        board.silence_spi(MFRC522_CS, silent=not powered)


@pytest.fixture
def door(tmp_path: Path, reader: str) -> Iterator[tuple[VirtualBoard, Heard]]:
    """A door with its `reader` (a PN532 on the I2C bus, heltec_v2: 4/15, or an MFRC522 on its SPI bus)
    and a BME280 on the I2C bus, its frames heard on the air. The reader is wired but unpowered; the
    BME280 is not there at all. Retries of an unacknowledged check-in come within 2 s."""
    require_vm("node fault tests")
    config = node_config("heltec_v2", nfc=reader, sensors=("bme280",))
    config["nfc"]["retry_max_s"] = 2
    stage(config, tmp_path / "flash")
    with (
        RadioMedium() as medium,
        VirtualBoard(tmp_path / "tty", tmp_path / "flash", medium=medium) as board,
    ):
        if reader == "pn532":
            board.wire_i2c("pn532", PN532, sda=4, scl=15)
        else:
            board.wire_spi("mfrc522", cs=MFRC522_CS, sck=17, mosi=23, miso=22, reset=32)
        power_reader(board, reader, False)
        yield board, Heard(medium)


@pytest.mark.parametrize("reader", ["pn532", "mfrc522"])
@pytest.mark.parametrize("flash", FLASH_FAULTS)
def test_a_door_whose_reader_sensor_and_flash_fail_runs_on_boot_after_boot_and_says_so(
    door, reader: str, flash: str
) -> None:
    board, heard = door
    FLASH_FAULTS[flash](board)
    boots = board.boots
    for boot in range(3):
        before = len(heard.statuses)
        board.power_cycle()  # the faults stay: a power cut mends none of them
        status = heard.next_status(before)
        assert status.reset_cause == "power_on"  # never "crash"
        assert status.reader_errors > 0, f"boot {boot}"
        assert set(status.sensor_faults) == {"temperature_c", "humidity_pct", "pressure_hpa"}
    assert board.boots == boots + 3
    assert not (board.flash / "crash.txt").exists()

    power_reader(board, reader, True)  # the reader answers: the door checks the badge in
    board.present_badge(bytes.fromhex("04a1b2c3d4e5f6"), cs=None if reader == "pn532" else MFRC522_CS)
    heard.wait("a check-in frame", lambda: heard.checkins > 0)
    assert board.boots == boots + 3


def test_a_modem_that_stops_answering_for_good_ends_in_safe_mode(door) -> None:
    board, _heard = door
    power_reader(board, "pn532", True)
    with serial.Serial(str(board.port), 115200, timeout=0.2) as console:
        board.silence_spi(18)  # the SX1276 goes, and stays
        board.present_badge(bytes.fromhex("04a1b2c3d4e5f6"))  # a check-in to send, tried again and again
        printed = b""
        deadline = time.monotonic() + WAIT_S
        while b"mpremote can reach" not in printed and time.monotonic() < deadline:
            printed += console.read(4096)
    text = printed.decode(errors="replace")
    assert "the radio failed 10 times in a row" in text  # set up again after each of them, in vain
    assert "SAFE MODE: 3 crashes in a row" in text  # then the boots that find no radio


@pytest.mark.parametrize("flash", FLASH_FAULTS)
def test_a_config_downlink_the_flash_cannot_keep_is_applied_until_the_next_boot(door, flash: str) -> None:
    board, _heard = door
    start_node(board)
    FLASH_FAULTS[flash](board)
    frame = build_frame(Config(spreading_factor=8, report_interval_s=120), DEVICE, 1, KEYS)
    printed = board.exec(f"print('ACK', node._take_downlink(bytes.fromhex('{frame.hex()}'), 0))")
    assert "ACK False" in printed and "not kept" in printed
    assert run(board, "[node.radio.sf, node.configured, node.config_save_errors]") == [8, True, 1]  # applied at once
    assert run(board, "config.load()['radio']['sf']") == 7  # not kept: the gateway sends it again after a boot
    assert not list(board.flash.glob("config.json.*"))  # nothing half written left behind


@pytest.mark.parametrize("flash", FLASH_FAULTS)
def test_every_write_the_flash_refuses_is_counted_in_the_next_status(door, flash: str) -> None:
    board, heard = door
    FLASH_FAULTS[flash](board)
    # A failing flash refuses the check-in journal's boot record; a full one may still hold it in the
    # journal's last block.
    start_node(board)
    refused = run(board, "node.queue.journal_errors")
    before = len(heard.statuses)
    send_status(board)
    assert heard.next_status(before).flash_errors == refused

    frame = build_frame(Config(report_interval_s=120), DEVICE, 1, KEYS)
    board.exec(f"node._take_downlink(bytes.fromhex('{frame.hex()}'), 0)")  # a config it cannot keep
    send_status(board)
    assert heard.next_status(before + 1).flash_errors == refused + 1
