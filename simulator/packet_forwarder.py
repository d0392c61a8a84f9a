"""A Semtech UDP packet forwarder as the rig plays it: frames heard go up, downlinks come back.

It speaks the gateway's own `semtech_protocol` to a gateway daemon on loopback: PUSH_DATA with
one rxpk per frame, PULL_DATA to open the downlink path, TX_ACK for each PULL_RESP it takes.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Any

from gateway_daemon.sources.semtech_protocol import (
    PullData,
    PullResp,
    PushAck,
    PushData,
    Refused,
    TxAck,
    Txpk,
    parse_from_server,
    rxpk_of,
)

log = logging.getLogger(__name__)


class PacketForwarder(asyncio.DatagramProtocol):
    """One concentrator: `hear` sends a frame up; `downlinks` queues the frames sent down."""

    def __init__(self, gateway_eui: bytes = bytes.fromhex("0016c001ff10a235")) -> None:
        self.gateway_eui = gateway_eui
        self.downlinks: asyncio.Queue[bytes] = asyncio.Queue()
        self.on_txpk: Callable[[Txpk], None] | None = None  # given every txpk whole, as a radio would be
        self.acks: dict[int, asyncio.Event] = {}
        self.clock_us = 0
        self._transport: asyncio.DatagramTransport | None = None

    @classmethod
    async def connect(cls, port: int, host: str = "127.0.0.1") -> PacketForwarder:
        loop = asyncio.get_running_loop()
        _, forwarder = await loop.create_datagram_endpoint(cls, remote_addr=(host, port))
        return forwarder

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def pull(self) -> None:
        """Open (or keep open) the downlink path, as forwarders do every few seconds."""
        self.send_raw(PullData(_token(), self.gateway_eui.hex()).encode())

    def hear(
        self,
        frame: bytes,
        *,
        rssi_dbm: float = -95,
        snr_db: float = 7.5,
        frequency_hz: int = 868_100_000,
        spreading_factor: int = 9,
        bandwidth_hz: int = 125_000,
        timestamp_us: int | None = None,
    ) -> int:
        """Push one frame as heard now (at `timestamp_us` on the concentrator's µs clock, if given;
        else 3 s after the last one); returns the PUSH_DATA's token."""
        self.clock_us = (self.clock_us + 3_000_000) & 0xFFFFFFFF if timestamp_us is None else timestamp_us
        rxpk = rxpk_of(
            frame,
            timestamp_us=self.clock_us,
            frequency_hz=frequency_hz,
            spreading_factor=spreading_factor,
            bandwidth_hz=bandwidth_hz,
            rssi_dbm=rssi_dbm,
            snr_db=snr_db,
        )
        token = _token()
        self.acks[token] = asyncio.Event()
        self.send_raw(PushData(token, self.gateway_eui.hex(), [rxpk]).encode())
        return token

    def report(self, stat: dict[str, Any]) -> None:
        """Push a statistics report alone, as lora_pkt_fwd does every stat_interval."""
        self.send_raw(PushData(_token(), self.gateway_eui.hex(), [], stat).encode())

    def send_raw(self, datagram: bytes) -> None:
        assert self._transport is not None
        self._transport.sendto(datagram)

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        try:
            packet = parse_from_server(data)
        except Refused as refused:
            log.warning("packet forwarder: refused a datagram from the gateway: %s", refused)
            return
        match packet:
            case PushAck() if packet.token in self.acks:
                self.acks[packet.token].set()
            case PullResp():
                try:
                    txpk = Txpk.from_json(packet.txpk)
                except Refused as refused:
                    # As lora_pkt_fwd does with a txpk it cannot read: no TX_ACK, the server times out.
                    log.warning("packet forwarder: downlink aborted: %s", refused)
                    return
                self.send_raw(TxAck(packet.token, self.gateway_eui.hex()).encode())
                self.downlinks.put_nowait(txpk.frame)
                if self.on_txpk is not None:
                    self.on_txpk(txpk)


def _token() -> int:
    return int.from_bytes(os.urandom(2), "big")
