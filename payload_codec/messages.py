"""Application bodies: decoded fields (JSON-ready dicts) to bytes and back.

`encode_body` and `decode_body` are the plain application payload inside the
envelope, the part a LoRaWAN network would carry as FRMPayload with the message
type as FPort. Decoded values are in the units their names carry (`temperature_c`,
`age_s`); the exported JavaScript formatter computes them with the same arithmetic.
"""

from __future__ import annotations

import functools
import math
import struct
from typing import Any

from construct import ConstructError

from .errors import CodecError
from .schema import (
    ACK_SIZES,
    AGE_MAX_S,
    AGE_SECONDS_LIMIT,
    CHECKIN_SIZE,
    COMPILED_BODY_SCHEMAS,
    CONFIG_FIELDS,
    DIRECTIONS,
    MAX_CHECKINS,
    RESERVED_BITMAP_BIT,
    RESET_CAUSES,
    STATUS_SIZE,
    TAG_TYPES,
    TELEMETRY_FIELDS,
    TYPE_BY_NAME,
    UID_LENGTHS,
    BitmapField,
)

Fields = dict[str, Any]


def encode_body(msg_type: str, fields: Fields) -> bytes:
    """The body of a `msg_type` message holding `fields`; raises CodecError on bad fields."""
    if msg_type not in TYPE_BY_NAME:
        raise CodecError("unknown_type", f"no message type {msg_type!r}; known: {', '.join(TYPE_BY_NAME)}")
    raw, size = _RAW_FROM_FIELDS[msg_type](fields)
    try:
        return COMPILED_BODY_SCHEMAS[msg_type].build(raw, size=size)
    except (ConstructError, struct.error) as error:
        raise CodecError("bad_value", f"{msg_type}: {error}") from None


def decode_body(msg_type: str, body: bytes) -> Fields | CodecError:
    """The fields of a `msg_type` body, or the CodecError that says why it is not one."""
    if msg_type not in TYPE_BY_NAME:
        return CodecError("unknown_type", f"no message type {msg_type!r}")
    size_error = _check_size(msg_type, len(body))
    if size_error:
        return size_error
    try:
        raw = COMPILED_BODY_SCHEMAS[msg_type].parse(body, size=len(body))
    except (ConstructError, struct.error):
        return CodecError("bad_length", f"{msg_type} body of {len(body)} bytes does not match its presence bitmap")
    try:
        return _FIELDS_FROM_RAW[msg_type](raw)
    except CodecError as error:
        return error


def _check_size(msg_type: str, size: int) -> CodecError | None:
    if msg_type == "checkin":
        count, rest = divmod(size, CHECKIN_SIZE)
        if rest or not 1 <= count <= MAX_CHECKINS:
            return CodecError(
                "bad_length", f"check-in body of {size} bytes is not 1 to {MAX_CHECKINS} events of {CHECKIN_SIZE}"
            )
    elif msg_type == "status" and size != STATUS_SIZE:
        return CodecError("bad_length", f"status body is {STATUS_SIZE} bytes, got {size}")
    elif msg_type == "ack" and size not in ACK_SIZES:
        return CodecError("bad_length", f"ACK body is 2 or 6 bytes, got {size}")
    elif size == 0:
        return CodecError("bad_length", f"{msg_type} body is empty")
    return None


# --- enumerations ------------------------------------------------------------------------
def _name_of(names: tuple[str, ...], code: int, what: str) -> str:
    if code >= len(names):
        raise CodecError("bad_value", f"{what} code {code} is not one of {len(names)} known")
    return names[code]


def _code_of(names: tuple[str, ...], name: Any, what: str) -> int:
    if name not in names:
        raise CodecError("bad_value", f"{what} {name!r} is not one of {', '.join(map(str, names))}")
    return names.index(name)


def _require(fields: Fields, key: str, what: str) -> Any:
    if key not in fields:
        raise CodecError("bad_value", f"{what} needs the field {key!r}")
    return fields[key]


def _whole(value: Any, low: int, high: int, what: str) -> int:
    # 3.0 is whole: JSON and JavaScript do not tell it from 3.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise CodecError("bad_value", f"{what} must be a whole number from {low} to {high}, got {value!r}")
    return value


def _no_unknown(fields: Any, known: set[str], what: str) -> None:
    if not isinstance(fields, dict):
        raise CodecError("bad_value", f"{what} must be an object of fields, got {fields!r}")
    unknown = set(fields) - known
    if unknown:
        raise CodecError("unknown_field", f"{what} has no field {', '.join(sorted(unknown))}")


# --- check-in ------------------------------------------------------------------------------
def age_to_raw(age_s: int) -> int:
    """The 2-byte age code: seconds below 32768, then minutes (rounded); saturates at 23.1 days."""
    if age_s < AGE_SECONDS_LIMIT:
        return age_s
    return AGE_SECONDS_LIMIT + min((age_s - AGE_SECONDS_LIMIT + 30) // 60, 0x7FFF)


def age_from_raw(raw: int) -> int:
    if raw < AGE_SECONDS_LIMIT:
        return raw
    return AGE_SECONDS_LIMIT + (raw - AGE_SECONDS_LIMIT) * 60


_CHECKIN_KEYS = {"badge_token", "tag_type", "direction", "uid_length", "age_s"}


def _checkins_to_raw(fields: Fields) -> tuple[dict, int]:
    _no_unknown(fields, {"checkins"}, "a check-in frame")
    checkins = _require(fields, "checkins", "a check-in frame")
    if not isinstance(checkins, list) or not 1 <= len(checkins) <= MAX_CHECKINS:
        raise CodecError("bad_value", f"a check-in frame holds 1 to {MAX_CHECKINS} check-ins")
    events = []
    for event in checkins:
        _no_unknown(event, _CHECKIN_KEYS, "a check-in")
        token = _require(event, "badge_token", "a check-in")
        try:
            token_bytes = bytes.fromhex(token)
        except (TypeError, ValueError):
            token_bytes = b""
        if len(token_bytes) != 8:
            raise CodecError("bad_value", f"badge_token must be 16 hex digits, got {token!r}")
        tag = (
            _code_of(DIRECTIONS, event.get("direction", "none"), "direction") << 6
            | _code_of(TAG_TYPES, event.get("tag_type", "unknown"), "tag_type") << 2
            | _code_of(UID_LENGTHS, _require(event, "uid_length", "a check-in"), "uid_length")
        )
        age_s = _whole(_require(event, "age_s", "a check-in"), 0, AGE_MAX_S, "age_s")
        events.append({"tag": tag, "badge_token": token_bytes, "age": age_to_raw(age_s)})
    return {"checkins": events}, len(events) * CHECKIN_SIZE


def _checkins_from_raw(raw: Any) -> Fields:
    return {
        "checkins": [
            {
                "badge_token": event.badge_token.hex(),
                "tag_type": _name_of(TAG_TYPES, (event.tag >> 2) & 0x0F, "tag_type"),
                "direction": _name_of(DIRECTIONS, event.tag >> 6, "direction"),
                "uid_length": _name_of(UID_LENGTHS, event.tag & 0x03, "uid_length"),
                "age_s": age_from_raw(event.age),
            }
            for event in raw.checkins
        ]
    }


# --- presence-bitmap bodies (telemetry, config) ------------------------------------------
@functools.cache
def field_range(field: BitmapField) -> tuple[int, int]:
    size = field.fmt.sizeof()
    signed = field.fmt.fmtstr[-1].islower()  # struct format: b/h/i signed, B/H/I unsigned
    low, high = (-(1 << (8 * size - 1)), (1 << (8 * size - 1)) - 1) if signed else (0, (1 << (8 * size)) - 1)
    return (low if field.raw_min is None else field.raw_min, high if field.raw_max is None else field.raw_max)


def _value_to_raw(field: BitmapField, value: Any) -> int:
    if field.enum:
        return _code_of(field.enum, value, field.name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CodecError("bad_value", f"{field.name} must be a number, got {value!r}")
    if field.divisor == 1 and value != int(value):
        raise CodecError("bad_value", f"{field.name} must be a whole number, got {value!r}")
    raw = round(value * field.divisor) if field.divisor > 1 else round((value - field.offset) / field.step)
    low, high = field_range(field)
    if not low <= raw <= high:
        lowest, highest = _raw_to_value(field, low), _raw_to_value(field, high)
        raise CodecError("bad_value", f"{field.name} must be from {lowest} to {highest}, got {value!r}")
    return raw


def _raw_to_value(field: BitmapField, raw: int) -> Any:
    low, high = field_range(field)
    if not low <= raw <= high:
        raise CodecError("bad_value", f"{field.name} raw value {raw} is outside {low}..{high}")
    if field.enum:
        return _name_of(field.enum, raw, field.name)
    return raw / field.divisor if field.divisor > 1 else field.offset + raw * field.step


def _bitmap_to_raw(table: tuple[BitmapField, ...], fields: Fields, what: str) -> tuple[dict, int]:
    _no_unknown(fields, {f.name for f in table}, what)
    raw: dict[str, Any] = {"present": 0}
    for bit, field in enumerate(table):
        value = fields.get(field.name)
        if field.fmt is None:
            if value is not None and not isinstance(value, bool):
                raise CodecError("bad_value", f"{field.name} is true or absent, got {value!r}")
            if value:
                raw["present"] |= 1 << bit
        elif value is None:
            raw[field.name] = None
        else:
            raw["present"] |= 1 << bit
            raw[field.name] = _value_to_raw(field, value)
    if not raw["present"]:
        raise CodecError("bad_value", f"{what} needs at least one field")
    return raw, 0


def _bitmap_from_raw(table: tuple[BitmapField, ...], raw: Any, what: str) -> Fields:
    known_bits = (1 << len(table)) - 1
    if raw.present & ~known_bits & 0xFF or raw.present & RESERVED_BITMAP_BIT:
        raise CodecError("unknown_field", f"{what} presence bitmap {raw.present:#04x} names unknown fields")
    if not raw.present:
        raise CodecError("bad_value", f"{what} presence bitmap is empty")
    fields: Fields = {}
    for bit, field in enumerate(table):
        if raw.present & (1 << bit):
            fields[field.name] = True if field.fmt is None else _raw_to_value(field, raw[field.name])
    return fields


# --- status --------------------------------------------------------------------------------
_STATUS_COUNTERS = ("queue_depth", "checkins_dropped", "radio_errors", "reader_errors", "duty_cycle_deferrals")


def _status_to_raw(fields: Fields) -> tuple[dict, int]:
    _no_unknown(fields, {"firmware", "uptime_s", "reset_cause", "sensor_faults", *_STATUS_COUNTERS}, "a status frame")
    version = str(_require(fields, "firmware", "a status frame")).split(".")
    if len(version) != 3 or not all(part.isdigit() and int(part) < 256 for part in version):
        raise CodecError("bad_value", f"firmware must read MAJOR.MINOR.PATCH, each 0-255, got {fields['firmware']!r}")
    faults = 0
    names = [f.name for f in TELEMETRY_FIELDS]
    for name in fields.get("sensor_faults", []):
        faults |= 1 << _code_of(tuple(names), name, "sensor_faults entry")
    raw = {
        "firmware_major": int(version[0]),
        "firmware_minor": int(version[1]),
        "firmware_patch": int(version[2]),
        "uptime_s": _whole(_require(fields, "uptime_s", "a status frame"), 0, 0xFFFFFFFF, "uptime_s"),
        "reset_cause": _code_of(RESET_CAUSES, fields.get("reset_cause", "unknown"), "reset_cause"),
        "sensor_faults": faults,
    }
    for name in _STATUS_COUNTERS:
        raw[name] = _whole(fields.get(name, 0), 0, 0xFFFF, name)
    return raw, STATUS_SIZE


def _status_from_raw(raw: Any) -> Fields:
    if raw.sensor_faults >> len(TELEMETRY_FIELDS):
        raise CodecError("unknown_field", f"sensor_faults {raw.sensor_faults:#04x} names unknown sensors")
    return {
        "firmware": f"{raw.firmware_major}.{raw.firmware_minor}.{raw.firmware_patch}",
        "uptime_s": raw.uptime_s,
        "reset_cause": _name_of(RESET_CAUSES, raw.reset_cause, "reset_cause"),
        "sensor_faults": [f.name for bit, f in enumerate(TELEMETRY_FIELDS) if raw.sensor_faults & (1 << bit)],
        **{name: raw[name] for name in _STATUS_COUNTERS},
    }


# --- ACK -----------------------------------------------------------------------------------
def _ack_to_raw(fields: Fields) -> tuple[dict, int]:
    _no_unknown(fields, {"acked_counter16", "gateway_time"}, "an ACK")
    acked = _whole(_require(fields, "acked_counter16", "an ACK"), 0, 0xFFFF, "acked_counter16")
    time = fields.get("gateway_time")
    if time is not None:
        time = _whole(time, 0, 0xFFFFFFFF, "gateway_time")
    return {"acked_counter16": acked, "gateway_time": time}, ACK_SIZES[time is not None]


def _ack_from_raw(raw: Any) -> Fields:
    fields: Fields = {"acked_counter16": raw.acked_counter16}
    if raw.gateway_time is not None:
        fields["gateway_time"] = raw.gateway_time
    return fields


_RAW_FROM_FIELDS = {
    "checkin": _checkins_to_raw,
    "telemetry": lambda fields: _bitmap_to_raw(TELEMETRY_FIELDS, fields, "telemetry"),
    "status": _status_to_raw,
    "ack": _ack_to_raw,
    "config": lambda fields: _bitmap_to_raw(CONFIG_FIELDS, fields, "config"),
}
_FIELDS_FROM_RAW = {
    "checkin": _checkins_from_raw,
    "telemetry": lambda raw: _bitmap_from_raw(TELEMETRY_FIELDS, raw, "telemetry"),
    "status": _status_from_raw,
    "ack": _ack_from_raw,
    "config": lambda raw: _bitmap_from_raw(CONFIG_FIELDS, raw, "config"),
}
