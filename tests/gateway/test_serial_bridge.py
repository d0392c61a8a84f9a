"""SerialBridge against a real pty: the test holds the master side and plays the bridge board."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
import termios
import tty
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import serial.serialposix

from gateway_daemon.sources import Downlink, Reception, TransmitError
from gateway_daemon.sources.serial_bridge import SerialBridge, open_without_reset
from payload_codec.bridge_link import DELIMITER, Record, RecordStream, encode_record

from .recording import RecordingPipeline

NOW = 1_700_000_000.5
FRAME = bytes.fromhex("4801020304aabbccdd")
RADIO = {"frequency_hz": 868_100_000, "spreading_factor": 9, "bandwidth_hz": 125_000, "coding_rate": 5}


def received(frame: bytes = FRAME, **fields: object) -> bytes:
    """A `received` record as the board writes it."""
    return encode_record(
        "received",
        {**RADIO, "rssi_dbm": -87, "snr_db": 7.25, "timestamp_us": 4_000_000_123, "frame": frame.hex()} | fields,
    )


def transmit_result(tx_id: int, result: str) -> bytes:
    return encode_record("transmit_result", {"tx_id": tx_id, "result": result, "airtime_us": 185_344})


class Board:
    """The bridge board's end of a pty, reached by the gateway through the symlink `path`
    (like /dev/serial/by-id/…), which `plug_in` re-points at a new pty each time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.plugged = False

    def plug_in(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        link = self.path.with_name(self.path.name + ".new")
        link.symlink_to(os.ttyname(self.slave))
        link.replace(self.path)
        self.plugged = True
        self.heard = bytearray()  # every byte the gateway wrote to this pty
        self._stream = RecordStream()
        self._records: list[Record] = []

    def unplug(self) -> None:
        """What pulling the USB cable does to the gateway's side: reads fail, and udev removes the
        by-id link (which also keeps the gateway off a pty that another test reuses the number of)."""
        if self.plugged:
            self.path.unlink()
            os.close(self.master)
            os.close(self.slave)
            self.plugged = False

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    async def connected(self) -> None:
        """Wait for the gateway to open the port: it writes a 0x00 then."""
        while DELIMITER not in self.heard:
            await self._read_more()

    async def next_record(self) -> Record:
        while not self._records:
            await self._read_more()
        return self._records.pop(0)

    async def _read_more(self) -> None:
        loop = asyncio.get_running_loop()
        readable = loop.create_future()
        loop.add_reader(self.master, lambda: readable.done() or readable.set_result(None))
        try:
            await readable
        finally:
            loop.remove_reader(self.master)
        data = os.read(self.master, 4096)
        self.heard += data
        for item in self._stream.feed(data):
            assert isinstance(item, Record), f"the gateway wrote a bad record: {item!r}"
            self._records.append(item)


@pytest.fixture
def board(tmp_path: Path):
    board = Board(tmp_path / "ttyUSB0")
    board.plug_in()
    yield board
    board.unplug()


@pytest.fixture
def missing_board(tmp_path: Path):
    """A board not plugged in yet: its path does not exist."""
    board = Board(tmp_path / "ttyUSB0")
    yield board
    board.unplug()


@contextlib.asynccontextmanager
async def running(bridge: SerialBridge) -> AsyncIterator[RecordingPipeline]:
    pipeline = RecordingPipeline()
    task = asyncio.create_task(bridge.run(pipeline.deliver, pipeline.reject))
    try:
        yield pipeline
    finally:
        task.cancel()
        async with asyncio.timeout(5):
            with contextlib.suppress(asyncio.CancelledError):
                await task


def bridge_on(board: Board, **options: object) -> SerialBridge:
    return SerialBridge(str(board.path), reopen_delay_s=0.05, clock=lambda: NOW, **options)


def downlink_answering(bridge: SerialBridge, timestamp_us: int = 4_294_000_000) -> Downlink:
    heard = Reception(FRAME, bridge.name, NOW, 868_100_000, 9, 125_000, -87.0, 7.25, timestamp_us)
    return Downlink(
        frame=bytes.fromhex("6001020304"),
        answers=heard,
        delay_us=1_000_000,
        frequency_hz=869_525_000,
        spreading_factor=9,
        tx_power_dbm=14,
    )


# --- opening the port -------------------------------------------------------------------------


async def test_opening_the_port_writes_one_delimiter_to_resync_the_board(board: Board) -> None:
    async with running(bridge_on(board)), asyncio.timeout(5):
        await board.connected()
        await asyncio.sleep(0.1)
        assert bytes(board.heard) == DELIMITER


def test_opening_the_port_never_asserts_rts_alone_which_resets_an_esp32(board: Board, monkeypatch) -> None:
    # Ptys refuse TIOCMGET/TIOCMBIS (ENOTTY): they have no modem lines, so replay pyserial's ioctls on a model
    # of a USB-serial chip, starting as Linux leaves it after open(): DTR and RTS both asserted.
    lines = {"dtr", "rts"}
    seen = []
    real_ioctl = serial.serialposix.fcntl.ioctl
    bits = {serial.serialposix.TIOCM_DTR: "dtr", serial.serialposix.TIOCM_RTS: "rts"}

    def modem_ioctl(fd, request, arg=0, *rest):
        if request in (serial.serialposix.TIOCMBIS, serial.serialposix.TIOCMBIC):
            line = bits[struct.unpack("I", arg)[0]]
            if request == serial.serialposix.TIOCMBIS:
                lines.add(line)
            else:
                lines.discard(line)
            seen.append(frozenset(lines))
            return arg
        return real_ioctl(fd, request, arg, *rest)

    monkeypatch.setattr(serial.serialposix.fcntl, "ioctl", modem_ioctl)
    link = open_without_reset(str(board.path), 115200)
    link.close()

    assert {"rts"} not in seen  # RTS without DTR pulls the ESP32's EN low
    assert lines == set()
    assert (link.dtr, link.rts) == (False, False)


def test_opening_the_port_clears_hupcl_so_closing_it_leaves_the_lines_alone(board: Board) -> None:
    attributes = termios.tcgetattr(board.slave)
    attributes[2] |= termios.HUPCL
    termios.tcsetattr(board.slave, termios.TCSANOW, attributes)

    link = open_without_reset(str(board.path), 115200)
    try:
        assert not termios.tcgetattr(board.slave)[2] & termios.HUPCL
    finally:
        link.close()


# --- what the board sends -----------------------------------------------------------------------


async def test_a_received_record_becomes_a_reception_with_its_radio_metadata(board: Board) -> None:
    bridge = bridge_on(board)
    async with running(bridge) as pipeline, asyncio.timeout(5):
        await board.connected()
        board.send(received(rssi_dbm=-112, snr_db=-7.5, timestamp_us=17))
        reception = await pipeline.receptions.get()

    assert reception == Reception(
        frame=FRAME,
        source="bridge:" + str(board.path),
        received_at=NOW,
        frequency_hz=868_100_000,
        spreading_factor=9,
        bandwidth_hz=125_000,
        rssi_dbm=-112.0,
        snr_db=-7.5,
        timestamp_us=17,
    )
    assert (bridge.stats.records, bridge.stats.received) == (1, 1)


async def test_garbage_and_corrupted_records_are_rejected_and_the_records_around_them_arrive(board: Board) -> None:
    corrupted = bytearray(received(frame=b"\x02"))
    corrupted[5] ^= 0x01  # a bit flipped inside the fields

    bridge = bridge_on(board)
    async with running(bridge) as pipeline, asyncio.timeout(5):
        await board.connected()
        board.send(received(frame=b"\x01") + b"\x05\x01garbage" + bytes(corrupted) + received(frame=b"\x03"))
        frames = [(await pipeline.receptions.get()).frame for _ in range(2)]
        reasons = [(await pipeline.rejected.get()).reason for _ in range(2)]

    assert frames == [b"\x01", b"\x03"]
    assert reasons == ["bad_cobs", "bad_crc"]
    assert bridge.stats.rejected == {"bad_cobs": 1, "bad_crc": 1}


async def test_a_rejected_record_names_the_bridge_and_says_why(board: Board) -> None:
    async with running(bridge_on(board)) as pipeline, asyncio.timeout(5):
        await board.connected()
        board.send(b"\x00\x05\x01\x00")
        rejected = await pipeline.rejected.get()

    assert (rejected.source, rejected.reason, rejected.raw) == (
        "bridge:" + str(board.path),
        "bad_cobs",
        b"\x00\x05\x01\x00",
    )
    assert rejected.detail


async def test_a_record_split_across_many_writes_arrives_whole(board: Board) -> None:
    async with running(bridge_on(board)) as pipeline, asyncio.timeout(5):
        await board.connected()
        for byte in received():
            board.send(bytes([byte]))
            await asyncio.sleep(0.002)  # let the bridge read each byte on its own
        reception = await pipeline.receptions.get()

    assert reception.frame == FRAME


async def test_heartbeats_are_kept_with_the_time_they_were_seen(board: Board) -> None:
    beat = {
        "link_version": 1,
        "firmware_major": 1,
        "firmware_minor": 4,
        "firmware_patch": 2,
        "uptime_s": 3600,
        "received": 120,
        "transmitted": 30,
        "radio_errors": 0,
        "records_dropped": 2,
    }
    bridge = bridge_on(board)
    async with running(bridge) as pipeline, asyncio.timeout(5):
        await board.connected()
        board.send(encode_record("heartbeat", beat) + received())
        await pipeline.receptions.get()  # records are handled in order: the heartbeat is in

    assert (bridge.stats.heartbeat, bridge.stats.heartbeat_at) == (beat, NOW)


async def test_the_boards_log_lines_go_to_logging_at_their_level(board: Board, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="gateway_daemon.sources.serial_bridge")
    async with running(bridge_on(board)) as pipeline, asyncio.timeout(5):
        await board.connected()
        board.send(encode_record("log", {"level": "warning", "text": "radio: no preamble lock"}) + received())
        await pipeline.receptions.get()

    (line,) = [r for r in caplog.records if "no preamble lock" in r.getMessage()]
    assert (line.name, line.levelno) == ("gateway_daemon.sources.serial_bridge", logging.WARNING)


# --- downlinks ----------------------------------------------------------------------------------


async def test_a_downlink_goes_out_as_a_transmit_record_timed_on_the_bridge_clock(board: Board) -> None:
    bridge = bridge_on(board)
    async with running(bridge), asyncio.timeout(5):
        await board.connected()
        sending = asyncio.create_task(bridge.transmit(downlink_answering(bridge, timestamp_us=4_294_000_000)))
        record = await board.next_record()
        board.send(transmit_result(record.fields["tx_id"], "sent"))
        await sending

    assert record == Record(
        "transmit",
        {
            "tx_id": 0,
            "frequency_hz": 869_525_000,
            "spreading_factor": 9,
            "bandwidth_hz": 125_000,
            "coding_rate": 5,
            "tx_power_dbm": 14,
            "timing": "at_timestamp",
            "timestamp_us": (4_294_000_000 + 1_000_000) % 2**32,  # the bridge's clock wraps
            "frame": "6001020304",
        },
    )
    assert bridge.stats.transmits == {"sent": 1}


async def test_each_downlink_gets_the_next_tx_id(board: Board) -> None:
    bridge = bridge_on(board)
    async with running(bridge), asyncio.timeout(5):
        await board.connected()
        for expected in (0, 1):
            sending = asyncio.create_task(bridge.transmit(downlink_answering(bridge)))
            record = await board.next_record()
            assert record.fields["tx_id"] == expected
            board.send(transmit_result(expected, "sent"))
            await sending


async def test_a_downlink_the_bridge_refuses_raises_its_reason(board: Board) -> None:
    bridge = bridge_on(board)
    async with running(bridge), asyncio.timeout(5):
        await board.connected()
        sending = asyncio.create_task(bridge.transmit(downlink_answering(bridge)))
        record = await board.next_record()
        board.send(transmit_result(record.fields["tx_id"], "duty_cycle"))
        with pytest.raises(TransmitError) as refused:
            await sending

    assert refused.value.reason == "duty_cycle"
    assert bridge.stats.transmits == {"duty_cycle": 1}


async def test_a_downlink_the_bridge_does_not_answer_fails_with_no_answer(board: Board) -> None:
    bridge = bridge_on(board, transmit_timeout_s=0.2)
    async with running(bridge) as pipeline, asyncio.timeout(5):
        await board.connected()
        with pytest.raises(TransmitError) as unanswered:
            await bridge.transmit(downlink_answering(bridge))
        board.send(transmit_result(0, "sent") + received())  # the answer, too late
        await pipeline.receptions.get()  # records are handled in order: the late answer is in

    assert unanswered.value.reason == "no_answer"
    assert bridge.stats.late_results == 1


async def test_a_downlink_while_the_port_is_down_fails_with_disconnected(tmp_path: Path) -> None:
    bridge = SerialBridge(str(tmp_path / "ttyUSB9"))
    with pytest.raises(TransmitError) as down:
        await bridge.transmit(downlink_answering(bridge))
    assert down.value.reason == "disconnected"


async def test_a_downlink_answering_another_receivers_reception_is_refused(board: Board) -> None:
    bridge = bridge_on(board)
    elsewhere = Downlink(
        FRAME, Reception(FRAME, "udp:0016c001ff10a235", NOW, 868_100_000, 9, 125_000, -90.0, 5.0, 1), 0, 868_100_000, 9
    )
    with pytest.raises(TransmitError) as refused:
        await bridge.transmit(elsewhere)
    assert refused.value.reason == "bad_request"


# --- unplugged ------------------------------------------------------------------------------------


async def test_a_downlink_waiting_for_its_answer_fails_when_the_board_is_unplugged(board: Board) -> None:
    bridge = bridge_on(board)
    async with running(bridge), asyncio.timeout(5):
        await board.connected()
        sending = asyncio.create_task(bridge.transmit(downlink_answering(bridge)))
        await board.next_record()
        board.unplug()
        with pytest.raises(TransmitError) as lost:
            await sending

    assert lost.value.reason == "port_lost"  # it may have gone out: no other receiver sends it again


async def test_an_unplugged_board_is_reopened_when_it_comes_back(board: Board, caplog) -> None:
    caplog.set_level(logging.INFO, logger="gateway_daemon.sources.serial_bridge")
    bridge = bridge_on(board)
    async with running(bridge) as pipeline, asyncio.timeout(5):
        await board.connected()
        board.unplug()
        await asyncio.sleep(0.5)  # several reopen attempts
        board.plug_in()
        await board.connected()
        board.send(received())
        reception = await pipeline.receptions.get()

    assert reception.frame == FRAME
    assert bridge.stats.reconnects == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings  # the loss once, however many retries, then the return
    assert "lost" in warnings[0] and "USB cable" in warnings[0]
    assert "back after" in warnings[1]


async def test_a_port_that_is_missing_at_start_is_opened_once_it_appears(missing_board: Board, caplog) -> None:
    caplog.set_level(logging.INFO, logger="gateway_daemon.sources.serial_bridge")
    bridge = bridge_on(missing_board)
    async with running(bridge) as pipeline, asyncio.timeout(5):
        await asyncio.sleep(0.3)  # several open attempts
        missing_board.plug_in()
        await missing_board.connected()
        missing_board.send(received())
        await pipeline.receptions.get()

    (missing, _back) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "cannot open" in missing and "dialout" in missing
    assert bridge.stats.reconnects == 1
