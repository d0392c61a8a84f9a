"""Records on the USB serial link between the bridge board and the gateway.

Each record is `type(1) | fields | CRC-16 (LE)`, COBS-encoded and ended by a 0x00
byte, so a reader that starts mid-stream or meets garbage loses at most the record
it was in and picks up at the next 0x00. The CRC is CRC-16/CCITT-FALSE (poly
0x1021, init 0xFFFF), which the standard library computes as `binascii.crc_hqx`.
"""

from __future__ import annotations

import binascii
import struct
from dataclasses import dataclass
from typing import Any

from cobs import cobs
from construct import (
    ConstructError,
    GreedyBytes,
    Int8sl,
    Int8ul,
    Int16sl,
    Int16ul,
    Int32ul,
    Struct,
)

from .errors import CodecError
from .schema import MAX_FRAME_SIZE

LINK_VERSION = 1
DELIMITER = b"\x00"
CRC_SIZE = 2
# Longest record: a transmit request of the largest frame, plus COBS's overhead.
MAX_RECORD_SIZE = 1 + 18 + MAX_FRAME_SIZE + CRC_SIZE
MAX_ENCODED_SIZE = MAX_RECORD_SIZE + MAX_RECORD_SIZE // 254 + 2

TX_RESULTS = ("sent", "too_late", "too_early", "busy", "duty_cycle", "radio_error", "bad_request")
LOG_LEVELS = ("debug", "info", "warning", "error")
TX_TIMINGS = ("immediate", "at_timestamp")

_RADIO = (
    "frequency_hz" / Int32ul,
    "spreading_factor" / Int8ul,
    "bandwidth_hz" / Int32ul,
    "coding_rate" / Int8ul,  # 5..8 for 4/5..4/8
)

# Record types by code: (name, schema). `frame` and `text` take the rest of the record.
RECORD_SCHEMAS: dict[int, tuple[str, Struct]] = {
    0x01: (
        "received",
        Struct(
            *_RADIO,
            "rssi_dbm" / Int16sl,
            "snr_qdb" / Int8sl,  # quarter dB, as the radio reports it
            "timestamp_us" / Int32ul,  # bridge clock at the end of reception; wraps
            "frame" / GreedyBytes,
        ),
    ),
    0x02: (
        "transmit",
        Struct(
            "tx_id" / Int16ul,
            *_RADIO,
            "tx_power_dbm" / Int8sl,
            "timing" / Int8ul,
            "timestamp_us" / Int32ul,  # when to start, on the bridge clock, for timing "at_timestamp"
            "frame" / GreedyBytes,
        ),
    ),
    0x03: ("transmit_result", Struct("tx_id" / Int16ul, "result" / Int8ul, "airtime_us" / Int32ul)),
    0x04: (
        "heartbeat",
        Struct(
            "link_version" / Int8ul,
            "firmware_major" / Int8ul,
            "firmware_minor" / Int8ul,
            "firmware_patch" / Int8ul,
            "uptime_s" / Int32ul,
            "received" / Int32ul,
            "transmitted" / Int32ul,
            "radio_errors" / Int16ul,
            "records_dropped" / Int16ul,  # records the bridge could not write to the host
        ),
    ),
    0x05: ("log", Struct("level" / Int8ul, "text" / GreedyBytes)),
}
RECORD_CODES = {name: code for code, (name, _) in RECORD_SCHEMAS.items()}
_COMPILED = {code: schema.compile() for code, (_, schema) in RECORD_SCHEMAS.items()}
# Enumerated fields: their names on the wire, by record field.
_ENUMS = {"result": TX_RESULTS, "level": LOG_LEVELS, "timing": TX_TIMINGS}


@dataclass(frozen=True)
class Record:
    """One record of the serial link; `fields` is JSON-ready (frames as hex, SNR in dB)."""

    kind: str
    fields: dict[str, Any]


def _to_raw(fields: dict[str, Any]) -> dict[str, Any]:
    raw = dict(fields)
    for name, names in _ENUMS.items():
        if name in raw:
            if raw[name] not in names:
                raise CodecError("bad_value", f"{name} {raw[name]!r} is not one of {', '.join(names)}")
            raw[name] = names.index(raw[name])
    if "frame" in raw:
        raw["frame"] = bytes.fromhex(raw["frame"])
        if not 1 <= len(raw["frame"]) <= MAX_FRAME_SIZE:
            raise CodecError("bad_value", f"a frame is 1 to {MAX_FRAME_SIZE} bytes")
    if "snr_db" in raw:
        raw["snr_qdb"] = round(raw.pop("snr_db") * 4)
    if "text" in raw:
        raw["text"] = raw["text"].encode()[: MAX_RECORD_SIZE - 4]
    return raw


def _from_raw(raw: Any) -> dict[str, Any]:
    fields = {name: value for name, value in raw.items() if not name.startswith("_")}
    for name, names in _ENUMS.items():
        if name in fields:
            if fields[name] >= len(names):
                raise CodecError("bad_value", f"{name} code {fields[name]} is unknown")
            fields[name] = names[fields[name]]
    if "frame" in fields:
        if not 1 <= len(fields["frame"]) <= MAX_FRAME_SIZE:
            raise CodecError("bad_length", f"a frame is 1 to {MAX_FRAME_SIZE} bytes, got {len(fields['frame'])}")
        fields["frame"] = fields["frame"].hex()
    if "snr_qdb" in fields:
        fields["snr_db"] = fields.pop("snr_qdb") / 4
    if "text" in fields:
        # A log line with broken UTF-8 is still worth reading.
        fields["text"] = fields["text"].decode("utf-8", errors="replace")
    return fields


def encode_record(kind: str, fields: dict[str, Any]) -> bytes:
    """The bytes on the serial line for one record, between two delimiters."""
    code = RECORD_CODES.get(kind)
    if code is None:
        raise CodecError("unknown_record", f"no record type {kind!r}; known: {', '.join(RECORD_CODES)}")
    try:
        body = bytes([code]) + _COMPILED[code].build(_to_raw(fields))
    except (ConstructError, struct.error, KeyError, ValueError, TypeError) as error:
        raise CodecError("bad_value", f"{kind}: {error}") from None
    return frame_record(body)


def frame_record(body: bytes) -> bytes:
    """`type | fields` with its CRC-16, COBS-encoded between two delimiters, whatever the body holds."""
    return DELIMITER + cobs.encode(body + struct.pack("<H", binascii.crc_hqx(body, 0xFFFF))) + DELIMITER


def decode_record(encoded: bytes) -> Record | CodecError:
    """One record from its COBS bytes, without the delimiter."""
    try:
        data = cobs.decode(encoded)
    except cobs.DecodeError as error:
        return CodecError("bad_cobs", str(error))
    if len(data) < 1 + CRC_SIZE:
        return CodecError("truncated", f"a record of {len(data)} bytes has no room for its type and CRC")
    body, crc = data[:-CRC_SIZE], struct.unpack("<H", data[-CRC_SIZE:])[0]
    if binascii.crc_hqx(body, 0xFFFF) != crc:
        return CodecError("bad_crc", f"CRC {crc:#06x} does not match the record")
    code = body[0]
    if code not in RECORD_SCHEMAS:
        return CodecError("unknown_record", f"record type {code:#04x}")
    kind = RECORD_SCHEMAS[code][0]
    try:
        return Record(kind, _from_raw(_COMPILED[code].parse(body[1:])))
    except (ConstructError, struct.error):
        return CodecError("truncated", f"{kind} record of {len(body)} bytes is too short")
    except CodecError as error:
        return error


class RecordStream:
    """Turns the bytes read from the serial port into records, resynchronising on 0x00.

    `feed` never raises: garbage, a cut record or a corrupted one comes out as a
    CodecError in its place, and the records around it still come out whole
    (every record starts with a delimiter too, so garbage cannot swallow the next).
    """

    def __init__(self) -> None:
        self._pending = bytearray()
        self._overflowed = False

    def feed(self, data: bytes) -> list[Record | CodecError]:
        results: list[Record | CodecError] = []
        *complete, rest = bytes(data).split(DELIMITER)
        for piece in complete:
            self._pending += piece
            if len(self._pending) > MAX_ENCODED_SIZE:
                self._report_overflow(results)
            elif self._pending and not self._overflowed:  # empty: idle line between records
                results.append(decode_record(bytes(self._pending)))
            self._overflowed = False
            self._pending.clear()
        self._pending += rest
        if len(self._pending) > MAX_ENCODED_SIZE:
            self._report_overflow(results)
            self._pending.clear()
        return results

    def _report_overflow(self, results: list[Record | CodecError]) -> None:
        # Once per run of garbage, however long it lasts.
        if not self._overflowed:
            results.append(CodecError("too_long", f"no delimiter within {MAX_ENCODED_SIZE} bytes"))
        self._overflowed = True
