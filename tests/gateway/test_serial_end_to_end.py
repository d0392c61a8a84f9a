"""Frames from a bridge board on a real pty, through the gateway, onto a real broker."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from pathlib import Path

from gateway_daemon.sources.serial_bridge import SerialBridge
from payload_codec import DOWN, open_frame
from payload_codec.bridge_link import Record, RecordStream, encode_record

from .conftest import Subscriber
from .site import Site, until
from .test_gateway import EVERY_VECTOR, KEYS, UPLINKS, assert_published_as_documented, checkin, event_ids

RADIO = {"frequency_hz": 868_100_000, "spreading_factor": 9, "bandwidth_hz": 125_000, "coding_rate": 5}


class BridgeBoard:
    """The test's side of the USB cable: what a bridge board writes and reads, on a pty."""

    def __init__(self, link: Path) -> None:
        self.link = link
        self.master, slave = os.openpty()
        tty.setraw(slave)
        self.slave_path = os.ttyname(slave)
        os.close(slave)
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        link.symlink_to(self.slave_path)
        os.set_blocking(self.master, False)
        self.clock_us = 0
        self._stream = RecordStream()

    def hear(self, frame: bytes, rssi_dbm: int = -90) -> None:
        self.clock_us += 2_000_000
        record = {**RADIO, "rssi_dbm": rssi_dbm, "snr_db": 6.5, "timestamp_us": self.clock_us, "frame": frame.hex()}
        os.write(self.master, encode_record("received", record))

    def garbage(self, data: bytes) -> None:
        os.write(self.master, data)

    async def read_records(self, timeout: float = 5.0) -> list[Record]:
        async with asyncio.timeout(timeout):
            while True:
                try:
                    records = self._stream.feed(os.read(self.master, 4096))
                except BlockingIOError:
                    records = []
                if records:
                    return [r for r in records if isinstance(r, Record)]
                await asyncio.sleep(0.02)

    def unplug(self) -> None:
        os.close(self.master)
        self.link.unlink()


async def test_every_uplink_vector_through_the_serial_bridge(tmp_path, broker):
    board = BridgeBoard(tmp_path / "ttyUSB0")
    bridge = SerialBridge(str(tmp_path / "ttyUSB0"))
    async with (
        Subscriber(broker.port) as subscriber,
        Site(tmp_path, broker.port, extra_sources=(bridge,), **EVERY_VECTOR) as site,
    ):
        await until(lambda: bridge.connected)  # opening the port flushes what was written before
        expected = await site.feed(UPLINKS, board.hear)
        published = lambda: {p["event_id"] for kind in ("checkin", "telemetry", "status") for p in subscriber.on(kind)}  # noqa: E731
        await subscriber.wait_for(lambda: expected <= published())
        assert all(p["receptions"][0]["source"] == bridge.name for p in subscriber.on("/telemetry"))
        assert_published_as_documented(subscriber)
        assert site.gateway.pipeline.rejected == {}
        board.unplug()


async def test_ack_goes_back_through_the_bridge_in_the_receive_window(tmp_path, broker):
    board = BridgeBoard(tmp_path / "ttyUSB0")
    bridge = SerialBridge(str(tmp_path / "ttyUSB0"))
    async with Site(tmp_path, broker.port, extra_sources=(bridge,)):
        await until(lambda: bridge.connected)
        board.hear(checkin(40, time_requested=True))
        (request,) = [r for r in await board.read_records() if r.kind == "transmit"]
        assert request.fields["timing"] == "at_timestamp"
        assert request.fields["timestamp_us"] == board.clock_us + 1_000_000
        assert request.fields["frequency_hz"] == 869_525_000
        ack = open_frame(bytes.fromhex(request.fields["frame"]), KEYS, None, DOWN)
        assert ack.message.acked_counter16 == 40 and ack.message.gateway_time is not None
        os.write(board.master, encode_record("transmit_result", {"tx_id": request.fields["tx_id"], "result": "sent",
                                                                   "airtime_us": 185_000}))  # fmt: skip
        await until(lambda: bridge.stats.transmits["sent"] == 1)
        board.unplug()


async def test_garbage_and_an_unplugged_bridge_lose_no_frame(tmp_path, broker):
    board = BridgeBoard(tmp_path / "ttyUSB0")
    bridge = SerialBridge(str(tmp_path / "ttyUSB0"), reopen_delay_s=0.2)
    async with Subscriber(broker.port) as subscriber, Site(tmp_path, broker.port, extra_sources=(bridge,)) as site:
        await until(lambda: bridge.connected)
        board.garbage(os.urandom(300))
        board.hear(checkin(1, ack=False))
        board.garbage(b"\x00\x07garbage\x00")
        board.hear(checkin(2, ack=False))
        await until(lambda: site.last_counter() == 2)
        board.unplug()
        await until(lambda: not bridge.connected)
        board = BridgeBoard(tmp_path / "ttyUSB0")  # plugged in again
        await until(lambda: bridge.connected, timeout=10)
        board.hear(checkin(3, ack=False))
        due = {"258:checkin:1", "258:checkin:2", "258:checkin:3"}
        await subscriber.wait_for(lambda: due <= set(event_ids(subscriber, "checkin")))
        assert sum(site.gateway.pipeline.rejected.values()) >= 1
        assert set(site.gateway.pipeline.rejected) <= {"bad_cobs", "bad_crc", "too_long", "truncated", "unknown_record"}
        board.unplug()
