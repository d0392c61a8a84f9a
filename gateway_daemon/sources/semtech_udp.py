"""A Semtech UDP packet forwarder (SX1302 concentrator, `lora_pkt_fwd`), with this daemon as its server.

Protocol version 2 of Lora-net/packet_forwarder's PROTOCOL.TXT. Every datagram starts with
version (2), a random token (2 bytes) and an identifier; the forwarder's own packets then carry
its gateway EUI (8 bytes) and JSON:

    forwarder → us   PUSH_DATA 0x00 (`rxpk` heard, `stat`)   answered by PUSH_ACK 0x01
                     PULL_DATA 0x02 (keep-alive, downlink path)  answered by PULL_ACK 0x04
                     TX_ACK    0x05 (the fate of one PULL_RESP, same token)
    us → forwarder   PULL_RESP 0x03 (`txpk` to send)

The protocol has no authentication and no retries: whoever reaches the port can inject receptions
(the pipeline still checks each frame's MIC and counter) and learn the downlink path. That is why
the source listens on loopback, where `lora_pkt_fwd` runs beside the daemon, unless told otherwise.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import math
import random
import re
import struct
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .base import Deliver, Downlink, Reception, Reject, Rejected, Source, TransmitError

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 2
PUSH_DATA, PUSH_ACK, PULL_DATA, PULL_RESP, PULL_ACK, TX_ACK = range(6)
PACKET_NAMES = ("PUSH_DATA", "PUSH_ACK", "PULL_DATA", "PULL_RESP", "PULL_ACK", "TX_ACK")
HEADER = struct.Struct(">BHB")  # version, token, identifier
EUI_SIZE = 8
MAX_DATAGRAM = 65_507  # the largest UDP payload over IPv4
RAW_BOUND = 512  # bytes of a refused input kept in its Rejected: enough to see what it was
MAX_FRAME = 255  # a LoRa payload's largest size
SPREADING_FACTORS = range(5, 13)
BANDWIDTHS_HZ = (125_000, 250_000, 500_000)
DATR = re.compile(r"SF(\d{1,2})BW(\d{3})")
TX_ERRORS = frozenset(
    {"TOO_LATE", "TOO_EARLY", "COLLISION_PACKET", "COLLISION_BEACON", "TX_FREQ", "TX_POWER", "GPS_UNLOCKED"}
)
MAX_GATEWAYS = 64  # gateways whose downlink path and statistics we keep: bounded, whoever sends to the port
MAX_WAITING = 1024  # receptions and rejections waiting for a slow pipeline; beyond that they are dropped
REBIND_DELAY_S = 2.0


class Refused(Exception):
    """Input that becomes a `Rejected` with this `reason` and `detail`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class PushData:
    """What the forwarder heard. `rxpk` entries are unchecked: each is read on its own by
    `reception_from_rxpk`, so that a bad one costs only itself."""

    token: int
    gateway_eui: str
    rxpk: list[Any]
    stat: Any  # the gateway's statistics object, None when absent


@dataclass(frozen=True)
class PullData:
    """The forwarder's keep-alive: its sender address is where downlinks for this gateway go."""

    token: int
    gateway_eui: str


@dataclass(frozen=True)
class TxAck:
    """The forwarder's verdict on one PULL_RESP: `error` is "NONE" when it was scheduled."""

    token: int
    gateway_eui: str
    error: str = "NONE"
    warning: str = ""  # e.g. TX_POWER: sent, at the nearest power the board supports


Packet = PushData | PullData | TxAck


def parse_datagram(datagram: bytes) -> Packet:
    """Read one datagram a forwarder sent; raises Refused (bad_header, bad_version, unknown_packet,
    bad_json, bad_rxpk, bad_tx_ack, oversized) for anything else. Never raises anything else."""
    if len(datagram) > MAX_DATAGRAM:
        raise Refused("oversized", f"{len(datagram)} bytes")
    if len(datagram) < HEADER.size:
        raise Refused("bad_header", f"{len(datagram)} bytes, shorter than a header")
    version, token, identifier = HEADER.unpack_from(datagram)
    if version != PROTOCOL_VERSION:
        raise Refused("bad_version", f"protocol version {version}; set the forwarder to version {PROTOCOL_VERSION}")
    if identifier not in (PUSH_DATA, PULL_DATA, TX_ACK):
        name = PACKET_NAMES[identifier] if identifier < len(PACKET_NAMES) else "unknown"
        raise Refused("unknown_packet", f"identifier 0x{identifier:02x} ({name}), not one a forwarder sends")
    if len(datagram) < HEADER.size + EUI_SIZE:
        raise Refused("bad_header", f"{PACKET_NAMES[identifier]} of {len(datagram)} bytes has no gateway EUI")
    gateway_eui = datagram[HEADER.size : HEADER.size + EUI_SIZE].hex()
    # Some forwarders end their JSON with the C string's NUL.
    body = datagram[HEADER.size + EUI_SIZE :].rstrip(b"\0")
    if identifier == PULL_DATA:
        return PullData(token, gateway_eui)
    if identifier == TX_ACK:
        return _tx_ack(token, gateway_eui, body)
    message = _json_object(body, "PUSH_DATA")
    rxpk = message.get("rxpk", [])
    if not isinstance(rxpk, list):
        raise Refused("bad_rxpk", f"rxpk is {_show(rxpk)}, not a list")
    return PushData(token, gateway_eui, rxpk, message.get("stat"))


def _tx_ack(token: int, gateway_eui: str, body: bytes) -> TxAck:
    if not body.strip():  # lora_pkt_fwd says nothing more when all went well
        return TxAck(token, gateway_eui)
    verdict = _json_object(body, "TX_ACK").get("txpk_ack", {})
    if not isinstance(verdict, dict):
        raise Refused("bad_tx_ack", f"txpk_ack is {_show(verdict)}, not an object")
    error, warning = verdict.get("error", "NONE"), verdict.get("warn", "")
    if not isinstance(error, str) or not isinstance(warning, str):
        raise Refused("bad_tx_ack", f"error {_show(error)}, warn {_show(warning)}: not strings")
    return TxAck(token, gateway_eui, error, warning)


def reception_from_rxpk(rxpk: Any, source: str, received_at: float) -> Reception:
    """The Reception one `rxpk` entry describes. Raises Refused: crc_failed, no_crc or not_lora for
    a packet heard but unusable, bad_rxpk for an entry missing a field or with one of the wrong type."""
    if not isinstance(rxpk, dict):
        raise Refused("bad_rxpk", f"an rxpk entry is {_show(rxpk)}, not an object")
    stat = _integer(rxpk, "stat")
    if stat == -1:
        raise Refused("crc_failed", "the concentrator heard a frame whose CRC failed")
    if stat == 0:
        # Our nodes always send a CRC: a frame without one is noise or someone else's.
        raise Refused("no_crc", "the concentrator heard a frame without CRC")
    if stat != 1:
        raise Refused("bad_rxpk", f"stat is {stat}, not 1, 0 or -1")
    modulation = _text(rxpk, "modu")
    if modulation != "LORA":
        raise Refused("not_lora", f"modulation {_show(modulation)}")
    datr = DATR.fullmatch(_text(rxpk, "datr"))
    if datr is None or int(datr[1]) not in SPREADING_FACTORS or int(datr[2]) * 1000 not in BANDWIDTHS_HZ:
        raise Refused("bad_rxpk", f"datr {_show(rxpk['datr'])} is not a LoRa data rate like SF9BW125")
    frequency_mhz = _number(rxpk, "freq")
    if not 0 < frequency_mhz < 3000:
        raise Refused("bad_rxpk", f"freq {frequency_mhz} MHz")
    timestamp_us = _integer(rxpk, "tmst")
    if not 0 <= timestamp_us < 2**32:
        raise Refused("bad_rxpk", f"tmst {timestamp_us} is not a 32-bit counter")
    frame = _base64(_text(rxpk, "data"))
    if "size" in rxpk and _integer(rxpk, "size") != len(frame):
        raise Refused("bad_rxpk", f"size {rxpk['size']} but data holds {len(frame)} bytes")
    return Reception(
        frame=frame,
        source=source,
        received_at=received_at,
        frequency_hz=round(frequency_mhz * 1e6),
        spreading_factor=int(datr[1]),
        bandwidth_hz=int(datr[2]) * 1000,
        rssi_dbm=_number(rxpk, "rssi"),
        snr_db=_number(rxpk, "lsnr"),
        timestamp_us=timestamp_us,
    )


def txpk_of(downlink: Downlink) -> dict[str, Any]:
    """The `txpk` object of a PULL_RESP sending `downlink`; raises ValueError for radio settings
    a concentrator cannot send."""
    frame = downlink.frame
    if downlink.spreading_factor not in SPREADING_FACTORS:
        raise ValueError(f"spreading factor {downlink.spreading_factor}")
    if downlink.bandwidth_hz not in BANDWIDTHS_HZ:
        raise ValueError(f"bandwidth {downlink.bandwidth_hz} Hz")
    if not 0 < len(frame) <= MAX_FRAME:
        raise ValueError(f"a frame of {len(frame)} bytes")
    return {
        "imme": False,
        # On the clock of the gateway that heard `answers`; that counter wraps every 71.6 minutes.
        "tmst": (downlink.answers.timestamp_us + downlink.delay_us) % 2**32,
        "freq": downlink.frequency_hz / 1e6,
        "rfch": 0,  # the radio chain wired for transmission on SX1302 reference designs
        "powe": downlink.tx_power_dbm,
        "modu": "LORA",
        "datr": f"SF{downlink.spreading_factor}BW{downlink.bandwidth_hz // 1000}",
        "codr": "4/5",
        "ipol": False,  # our raw-LoRa nodes listen with normal IQ; LoRaWAN devices expect it inverted
        "ncrc": False,  # CRC on: our nodes drop frames without one (LoRaWAN downlinks go without)
        "size": len(frame),
        "data": base64.b64encode(frame).decode("ascii"),
    }


def encode_ack(token: int, identifier: int) -> bytes:
    """PUSH_ACK or PULL_ACK: the header alone, with the token of the packet it answers."""
    return HEADER.pack(PROTOCOL_VERSION, token, identifier)


def encode_pull_resp(token: int, txpk: dict[str, Any]) -> bytes:
    """A PULL_RESP carrying `txpk`; the forwarder's TX_ACK will repeat `token`."""
    return HEADER.pack(PROTOCOL_VERSION, token, PULL_RESP) + json.dumps({"txpk": txpk}, separators=(",", ":")).encode()


# --- reading JSON a stranger wrote ---------------------------------------------------------


def _json_object(body: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(body, parse_constant=_no_constants)
    except (ValueError, RecursionError) as error:  # bad UTF-8 and too many digits are ValueErrors too
        raise Refused("bad_json", f"{what}: {_show(str(error))}") from None
    if not isinstance(value, dict):
        raise Refused("bad_json", f"{what} holds {_show(value)}, not a JSON object")
    return value


def _no_constants(name: str) -> float:
    raise ValueError(f"{name} is not a number a forwarder sends")


def _integer(rxpk: dict[str, Any], name: str) -> int:
    value = rxpk.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise Refused("bad_rxpk", f"{name} is {_show(value)}, not an integer")
    return value


def _number(rxpk: dict[str, Any], name: str) -> float:
    value = rxpk.get(name)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise Refused("bad_rxpk", f"{name} is {_show(value)}, not a number")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise Refused("bad_rxpk", f"{name} is {_show(value)}, not a finite number")
    return number


def _text(rxpk: dict[str, Any], name: str) -> str:
    value = rxpk.get(name)
    if not isinstance(value, str):
        raise Refused("bad_rxpk", f"{name} is {_show(value)}, not a string")
    return value


def _base64(data: str) -> bytes:
    try:
        # Tolerates missing padding: some forwarders leave it out.
        return base64.b64decode(data + "=" * (-len(data) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise Refused("bad_rxpk", f"data {_show(data)} is not base64") from None


def _show(value: object) -> str:
    """A value for a detail line, cut short: a stranger's input must not make our diagnostics grow."""
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # an integer too long to print, lists nested too deep
        text = f"a {type(value).__name__}"
    return text if len(text) <= 60 else text[:57] + "..."


def _rxpk_raw(rxpk: Any) -> bytes:
    try:
        return json.dumps(rxpk).encode()[:RAW_BOUND]
    except (TypeError, ValueError, RecursionError):
        return b""


# --- the source -----------------------------------------------------------------------------


class _Endpoint(asyncio.DatagramProtocol):
    """The socket of one listening session. What needs awaiting (deliver, reject) waits in
    `inbox` for the source's task; `None` there marks the socket's end."""

    def __init__(self, received: Callable[[bytes, tuple, asyncio.Queue], None]) -> None:
        self.received = received
        self.inbox: asyncio.Queue[Reception | Rejected | None] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.received(data, addr, self.inbox)

    def error_received(self, exc: Exception) -> None:
        # E.g. ICMP port unreachable after a reply to a forwarder that has just stopped.
        log.debug("udp: socket error: %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.inbox.put_nowait(None)


class SemtechUdp(Source):
    """The UDP server Semtech packet forwarders talk to, on `host`:`port` (loopback by default:
    the protocol has no authentication). Receptions name their gateway: `udp:<gateway EUI>`.

    `run` answers every forwarder packet as it arrives and hands receptions on; `transmit` sends a
    downlink through the gateway that heard the reception it answers. `started()` waits for the
    socket and returns its port. `stats` holds the counters, `gateway_stats` each gateway's last
    `stat` report (plus `received_at`).
    """

    name = "udp"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 1700,
        clock: Callable[[], float] = time.time,
        tx_ack_timeout_s: float = 2.0,
    ) -> None:
        self.host = host
        self.port = port
        self.clock = clock
        self.tx_ack_timeout_s = tx_ack_timeout_s
        self.bound_port: int | None = None  # the port actually listened on (`port` may be 0 in tests)
        self.gateway_stats: dict[str, dict[str, Any]] = {}
        self.stats: dict[str, Any] = {
            "datagrams": 0,
            "push_data": 0,
            "pull_data": 0,
            "tx_acks": 0,
            "receptions": 0,  # rxpk entries that became receptions
            "rejected": Counter(),  # by reason: malformed datagrams and unusable rxpk entries
            "transmits": Counter(),  # by result: sent, too_late, …, no_tx_ack, no_downlink_path
            "late_tx_acks": 0,  # TX_ACKs nobody waited for any more
            "overloaded": 0,  # receptions and rejections dropped because the pipeline fell behind
        }
        self._transport: asyncio.DatagramTransport | None = None
        self._listening = asyncio.Event()
        self._downlink_paths: dict[str, tuple] = {}  # gateway EUI → address of its last PULL_DATA
        self._pending: dict[tuple[str, int], asyncio.Future[TxAck]] = {}  # (gateway EUI, token) → its TX_ACK

    async def started(self) -> int:
        """Wait until the socket listens; returns its port."""
        await self._listening.wait()
        assert self.bound_port is not None
        return self.bound_port

    async def run(self, deliver: Deliver, reject: Reject) -> None:
        while True:
            try:
                await self._serve(deliver, reject)
            except OSError as error:
                log.warning(
                    "udp: no socket on %s:%d (%s). If the port is taken, `ss -ulpn` shows by whom (a second "
                    "daemon, ChirpStack's gateway bridge); retrying in %g s",
                    self.host,
                    self.port,
                    error,
                    REBIND_DELAY_S,
                )
            await asyncio.sleep(REBIND_DELAY_S)

    async def transmit(self, downlink: Downlink) -> None:
        """Send `downlink` through the gateway that heard `downlink.answers`, at that reception's
        timestamp plus `delay_us` on the gateway's clock, and wait for the forwarder's TX_ACK.

        Raises TransmitError: `no_downlink_path` when that gateway has sent no PULL_DATA yet,
        `bad_request` for a downlink it cannot send, the forwarder's error in lower case
        (too_late, collision_packet, tx_freq, …), or `no_tx_ack` when it says nothing in time.
        """
        try:
            await self._transmit(downlink)
        except TransmitError as error:
            self.stats["transmits"][error.reason] += 1
            raise
        self.stats["transmits"]["sent"] += 1

    # --- one listening session -------------------------------------------------------------

    async def _serve(self, deliver: Deliver, reject: Reject) -> None:
        transport, endpoint = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: _Endpoint(self._received), local_addr=(self.host, self.port)
        )
        assert isinstance(endpoint, _Endpoint)
        self._transport = transport
        self.bound_port = transport.get_extra_info("sockname")[1]
        self._listening.set()
        log.info("udp: listening for packet forwarders on %s:%d", self.host, self.bound_port)
        try:
            while (item := await endpoint.inbox.get()) is not None:
                try:
                    if isinstance(item, Reception):
                        await deliver(item)
                    else:
                        await reject(item)
                except Exception:  # the pipeline's bug must not cost us the socket
                    log.exception("udp: handing on a %s failed", type(item).__name__)
            raise OSError("the socket closed")
        finally:
            self._listening.clear()
            self._transport = None
            transport.close()

    def _received(self, datagram: bytes, sender: tuple, inbox: asyncio.Queue) -> None:
        # Runs in the socket's callback: ACKs and TX_ACKs are handled at once, however slow the
        # pipeline is (a transmit waiting for its TX_ACK may be what the pipeline is awaiting).
        self.stats["datagrams"] += 1
        try:
            packet = parse_datagram(datagram)
        except Refused as refused:
            detail = f"from {sender[0]}:{sender[1]}: {refused.detail}"
            self._refuse(inbox, Rejected(self.name, refused.reason, detail, datagram[:RAW_BOUND]))
            return
        source = f"{self.name}:{packet.gateway_eui}"
        match packet:
            case PushData():
                self.stats["push_data"] += 1
                self._send(encode_ack(packet.token, PUSH_ACK), sender)
                if isinstance(packet.stat, dict):
                    _remember(self.gateway_stats, packet.gateway_eui, {**packet.stat, "received_at": self.clock()})
                elif packet.stat is not None:
                    detail = f"stat is {_show(packet.stat)}, not an object"
                    self._refuse(inbox, Rejected(source, "bad_stat", detail, datagram[:RAW_BOUND]))
                for rxpk in packet.rxpk:
                    try:
                        reception = reception_from_rxpk(rxpk, source, self.clock())
                    except Refused as refused:
                        self._refuse(inbox, Rejected(source, refused.reason, refused.detail, _rxpk_raw(rxpk)))
                    else:
                        self.stats["receptions"] += 1
                        self._enqueue(inbox, reception)
            case PullData():
                self.stats["pull_data"] += 1
                # lora_pkt_fwd pulls from its own socket, not the one it pushes from: downlinks go here.
                _remember(self._downlink_paths, packet.gateway_eui, sender)
                self._send(encode_ack(packet.token, PULL_ACK), sender)
            case TxAck():
                self.stats["tx_acks"] += 1
                answer = self._pending.get((packet.gateway_eui, packet.token))
                if answer is None or answer.done():
                    self.stats["late_tx_acks"] += 1
                else:
                    answer.set_result(packet)

    def _send(self, datagram: bytes, address: tuple) -> None:
        if self._transport is not None:
            self._transport.sendto(datagram, address)

    def _refuse(self, inbox: asyncio.Queue, rejected: Rejected) -> None:
        self.stats["rejected"][rejected.reason] += 1
        self._enqueue(inbox, rejected)

    def _enqueue(self, inbox: asyncio.Queue, item: Reception | Rejected) -> None:
        if inbox.qsize() >= MAX_WAITING:
            self.stats["overloaded"] += 1
            return
        inbox.put_nowait(item)

    async def _transmit(self, downlink: Downlink) -> None:
        gateway_eui = downlink.answers.source.partition(":")[2]
        if not self.heard(downlink.answers) or not gateway_eui:
            # Its timestamp is on another receiver's clock: the concentrator would send at a random time.
            raise TransmitError("bad_request", f"answers a reception from {downlink.answers.source}")
        transport, address = self._transport, self._downlink_paths.get(gateway_eui)
        if transport is None:
            raise TransmitError("no_downlink_path", "the UDP source is not listening")
        if address is None:
            raise TransmitError(
                "no_downlink_path",
                f"gateway {gateway_eui} has sent no PULL_DATA yet: check that its packet forwarder "
                f"runs and that its serv_port_down is {self.bound_port}",
            )
        try:
            txpk = txpk_of(downlink)
        except ValueError as error:
            raise TransmitError("bad_request", str(error)) from None
        token = random.randrange(65536)
        while (gateway_eui, token) in self._pending:
            token = random.randrange(65536)
        answer: asyncio.Future[TxAck] = asyncio.get_running_loop().create_future()
        self._pending[(gateway_eui, token)] = answer
        try:
            transport.sendto(encode_pull_resp(token, txpk), address)
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
            raise TransmitError(reason, f"gateway {gateway_eui} answered {_show(ack.error)}")


def _remember(table: dict[str, Any], gateway_eui: str, value: Any) -> None:
    """Keep `value` as the newest entry for the gateway, forgetting the least recent beyond MAX_GATEWAYS."""
    table.pop(gateway_eui, None)
    table[gateway_eui] = value
    while len(table) > MAX_GATEWAYS:
        del table[next(iter(table))]
