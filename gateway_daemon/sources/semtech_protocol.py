"""The Semtech UDP packet forwarder protocol, both ends of it: no sockets here, only the packets.

Lora-net/packet_forwarder's PROTOCOL.TXT, versions 1 and 2. Every datagram starts with the
protocol version, a random token (2 bytes) and an identifier; the forwarder's own packets then carry
its gateway EUI (8 bytes) and JSON:

    forwarder → server   PUSH_DATA 0x00 (`rxpk` heard, `stat`)   answered by PUSH_ACK 0x01
                         PULL_DATA 0x02 (keep-alive, downlink path)  answered by PULL_ACK 0x04
                         TX_ACK    0x05 (the fate of one PULL_RESP, same token)
    server → forwarder   PULL_RESP 0x03 (`txpk` to send)

Version 1 (PROTOCOL.TXT up to v1.2, older forwarders whose version is fixed when they are built) is
the same but for TX_ACK, which it does not have: a version 1 forwarder says nothing of a downlink's
fate, and its PULL_RESP's token is unused. The server answers each forwarder in its own version.

The gateway's `SemtechUdp` source is the server: it reads with `parse_from_forwarder` and
`reception_from_rxpk` and writes `PushAck`, `PullAck` and `PullResp(txpk_of(downlink))`. The rig's
packet forwarder is the other end: it writes `PushData(rxpk_of(…))`, `PullData`, `TxAck` and reads
with `parse_from_server` and `Txpk.from_json`. Each packet type encodes what the other end parses.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import struct
from dataclasses import dataclass
from typing import Any

from .base import Downlink, Reception

PROTOCOL_VERSION = 2  # what the rig's forwarder speaks, and the version a packet is built in by default
PROTOCOL_VERSIONS = (1, 2)
PUSH_DATA, PUSH_ACK, PULL_DATA, PULL_RESP, PULL_ACK, TX_ACK = range(6)
PACKET_NAMES = ("PUSH_DATA", "PUSH_ACK", "PULL_DATA", "PULL_RESP", "PULL_ACK", "TX_ACK")
HEADER = struct.Struct(">BHB")  # version, token, identifier
EUI_SIZE = 8
MAX_DATAGRAM = 65_507  # the largest UDP payload over IPv4
MAX_FRAME = 255  # a LoRa payload's largest size
SPREADING_FACTORS = range(5, 13)
BANDWIDTHS_HZ = (125_000, 250_000, 500_000)
DATR = re.compile(r"SF(\d{1,2})BW(\d{3})")
CODING_RATE = "4/5"  # what every Borne node sends and listens with
TX_ERRORS = frozenset(
    {"TOO_LATE", "TOO_EARLY", "COLLISION_PACKET", "COLLISION_BEACON", "TX_FREQ", "TX_POWER", "GPS_UNLOCKED"}
)


# Every reason a datagram or one of its entries is refused for, with what it means.
REFUSALS: dict[str, str] = {
    "oversized": "a datagram larger than UDP over IPv4 carries",
    "bad_header": "shorter than the protocol's header, or a forwarder's packet without its gateway EUI",
    "bad_version": "a protocol version other than 1 or 2",
    "unknown_packet": "a packet identifier the sender does not send (or none at all)",
    "bad_json": "a body that is not a JSON object",
    "bad_rxpk": "rxpk not a list, or an entry missing a field or holding one of the wrong type",
    "bad_stat": "a PUSH_DATA whose stat is not an object",
    "bad_tx_ack": "a TX_ACK whose txpk_ack is not an object of strings",
    "crc_failed": "the concentrator heard a frame whose CRC failed",
    "no_crc": "the concentrator heard a frame sent without CRC: noise or another network's",
    "not_lora": "a frame in another modulation (FSK)",
    "bad_txpk": "a PULL_RESP a forwarder cannot send (read by the rig's forwarder, not by the gateway)",
}


class Refused(Exception):
    """Input that is not the protocol; `reason`, one of `REFUSALS`, is what the gateway counts it under.

    `gateway_eui` names the forwarder when the datagram's header got as far as saying it.
    """

    def __init__(self, reason: str, detail: str, gateway_eui: str = "") -> None:
        if reason not in REFUSALS:
            raise ValueError(f"unknown refusal reason {reason!r}")
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.gateway_eui = gateway_eui


# --- the packets ------------------------------------------------------------------------------


def _packet(
    identifier: int, token: int, version: int, gateway_eui: str = "", body: dict[str, Any] | None = None
) -> bytes:
    datagram = HEADER.pack(version, token, identifier) + bytes.fromhex(gateway_eui)
    return datagram + (json.dumps(body, separators=(",", ":")).encode() if body is not None else b"")


@dataclass(frozen=True)
class PushData:
    """What the forwarder heard. `rxpk` entries are unchecked when parsed: each is read on its own
    by `reception_from_rxpk`, so that a bad one costs only itself."""

    token: int
    gateway_eui: str  # 16 hex digits
    rxpk: list[Any]
    stat: Any = None  # the gateway's statistics object, None when absent
    version: int = PROTOCOL_VERSION

    def encode(self) -> bytes:
        body: dict[str, Any] = {"rxpk": self.rxpk}
        if self.stat is not None:
            body["stat"] = self.stat
        return _packet(PUSH_DATA, self.token, self.version, self.gateway_eui, body)


@dataclass(frozen=True)
class PushAck:
    """The server's receipt for one PUSH_DATA, with its token."""

    token: int
    version: int = PROTOCOL_VERSION

    def encode(self) -> bytes:
        return _packet(PUSH_ACK, self.token, self.version)


@dataclass(frozen=True)
class PullData:
    """The forwarder's keep-alive: its sender address is where downlinks for this gateway go."""

    token: int
    gateway_eui: str
    version: int = PROTOCOL_VERSION

    def encode(self) -> bytes:
        return _packet(PULL_DATA, self.token, self.version, self.gateway_eui)


@dataclass(frozen=True)
class PullAck:
    """The server's answer to a PULL_DATA: the downlink path is open."""

    token: int
    version: int = PROTOCOL_VERSION

    def encode(self) -> bytes:
        return _packet(PULL_ACK, self.token, self.version)


@dataclass(frozen=True)
class PullResp:
    """A downlink for the forwarder to send; its TX_ACK repeats `token`. `txpk` is the JSON
    object as sent (`Txpk.to_json()`), unchecked when parsed: `Txpk.from_json` reads it."""

    token: int  # 0 in version 1, which has no TX_ACK to repeat it
    txpk: Any
    version: int = PROTOCOL_VERSION

    def encode(self) -> bytes:
        return _packet(PULL_RESP, self.token, self.version, body={"txpk": self.txpk})


@dataclass(frozen=True)
class TxAck:
    """The forwarder's verdict on one PULL_RESP: `error` is "NONE" when it was scheduled."""

    token: int
    gateway_eui: str
    error: str = "NONE"
    warning: str = ""  # e.g. TX_POWER: sent, at the nearest power the board supports

    def encode(self) -> bytes:
        verdict = {"error": self.error} | ({"warn": self.warning} if self.warning else {})
        return _packet(TX_ACK, self.token, PROTOCOL_VERSION, self.gateway_eui, {"txpk_ack": verdict})


FromForwarder = PushData | PullData | TxAck
FromServer = PushAck | PullAck | PullResp


def parse_from_forwarder(datagram: bytes) -> FromForwarder:
    """Read one datagram a forwarder sent; raises Refused (bad_header, bad_version, unknown_packet,
    bad_json, bad_rxpk, bad_tx_ack, oversized) for anything else. Never raises anything else."""
    version, token, identifier = _header(datagram, (PUSH_DATA, PULL_DATA, TX_ACK), "a forwarder")
    if len(datagram) < HEADER.size + EUI_SIZE:
        raise Refused("bad_header", f"{PACKET_NAMES[identifier]} of {len(datagram)} bytes has no gateway EUI")
    gateway_eui = datagram[HEADER.size : HEADER.size + EUI_SIZE].hex()
    # Some forwarders end their JSON with the C string's NUL.
    body = datagram[HEADER.size + EUI_SIZE :].rstrip(b"\0")
    if identifier == PULL_DATA:
        return PullData(token, gateway_eui, version)
    try:
        if identifier == TX_ACK:
            return _tx_ack(token, gateway_eui, body)
        message = _json_object(body, "PUSH_DATA")
        rxpk = message.get("rxpk", [])
        if not isinstance(rxpk, list):
            raise Refused("bad_rxpk", f"rxpk is {show(rxpk)}, not a list")
    except Refused as refused:  # past the header: the refusal names the forwarder it came from
        raise Refused(refused.reason, refused.detail, gateway_eui) from None
    return PushData(token, gateway_eui, rxpk, message.get("stat"), version)


def parse_from_server(datagram: bytes) -> FromServer:
    """Read one datagram a server sent to a forwarder; raises Refused (bad_header, bad_version,
    unknown_packet, bad_json, bad_txpk, oversized) for anything else."""
    version, token, identifier = _header(datagram, (PUSH_ACK, PULL_ACK, PULL_RESP), "a server")
    if identifier == PUSH_ACK:
        return PushAck(token, version)
    if identifier == PULL_ACK:
        return PullAck(token, version)
    message = _json_object(datagram[HEADER.size :], "PULL_RESP")
    if "txpk" not in message:
        raise Refused("bad_txpk", "PULL_RESP without txpk")
    return PullResp(token, message["txpk"], version)


def _header(datagram: bytes, expected: tuple[int, ...], sender: str) -> tuple[int, int, int]:
    """The datagram's version, token and identifier, one of `expected` that its version has."""
    if len(datagram) > MAX_DATAGRAM:
        raise Refused("oversized", f"{len(datagram)} bytes")
    if len(datagram) < HEADER.size:
        raise Refused("bad_header", f"{len(datagram)} bytes, shorter than a header")
    version, token, identifier = HEADER.unpack_from(datagram)
    if version not in PROTOCOL_VERSIONS:
        raise Refused("bad_version", f"protocol version {version}, not one of the Semtech packet forwarder's (1 and 2)")
    if identifier not in expected or (version == 1 and identifier == TX_ACK):
        name = PACKET_NAMES[identifier] if identifier < len(PACKET_NAMES) else "unknown"
        raise Refused("unknown_packet", f"identifier 0x{identifier:02x} ({name}), not one {sender} sends")
    return version, token, identifier


def _tx_ack(token: int, gateway_eui: str, body: bytes) -> TxAck:
    if not body.strip():  # lora_pkt_fwd says nothing more when all went well
        return TxAck(token, gateway_eui)
    verdict = _json_object(body, "TX_ACK").get("txpk_ack", {})
    if not isinstance(verdict, dict):
        raise Refused("bad_tx_ack", f"txpk_ack is {show(verdict)}, not an object")
    error, warning = verdict.get("error", "NONE"), verdict.get("warn", "")
    if not isinstance(error, str) or not isinstance(warning, str):
        raise Refused("bad_tx_ack", f"error {show(error)}, warn {show(warning)}: not strings")
    return TxAck(token, gateway_eui, error, warning)


# --- rxpk: a frame heard ----------------------------------------------------------------------


def rxpk_of(
    frame: bytes,
    *,
    timestamp_us: int,
    frequency_hz: int,
    spreading_factor: int,
    bandwidth_hz: int,
    rssi_dbm: float,
    snr_db: float,
) -> dict[str, Any]:
    """The `rxpk` entry a forwarder writes for a good LoRa frame: what `reception_from_rxpk` reads."""
    return {
        "tmst": timestamp_us % 2**32,
        "chan": 0,
        "rfch": 0,
        "freq": frequency_hz / 1e6,
        "stat": 1,
        "modu": "LORA",
        "datr": datr_of(spreading_factor, bandwidth_hz),
        "codr": CODING_RATE,
        "rssi": round(rssi_dbm),  # whole dBm, and SNR to a tenth of a dB, as lora_pkt_fwd prints them
        "lsnr": round(snr_db, 1),
        "size": len(frame),
        "data": base64.b64encode(frame).decode("ascii"),
    }


def reception_from_rxpk(rxpk: Any, source: str, received_at: float) -> Reception:
    """The Reception one `rxpk` entry describes. Raises Refused: crc_failed, no_crc or not_lora for
    a packet heard but unusable, bad_rxpk for an entry missing a field or with one of the wrong type."""
    if not isinstance(rxpk, dict):
        raise Refused("bad_rxpk", f"an rxpk entry is {show(rxpk)}, not an object")
    stat = _integer(rxpk, "stat", "bad_rxpk")
    if stat == -1:
        raise Refused("crc_failed", "the concentrator heard a frame whose CRC failed")
    if stat == 0:
        # Our nodes always send a CRC: a frame without one is noise or someone else's.
        raise Refused("no_crc", "the concentrator heard a frame without CRC")
    if stat != 1:
        raise Refused("bad_rxpk", f"stat is {stat}, not 1, 0 or -1")
    modulation = _text(rxpk, "modu", "bad_rxpk")
    if modulation != "LORA":
        raise Refused("not_lora", f"modulation {show(modulation)}")
    spreading_factor, bandwidth_hz = _datr(rxpk, "bad_rxpk")
    frequency_hz = _frequency_hz(rxpk, "bad_rxpk")
    timestamp_us = _integer(rxpk, "tmst", "bad_rxpk")
    if not 0 <= timestamp_us < 2**32:
        raise Refused("bad_rxpk", f"tmst {timestamp_us} is not a 32-bit counter")
    frame = _frame(rxpk, "bad_rxpk")
    return Reception(
        frame=frame,
        source=source,
        received_at=received_at,
        frequency_hz=frequency_hz,
        spreading_factor=spreading_factor,
        bandwidth_hz=bandwidth_hz,
        **_signal(rxpk),
        timestamp_us=timestamp_us,
    )


def _signal(rxpk: dict[str, Any]) -> dict[str, float]:
    """The frame's RSSI (dBm) and SNR (dB): the entry's `rssi` and `lsnr`, or where the forwarder reports
    each antenna apart in `rsig` (`rssic` and `lsnr` of each, as SX1301 v2 gateways such as Kerlink's
    iBTS do), those of the antenna that heard it best."""
    if "rsig" in rxpk and not ("rssi" in rxpk and "lsnr" in rxpk):
        antennas = rxpk["rsig"]
        if not isinstance(antennas, list) or not antennas or not all(isinstance(a, dict) for a in antennas):
            raise Refused("bad_rxpk", f"rsig is {show(antennas)}, not a list of objects")
        snr_db, rssi_dbm = max((_number(a, "lsnr", "bad_rxpk"), _number(a, "rssic", "bad_rxpk")) for a in antennas)
        return {"rssi_dbm": rssi_dbm, "snr_db": snr_db}
    return {"rssi_dbm": _number(rxpk, "rssi", "bad_rxpk"), "snr_db": _number(rxpk, "lsnr", "bad_rxpk")}


# --- txpk: a frame to send --------------------------------------------------------------------


@dataclass(frozen=True)
class Txpk:
    """One downlink as a PULL_RESP carries it. Raises ValueError for radio settings a
    concentrator cannot send."""

    frame: bytes
    frequency_hz: int
    spreading_factor: int
    bandwidth_hz: int
    tx_power_dbm: int
    timestamp_us: int | None  # on the concentrator's clock; None: send at once ("imme")
    invert_iq: bool = False  # our raw-LoRa nodes listen with normal IQ; LoRaWAN devices expect it inverted
    crc: bool = True  # our nodes drop frames without one (LoRaWAN downlinks go without)

    def __post_init__(self) -> None:
        if self.spreading_factor not in SPREADING_FACTORS:
            raise ValueError(f"spreading factor {self.spreading_factor}")
        if self.bandwidth_hz not in BANDWIDTHS_HZ:
            raise ValueError(f"bandwidth {self.bandwidth_hz} Hz")
        if not 0 < len(self.frame) <= MAX_FRAME:
            raise ValueError(f"a frame of {len(self.frame)} bytes")
        if self.timestamp_us is not None and not 0 <= self.timestamp_us < 2**32:
            raise ValueError(f"tmst {self.timestamp_us} is not a 32-bit counter")

    def to_json(self) -> dict[str, Any]:
        """The `txpk` object of a PULL_RESP."""
        timing: dict[str, Any] = {"imme": self.timestamp_us is None}
        if self.timestamp_us is not None:
            timing["tmst"] = self.timestamp_us
        return timing | {
            "freq": self.frequency_hz / 1e6,
            "rfch": 0,  # the radio chain wired for transmission on SX1302 reference designs
            "powe": self.tx_power_dbm,
            "modu": "LORA",
            "datr": datr_of(self.spreading_factor, self.bandwidth_hz),
            "codr": CODING_RATE,
            "ipol": self.invert_iq,
            "ncrc": not self.crc,
            "size": len(self.frame),
            "data": base64.b64encode(self.frame).decode("ascii"),
        }

    @classmethod
    def from_json(cls, txpk: Any) -> Txpk:
        """Read a PULL_RESP's `txpk` as a forwarder does; raises Refused("bad_txpk") for one it cannot send."""
        if not isinstance(txpk, dict):
            raise Refused("bad_txpk", f"txpk is {show(txpk)}, not an object")
        if _text(txpk, "modu", "bad_txpk") != "LORA":
            raise Refused("bad_txpk", f"modulation {show(txpk['modu'])}")
        immediately = txpk.get("imme", False)
        if not isinstance(immediately, bool):
            raise Refused("bad_txpk", f"imme is {show(immediately)}, not a boolean")
        spreading_factor, bandwidth_hz = _datr(txpk, "bad_txpk")
        try:
            return cls(
                frame=_frame(txpk, "bad_txpk"),
                frequency_hz=_frequency_hz(txpk, "bad_txpk"),
                spreading_factor=spreading_factor,
                bandwidth_hz=bandwidth_hz,
                tx_power_dbm=_integer(txpk, "powe", "bad_txpk"),
                timestamp_us=None if immediately else _integer(txpk, "tmst", "bad_txpk"),
                invert_iq=_flag(txpk, "ipol"),
                crc=not _flag(txpk, "ncrc"),
            )
        except ValueError as error:
            raise Refused("bad_txpk", str(error)) from None


def txpk_of(downlink: Downlink) -> Txpk:
    """The txpk sending `downlink`: on the clock of the gateway that heard the reception it answers,
    that reception's timestamp plus `delay_us` (the counter wraps every 71.6 minutes). Raises ValueError
    for radio settings a concentrator cannot send."""
    return Txpk(
        frame=downlink.frame,
        frequency_hz=downlink.frequency_hz,
        spreading_factor=downlink.spreading_factor,
        bandwidth_hz=downlink.bandwidth_hz,
        tx_power_dbm=downlink.tx_power_dbm,
        timestamp_us=(downlink.answers.timestamp_us + downlink.delay_us) % 2**32,
    )


def datr_of(spreading_factor: int, bandwidth_hz: int) -> str:
    """A LoRa data rate as the protocol writes it, e.g. "SF9BW125"."""
    return f"SF{spreading_factor}BW{bandwidth_hz // 1000}"


# --- reading JSON a stranger wrote ---------------------------------------------------------


def _json_object(body: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(body, parse_constant=_no_constants)
    except (ValueError, RecursionError) as error:  # bad UTF-8 and too many digits are ValueErrors too
        raise Refused("bad_json", f"{what}: {show(str(error))}") from None
    if not isinstance(value, dict):
        raise Refused("bad_json", f"{what} holds {show(value)}, not a JSON object")
    return value


def _no_constants(name: str) -> float:
    raise ValueError(f"{name} is not a number a forwarder sends")


def _integer(packet: dict[str, Any], name: str, reason: str) -> int:
    value = packet.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise Refused(reason, f"{name} is {show(value)}, not an integer")
    return value


def _number(packet: dict[str, Any], name: str, reason: str) -> float:
    value = packet.get(name)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise Refused(reason, f"{name} is {show(value)}, not a number")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise Refused(reason, f"{name} is {show(value)}, not a finite number")
    return number


def _text(packet: dict[str, Any], name: str, reason: str) -> str:
    value = packet.get(name)
    if not isinstance(value, str):
        raise Refused(reason, f"{name} is {show(value)}, not a string")
    return value


def _flag(packet: dict[str, Any], name: str) -> bool:
    value = packet.get(name, False)
    if not isinstance(value, bool):
        raise Refused("bad_txpk", f"{name} is {show(value)}, not a boolean")
    return value


def _datr(packet: dict[str, Any], reason: str) -> tuple[int, int]:
    datr = DATR.fullmatch(_text(packet, "datr", reason))
    if datr is None or int(datr[1]) not in SPREADING_FACTORS or int(datr[2]) * 1000 not in BANDWIDTHS_HZ:
        raise Refused(reason, f"datr {show(packet['datr'])} is not a LoRa data rate like SF9BW125")
    return int(datr[1]), int(datr[2]) * 1000


def _frequency_hz(packet: dict[str, Any], reason: str) -> int:
    frequency_mhz = _number(packet, "freq", reason)
    if not 0 < frequency_mhz < 3000:
        raise Refused(reason, f"freq {frequency_mhz} MHz")
    return round(frequency_mhz * 1e6)


def _frame(packet: dict[str, Any], reason: str) -> bytes:
    data = _text(packet, "data", reason)
    try:
        # Tolerates missing padding: some forwarders leave it out.
        frame = base64.b64decode(data + "=" * (-len(data) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise Refused(reason, f"data {show(data)} is not base64") from None
    if "size" in packet and _integer(packet, "size", reason) != len(frame):
        raise Refused(reason, f"size {packet['size']} but data holds {len(frame)} bytes")
    return frame


def show(value: object) -> str:
    """A value for a detail line, cut short: a stranger's input must not make our diagnostics grow."""
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # an integer too long to print, lists nested too deep
        text = f"a {type(value).__name__}"
    return text if len(text) <= 60 else text[:57] + "..."
