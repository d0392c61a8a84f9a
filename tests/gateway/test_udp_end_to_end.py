"""The gateway fed by a Semtech packet forwarder over real UDP on loopback, into a real broker."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys

from gateway_daemon.sources.semtech_udp import SemtechUdp
from gateway_daemon.sources.serial_bridge import SerialBridge
from payload_codec import DOWN, open_frame
from simulator.broker import free_port
from simulator.packet_forwarder import PacketForwarder

from .conftest import Subscriber
from .site import Site, config_text, until
from .test_gateway import EVERY_VECTOR, KEYS, UPLINKS, assert_published_as_documented, checkin, event_ids
from .test_serial_end_to_end import BridgeBoard


async def test_every_uplink_vector_through_a_packet_forwarder(tmp_path, broker):
    udp = SemtechUdp(port=0)
    async with (
        Subscriber(broker.port) as subscriber,
        Site(tmp_path, broker.port, extra_sources=(udp,), **EVERY_VECTOR) as site,
    ):
        forwarder = await PacketForwarder.connect(await udp.started())
        expected = await site.feed(UPLINKS, forwarder.hear)
        kinds = ("checkin", "telemetry", "status")
        await subscriber.wait_for(lambda: expected <= {p["event_id"] for k in kinds for p in subscriber.on(k)})
        assert all(p["receptions"][0]["source"].startswith("udp:") for p in subscriber.on("/telemetry"))
        assert_published_as_documented(subscriber)
        assert site.gateway.pipeline.rejected == {}
        forwarder.close()


async def test_malformed_and_oversized_datagrams_are_refused_and_reported(tmp_path, broker):
    udp = SemtechUdp(port=0)
    async with Subscriber(broker.port) as subscriber, Site(tmp_path, broker.port, extra_sources=(udp,)) as site:
        forwarder = await PacketForwarder.connect(await udp.started())
        eui = forwarder.gateway_eui
        for datagram in [
            b"\x02",
            b"\x03\x00\x01\x00" + eui + b"{}",  # a protocol version no forwarder speaks
            b"\x02\x00\x01\x09" + eui,
            b"\x02\x00\x01\x00" + eui + b'{"rxpk": [{"stat": 1',
            b"\x02\x00\x01\x00" + eui + b"{" + b" " * 65_000 + b"}",
            os.urandom(1000),
        ]:
            forwarder.send_raw(datagram)
        forwarder.hear(checkin(1, ack=False))
        await subscriber.wait_for(lambda: event_ids(subscriber, "checkin") == ["258:checkin:1"])
        await subscriber.wait_for(lambda: len(subscriber.on("/rejected")) >= 5)
        assert sum(site.gateway.pipeline.rejected.values()) >= 5
        forwarder.close()


async def test_the_same_frame_from_the_bridge_and_the_forwarder_is_published_once(tmp_path, broker):
    board = BridgeBoard(tmp_path / "ttyUSB0")
    bridge, udp = SerialBridge(str(tmp_path / "ttyUSB0")), SemtechUdp(port=0)
    async with Subscriber(broker.port) as subscriber, Site(tmp_path, broker.port, extra_sources=(bridge, udp)):
        forwarder = await PacketForwarder.connect(await udp.started())
        await until(lambda: bridge.connected)
        frame = checkin(9, ack=False, count=2)
        board.hear(frame)
        forwarder.hear(frame)
        await subscriber.wait_for(lambda: len(subscriber.on("/checkin")) == 2)
        await asyncio.sleep(0.5)
        published = subscriber.on("/checkin")
        assert [p["event_id"] for p in published] == ["258:checkin:9", "258:checkin:10"]
        sources = sorted(r["source"].split(":")[0] for r in published[0]["receptions"])
        assert sources == ["bridge", "udp"]
        forwarder.close()
        board.unplug()


class Daemon:
    """`borne gateway run` as systemd would start it, that a test can SIGKILL."""

    def __init__(self, config_path) -> None:
        self.config_path = config_path
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "borne",
            "gateway",
            "run",
            "--config",
            str(self.config_path),
            stderr=asyncio.subprocess.DEVNULL,
        )

    async def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    await self.process.wait()
            if self.process.returncode is None:
                await self.kill()


async def test_daemon_killed_mid_stream_loses_no_acked_checkin(tmp_path, broker):
    """A node sends its next check-in once the last is ACKed, and builds its frame again (a new
    counter, the same check-in number) until then.

    The daemon is SIGKILLed while frames are in flight; every check-in must reach the broker,
    and a duplicate can only carry the same event id.
    """
    from .site import write_registry

    write_registry(tmp_path / "devices.toml")
    udp_port = free_port()
    config = tmp_path / "gateway.toml"
    config.write_text(config_text(tmp_path, broker.port) + f"[udp]\nenabled = true\nport = {udp_port}\n")
    daemon = Daemon(config)
    await daemon.start()
    forwarder = await PacketForwarder.connect(udp_port)
    kills = {7: "before its ACK", 15: "right after its ACK"}
    try:
        async with Subscriber(broker.port) as subscriber:
            counter = 0
            for number in range(1, 21):
                acked = False
                while not acked:
                    counter += 1
                    forwarder.pull()
                    forwarder.hear(checkin(counter, first_number=number))
                    if kills.get(number) == "before its ACK":
                        await asyncio.sleep(0.15)  # heard, maybe committed, not yet ACKed
                        await daemon.kill()
                        await daemon.start()
                        del kills[number]
                        continue
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(3):
                            ack = open_frame(await forwarder.downlinks.get(), KEYS, None, DOWN)
                            acked = ack.message.acked_counter16 == counter
                if kills.get(number) == "right after its ACK":
                    await daemon.kill()
                    await daemon.start()
            expected = [f"258:checkin:{number}" for number in range(1, 21)]
            await subscriber.wait_for(lambda: set(expected) <= set(event_ids(subscriber, "checkin")), timeout=30)
            assert set(event_ids(subscriber, "checkin")) == set(expected)
    finally:
        forwarder.close()
        await daemon.stop()
