"""An SX1302 concentrator and its Semtech packet forwarder, on the virtual rig's radio medium.

It hears every frame on the air (every SF, as a multi-channel concentrator does) and pushes it to
the gateway daemon over UDP on loopback, stamped on its own microsecond clock; the downlinks the
gateway sends back (ACKs, at that clock's time plus the receive window's delay) go on the air then.
"""

from __future__ import annotations

import asyncio
import threading
import time

from gateway_daemon.sources.semtech_protocol import Txpk
from simulator.packet_forwarder import PacketForwarder
from simulator.virtual_board import RadioMedium

PULL_EVERY_S = 5  # how often the forwarder keeps the downlink path open, as real ones do
REPORT_EVERY_S = 30  # lora_pkt_fwd's stat_interval: its statistics, the first ones that long after it starts
_WRAP = 1 << 32


def clock_us(monotonic: float) -> int:
    """The concentrator's 32-bit microsecond counter at `monotonic`."""
    return int(monotonic * 1_000_000) % _WRAP


class Concentrator:
    """start() connects to the gateway's UDP port and joins the medium; stop() leaves both."""

    def __init__(self, medium: RadioMedium, gateway_port: int, host: str = "127.0.0.1") -> None:
        self.medium = medium
        self.gateway = (host, gateway_port)
        self.heard = 0
        self.sent = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="concentrator", daemon=True)
        self._forwarder: PacketForwarder | None = None
        self._pulling: asyncio.Future | None = None  # a task of the concentrator's own loop

    def start(self) -> None:
        self._thread.start()
        connected = asyncio.run_coroutine_threadsafe(
            PacketForwarder.connect(self.gateway[1], self.gateway[0]), self._loop
        )
        self._forwarder = connected.result(timeout=10)
        self._forwarder.on_txpk = self._transmit
        self._loop.call_soon_threadsafe(self._start_pulling)
        self.medium.add_listener(self._heard, name="concentrator")

    def stop(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=5)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)

    async def _close(self) -> None:
        if self._pulling is not None:
            self._pulling.cancel()
            await asyncio.gather(self._pulling, return_exceptions=True)
        if self._forwarder is not None:
            self._forwarder.close()

    def _start_pulling(self) -> None:
        self._pulling = asyncio.ensure_future(self._keep_pulling())

    async def _keep_pulling(self) -> None:
        assert self._forwarder is not None
        reported = time.monotonic()
        while True:
            self._forwarder.pull()
            if time.monotonic() - reported >= REPORT_EVERY_S:
                reported = time.monotonic()
                self._forwarder.report(self._stat())
            await asyncio.sleep(PULL_EVERY_S)

    def _stat(self) -> dict[str, object]:
        """The `stat` object lora_pkt_fwd writes (its counters are of the last interval there; here, since
        the start), without GPS."""
        when = time.strftime("%Y-%m-%d %H:%M:%S GMT", time.gmtime())
        heard, sent = self.heard, self.sent
        return {"time": when, "rxnb": heard, "rxok": heard, "rxfw": heard, "ackr": 100.0, "dwnb": sent, "txnb": sent}

    def _heard(
        self, payload: bytes, frequency_hz: int, sf: int, bw_hz: int, rssi_dbm: float, snr_db: float, end: float
    ) -> None:
        # Called from the medium's thread: the forwarder lives in this one's loop.
        self.heard += 1
        forwarder = self._forwarder
        assert forwarder is not None
        self._loop.call_soon_threadsafe(
            lambda: forwarder.hear(
                payload,
                rssi_dbm=rssi_dbm,
                snr_db=snr_db,
                frequency_hz=frequency_hz,
                spreading_factor=sf,
                bandwidth_hz=bw_hz,
                timestamp_us=clock_us(end),
            )
        )

    def _transmit(self, txpk: Txpk) -> None:
        """A PULL_RESP's txpk: on the air at its timestamp (or at once, when it has none)."""
        now = time.monotonic()
        at = None
        if txpk.timestamp_us is not None:
            ahead_us = (txpk.timestamp_us - clock_us(now)) % _WRAP
            at = now + (ahead_us if ahead_us < _WRAP // 2 else ahead_us - _WRAP) / 1_000_000
        self.medium.transmit(
            txpk.frame,
            txpk.frequency_hz,
            txpk.spreading_factor,
            txpk.bandwidth_hz,
            power_dbm=txpk.tx_power_dbm,
            at_monotonic=at,
            invert_iq=txpk.invert_iq,
            crc=txpk.crc,
            sender="concentrator",
        )
        self.sent += 1
