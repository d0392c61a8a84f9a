"""A Semtech UDP packet forwarder as the rig plays it: frames heard go up, downlinks come back.

It speaks protocol version 2 to a gateway daemon on loopback: PUSH_DATA with one rxpk per
frame, PULL_DATA to open the downlink path, TX_ACK for each PULL_RESP it takes.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
from collections.abc import Callable

PUSH_DATA, PUSH_ACK, PULL_DATA, PULL_RESP, PULL_ACK, TX_ACK = range(6)
_HEADER = struct.Struct(">BHB")


class PacketForwarder(asyncio.DatagramProtocol):
    """One concentrator: `hear` sends a frame up; `downlinks` queues the frames sent down."""

    def __init__(self, gateway_eui: bytes = bytes.fromhex("0016c001ff10a235")) -> None:
        self.gateway_eui = gateway_eui
        self.downlinks: asyncio.Queue[bytes] = asyncio.Queue()
        self.on_txpk: Callable[[dict], None] | None = None  # given every txpk whole, as a radio would be
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

    def _send(self, identifier: int, body: bytes = b"") -> int:
        token = int.from_bytes(os.urandom(2), "big")
        assert self._transport is not None
        self._transport.sendto(_HEADER.pack(2, token, identifier) + self.gateway_eui + body)
        return token

    def pull(self) -> None:
        """Open (or keep open) the downlink path, as forwarders do every few seconds."""
        self._send(PULL_DATA)

    def hear(
        self,
        frame: bytes,
        rssi: int = -95,
        lsnr: float = 7.5,
        datr: str = "SF9BW125",
        *,
        freq_mhz: float = 868.1,
        tmst: int | None = None,
    ) -> int:
        """Push one frame as heard now (at `tmst` on the concentrator's µs clock, if given; else 3 s
        after the last one); returns the PUSH_DATA's token."""
        self.clock_us = (self.clock_us + 3_000_000) & 0xFFFFFFFF if tmst is None else tmst
        rxpk = {
            "tmst": self.clock_us,
            "chan": 0,
            "rfch": 0,
            "freq": freq_mhz,
            "stat": 1,
            "modu": "LORA",
            "datr": datr,
            "codr": "4/5",
            "rssi": rssi,
            "lsnr": lsnr,
            "size": len(frame),
            "data": base64.b64encode(frame).decode(),
        }
        token = self._send(PUSH_DATA, json.dumps({"rxpk": [rxpk]}).encode())
        self.acks[token] = asyncio.Event()
        return token

    def send_raw(self, datagram: bytes) -> None:
        assert self._transport is not None
        self._transport.sendto(datagram)

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        if len(data) < 4:
            return
        _, token, identifier = _HEADER.unpack_from(data)
        if identifier == PUSH_ACK and token in self.acks:
            self.acks[token].set()
        elif identifier == PULL_RESP:
            txpk = json.loads(data[4:])["txpk"]
            self._send_tx_ack(token)
            self.downlinks.put_nowait(base64.b64decode(txpk["data"]))
            if self.on_txpk is not None:
                self.on_txpk(txpk)

    def _send_tx_ack(self, token: int) -> None:
        assert self._transport is not None
        body = json.dumps({"txpk_ack": {"error": "NONE"}}).encode()
        self._transport.sendto(_HEADER.pack(2, token, TX_ACK) + self.gateway_eui + body)
