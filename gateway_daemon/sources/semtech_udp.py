"""A Semtech UDP packet forwarder (SX1302 concentrator, `lora_pkt_fwd`), with this daemon as its server.

The packets are in `semtech_protocol`; this is the socket. The protocol has no authentication and
no retries: whoever reaches the port can inject receptions (the pipeline still checks each frame's
MIC and counter) and learn the downlink path. That is why the source listens on loopback, where
`lora_pkt_fwd` runs beside the daemon, unless told otherwise.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from .base import Deliver, Downlink, Reception, Reject, Rejected, Source, SourceStats, TransmitError, counter
from .semtech_protocol import (
    TX_ERRORS,
    PullAck,
    PullData,
    PullResp,
    PushAck,
    PushData,
    Refused,
    TxAck,
    parse_from_forwarder,
    reception_from_rxpk,
    show,
    txpk_of,
)

log = logging.getLogger(__name__)

RAW_BOUND = 512  # bytes of a refused input kept in its Rejected: enough to see what it was
MAX_GATEWAYS = 64  # gateways whose downlink path and statistics we keep: bounded, whoever sends to the port
MAX_WAITING = 1024  # receptions and rejections waiting for a slow pipeline; beyond that they are dropped
REBIND_DELAY_S = 2.0
# A forwarder sends a PULL_DATA every 10 s to keep its downlink path (lora_pkt_fwd's keepalive_interval),
# and a PUSH_DATA with its `stat` every 30 s (stat_interval): one silent for a minute is gone, and the
# pipeline stops waiting for its copies of a frame. One that pulls for a minute without a PUSH_DATA
# sends its frames elsewhere (its serv_port_up), and one whose keep-alives come from two addresses
# in turn within a minute is two forwarders sharing a gateway_ID.
FORWARDER_QUIET_S = 60.0


@dataclass
class UdpStats(SourceStats):
    """A UDP source's counters: those of every source, and the protocol's own."""

    datagrams: int = counter("borne_udp_datagrams_total", "Datagrams received on the UDP port, of every kind")
    push_data: int = counter("borne_udp_push_data_total", "PUSH_DATA packets received (frames heard, statistics)")
    pull_data: int = counter("borne_udp_pull_data_total", "PULL_DATA keep-alives received")
    tx_acks: int = counter("borne_udp_tx_acks_total", "TX_ACK packets received")
    late_tx_acks: int = counter("borne_udp_late_tx_acks_total", "TX_ACKs that came after their downlink gave up")
    overloaded: int = counter(
        "borne_udp_overloaded_total", "Receptions and rejections dropped because the pipeline fell behind"
    )
    heard_at: dict[str, float] = field(default_factory=dict)  # gateway EUI → its last PUSH_DATA or PULL_DATA
    pushed_at: dict[str, float] = field(default_factory=dict)  # gateway EUI → its last PUSH_DATA
    gateway_stats: dict[str, dict[str, Any]] = field(default_factory=dict)  # gateway EUI → its last `stat`

    def to_json(self, now: float) -> dict[str, Any]:
        """Every source's entry, and each forwarder heard: how long ago, and its last `stat` report."""
        message = super().to_json(now)
        message["forwarders"] = {
            eui: {
                "heard_s_ago": _age(now, at),
                "push_data_s_ago": _age(now, self.pushed_at.get(eui)),
                "stat": self.gateway_stats.get(eui),
            }
            for eui, at in self.heard_at.items()
        }
        return message


class _Endpoint(asyncio.DatagramProtocol):
    """The socket of one listening session. What needs awaiting (deliver, reject) waits in
    `inbox` for the source's task; `None` there marks the socket's end."""

    def __init__(self, received: Callable[[bytes, tuple, asyncio.Queue], None]) -> None:
        self.received = received
        self.inbox: asyncio.Queue[Reception | Rejected | None] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A datagram endpoint's transport, whatever its class: Python 3.11's selector one does not
        # derive from asyncio.DatagramTransport, and an assert here left the socket unclosed.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.received(data, addr, self.inbox)

    def error_received(self, exc: Exception) -> None:
        # E.g. ICMP port unreachable after a reply to a forwarder that has just stopped.
        log.debug("udp: socket error: %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.inbox.put_nowait(None)


class SemtechUdp(Source[_Endpoint]):
    """The UDP server Semtech packet forwarders talk to, on `host`:`port` (loopback by default:
    the protocol has no authentication). Receptions name their gateway: `udp:<gateway EUI>`.

    `run` answers every forwarder packet as it arrives and hands receptions on; `transmit` sends a
    downlink through the gateway that heard the reception it answers. `started()` waits for the
    socket and returns its port. `stats` holds the counters, each forwarder heard and each one's last
    `stat` report (plus `received_at`).
    """

    stats: UdpStats

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 1700,
        clock: Callable[[], float] = time.time,
        tx_ack_timeout_s: float = 2.0,
    ) -> None:
        super().__init__("udp", UdpStats(), reconnect_delay_s=REBIND_DELAY_S, clock=clock)
        self.host = host
        self.port = port
        self.tx_ack_timeout_s = tx_ack_timeout_s
        self.bound_port: int | None = None  # the port actually listened on (`port` may be 0 in tests)
        self._transport: asyncio.DatagramTransport | None = None
        self._listening = asyncio.Event()
        # gateway EUI → address of its last PULL_DATA, and the protocol version it speaks
        self._downlink_paths: dict[str, tuple[tuple, int]] = {}
        # gateway EUI → the address its keep-alives came from before, and until when
        self._former_paths: dict[str, tuple[tuple, float]] = {}
        self._first_pulled_at: dict[str, float] = {}  # gateway EUI → its first PULL_DATA since the start
        self._warned: set[tuple[str, str]] = set()  # (gateway EUI, what): each misconfiguration logged once
        self._pending: dict[tuple[str, int], asyncio.Future[TxAck]] = {}  # (gateway EUI, token) → its TX_ACK

    async def started(self) -> int:
        """Wait until the socket listens; returns its port."""
        await self._listening.wait()
        assert self.bound_port is not None
        return self.bound_port

    # --- one listening session -------------------------------------------------------------

    async def _connect(self) -> _Endpoint:
        transport, endpoint = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: _Endpoint(self._received), local_addr=(self.host, self.port)
        )
        assert isinstance(endpoint, _Endpoint)
        self._transport = transport
        self.bound_port = transport.get_extra_info("sockname")[1]
        self._listening.set()
        log.info("udp: listening for packet forwarders on %s:%d", self.host, self.bound_port)
        return endpoint

    async def _serve(self, endpoint: _Endpoint, deliver: Deliver, reject: Reject) -> None:
        while (item := await endpoint.inbox.get()) is not None:
            if isinstance(item, Reception):
                await deliver(item)
            else:
                await reject(item)
        raise ConnectionError("the socket closed")

    async def _disconnect(self, endpoint: _Endpoint) -> None:
        self._listening.clear()
        self._transport = None
        if endpoint.transport is not None:
            endpoint.transport.close()

    def _cannot_connect(self, error: Exception) -> str:
        return (
            f"no socket on {self.host}:{self.port} ({error}). If the port is taken, `ss -ulpn` shows by whom "
            "(a second daemon, ChirpStack's gateway bridge)"
        )

    def _received(self, datagram: bytes, sender: tuple, inbox: asyncio.Queue) -> None:
        # Runs in the socket's callback: ACKs and TX_ACKs are handled at once, however slow the
        # pipeline is (a transmit waiting for its TX_ACK may be what the pipeline is awaiting).
        self.stats.datagrams += 1
        try:
            packet = parse_from_forwarder(datagram)
        except Refused as refused:
            detail = f"from {sender[0]}:{sender[1]}: {refused.detail}"
            source = f"{self.name}:{refused.gateway_eui}" if refused.gateway_eui else self.name
            self._enqueue(inbox, Rejected(source, refused.reason, detail, datagram[:RAW_BOUND]))
            return
        source = f"{self.name}:{packet.gateway_eui}"
        if isinstance(packet, PushData | PullData):
            if packet.gateway_eui not in self.stats.heard_at:
                log.info("udp: packet forwarder %s heard, from %s:%d", packet.gateway_eui, *sender[:2])
            _remember(self.stats.heard_at, packet.gateway_eui, self.clock())
        match packet:
            case PushData():
                self.stats.push_data += 1
                _remember(self.stats.pushed_at, packet.gateway_eui, self.clock())
                self._send_datagram(PushAck(packet.token, packet.version).encode(), sender)
                if isinstance(packet.stat, dict):
                    report = {**packet.stat, "received_at": self.clock()}
                    _remember(self.stats.gateway_stats, packet.gateway_eui, report)
                elif packet.stat is not None:
                    detail = f"stat is {show(packet.stat)}, not an object"
                    self._enqueue(inbox, Rejected(source, "bad_stat", detail, datagram[:RAW_BOUND]))
                for rxpk in packet.rxpk:
                    try:
                        reception = reception_from_rxpk(rxpk, source, self.clock())
                    except Refused as refused:
                        self._enqueue(inbox, Rejected(source, refused.reason, refused.detail, _rxpk_raw(rxpk)))
                    else:
                        self._enqueue(inbox, reception)
            case PullData():
                self.stats.pull_data += 1
                self._check_forwarder(packet.gateway_eui, sender)
                # lora_pkt_fwd pulls from its own socket, not the one it pushes from: downlinks go here.
                _remember(self._downlink_paths, packet.gateway_eui, (sender, packet.version))
                self._send_datagram(PullAck(packet.token, packet.version).encode(), sender)
            case TxAck():
                self.stats.tx_acks += 1
                answer = self._pending.get((packet.gateway_eui, packet.token))
                if answer is None or answer.done():
                    self.stats.late_tx_acks += 1
                else:
                    answer.set_result(packet)

    def _check_forwarder(self, gateway_eui: str, sender: tuple) -> None:
        """Warn, once each, of the two set-ups a PULL_DATA shows wrong: a forwarder that pulls but whose
        PUSH_DATA never come (its frames go to another port), and two forwarders with one gateway_ID
        (their keep-alives come from two addresses in turn: each takes the other's downlinks)."""
        now = self.clock()
        _remember(self._first_pulled_at, gateway_eui, self._first_pulled_at.get(gateway_eui, now))
        pulling_s = now - self._first_pulled_at[gateway_eui]
        if gateway_eui not in self.stats.pushed_at and pulling_s >= FORWARDER_QUIET_S:
            self._warn_once(
                gateway_eui,
                "no_push_data",
                "packet forwarder %s has kept its downlink path for %.0f s, but none of its PUSH_DATA came "
                "(its frames and its stat reports, every 30 s): check that its serv_port_up is %d, as its "
                "serv_port_down is",
                gateway_eui,
                pulling_s,
                self.bound_port,
            )
        path = self._downlink_paths.get(gateway_eui)
        if path is None or path[0] == sender:
            return
        former = self._former_paths.get(gateway_eui)
        if former is not None and former[0] == sender and now - former[1] <= FORWARDER_QUIET_S:
            self._warn_once(
                gateway_eui,
                "shared_gateway_id",
                "two packet forwarders use gateway_ID %s (keep-alives from %s:%d and %s:%d in turn): each "
                "gets downlinks meant for the other, on the wrong clock. Give each concentrator its own "
                "gateway_ID in its global_conf.json",
                gateway_eui,
                *sender[:2],
                *path[0][:2],
            )
        _remember(self._former_paths, gateway_eui, (path[0], now))

    def _warn_once(self, gateway_eui: str, what: str, message: str, *args: Any) -> None:
        if (gateway_eui, what) not in self._warned and len(self._warned) < 2 * MAX_GATEWAYS:
            self._warned.add((gateway_eui, what))
            log.warning("udp: " + message, *args)

    def receivers(self) -> set[str]:
        """The forwarders heard from in the last FORWARDER_QUIET_S, as `udp:<gateway EUI>`: those whose
        PUSH_DATA reach this port (one that only pulls would never give its copy of a frame)."""
        if not self.connected:
            return set()
        now = self.clock()
        return {
            f"{self.name}:{eui}"
            for eui, at in self.stats.heard_at.items()
            if now - at <= FORWARDER_QUIET_S and eui in self.stats.pushed_at
        }

    def _send_datagram(self, datagram: bytes, address: tuple) -> None:
        if self._transport is not None:
            self._transport.sendto(datagram, address)

    def _enqueue(self, inbox: asyncio.Queue, item: Reception | Rejected) -> None:
        if inbox.qsize() >= MAX_WAITING:
            self.stats.overloaded += 1
            return
        inbox.put_nowait(item)

    async def _send(self, downlink: Downlink) -> None:
        """Send `downlink` through the gateway that heard `downlink.answers`, at that reception's
        timestamp plus `delay_us` on the gateway's clock, and wait for the forwarder's TX_ACK (a version 1
        forwarder sends none: a downlink handed to it counts as sent).

        Raises TransmitError: `no_downlink_path` when that gateway has sent no PULL_DATA yet,
        `bad_request` for a downlink it cannot send, the forwarder's error in lower case
        (too_late, collision_packet, tx_freq, …), or `no_tx_ack` when it says nothing in time.
        """
        gateway_eui = downlink.answers.source.partition(":")[2]
        if not gateway_eui:
            # Its timestamp is on no known gateway's clock: the concentrator would send at a random time.
            raise TransmitError("bad_request", f"answers a reception from {downlink.answers.source}")
        transport, path = self._transport, self._downlink_paths.get(gateway_eui)
        if transport is None:
            raise TransmitError("no_downlink_path", "the UDP source is not listening")
        if path is None:
            raise TransmitError(
                "no_downlink_path",
                f"gateway {gateway_eui} has sent no PULL_DATA since the daemon started (a forwarder sends "
                f"one every keepalive_interval, 10 s); if this lasts, check that its packet forwarder "
                f"runs and that its serv_port_down is {self.bound_port}",
            )
        try:
            txpk = txpk_of(downlink)
        except ValueError as error:
            raise TransmitError("bad_request", str(error)) from None
        address, version = path
        if version == 1:
            transport.sendto(PullResp(0, txpk.to_json(), version).encode(), address)
            return
        token = random.randrange(65536)
        while (gateway_eui, token) in self._pending:
            token = random.randrange(65536)
        answer: asyncio.Future[TxAck] = asyncio.get_running_loop().create_future()
        self._pending[(gateway_eui, token)] = answer
        try:
            transport.sendto(PullResp(token, txpk.to_json()).encode(), address)
            async with asyncio.timeout(self.tx_ack_timeout_s):
                ack = await answer
        except TimeoutError:
            raise TransmitError(
                "no_tx_ack", f"gateway {gateway_eui} did not confirm within {self.tx_ack_timeout_s:g} s"
            ) from None
        finally:
            del self._pending[(gateway_eui, token)]
        if ack.warning:
            log.info("udp: gateway %s sent a downlink with a warning: %s", gateway_eui, ack.warning)
        if ack.error != "NONE":
            # Known errors become counter labels; anything else is one label, so that the counters stay bounded.
            reason = ack.error.lower() if ack.error in TX_ERRORS else "tx_failed"
            raise TransmitError(reason, f"gateway {gateway_eui} answered {show(ack.error)}")


def _rxpk_raw(rxpk: Any) -> bytes:
    try:
        return json.dumps(rxpk).encode()[:RAW_BOUND]
    except (TypeError, ValueError, RecursionError):
        return b""


def _age(now: float, at: float | None) -> float | None:
    return None if at is None else round(max(0.0, now - at), 1)


def _remember(table: dict[str, Any], gateway_eui: str, value: Any) -> None:
    """Keep `value` as the newest entry for the gateway, forgetting the least recent beyond MAX_GATEWAYS."""
    table.pop(gateway_eui, None)
    table[gateway_eui] = value
    while len(table) > MAX_GATEWAYS:
        del table[next(iter(table))]
