"""Application messages: one frozen dataclass per message type, to bytes and back.

`encode_body` and `decode_body` are the plain application payload inside the
envelope, the part a LoRaWAN network would carry as FRMPayload with the message
type as FPort. Every message has a JSON form, `to_json()` and `from_json()`: the
"fields" of the shared vectors, what the CLI reads and prints, what the gateway
publishes. Values are in the units their names carry (`temperature_c`, `age_s`);
the exported JavaScript formatter computes them with the same arithmetic.

`from_json` checks the shape of its input (an object, known keys, required keys);
the values are checked against the contract when a message is encoded, so a message
built in Python is held to the same rules as one read from JSON.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from construct import ConstructError

from .crypto import BADGE_TOKEN_SIZE
from .errors import CodecError
from .schema import (
    ACK_SIZES,
    AGE_MAX_S,
    AGE_SECONDS_LIMIT,
    CHECKIN_HEAD_SIZE,
    CHECKIN_SIZE,
    COMPILED_BODY_SCHEMAS,
    CONFIG_DIGEST_SIZE,
    CONFIG_FIELDS,
    DIRECTIONS,
    MAX_CHECKINS,
    RESERVED_BITMAP_BIT,
    RESET_CAUSES,
    STATUS_SIZE,
    TAG_AGE_IS_BOUND,
    TAG_TYPE_MASK,
    TAG_TYPES,
    TELEMETRY_FIELDS,
    TYPE_BY_NAME,
    UID_LENGTHS,
    BitmapField,
    MessageType,
)

JsonObject = dict[str, Any]
T = TypeVar("T")


# --- check-in ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class Checkin:
    """One badge presented at a node's reader.

    `badge_token` is `HMAC-SHA256(site badge key, UID)[:8]`, computed on the node: the
    UID itself never leaves it. `age_s` is how long the event waited on the node
    before the frame that carries it was built; the gateway subtracts it from the
    reception time. `age_is_bound` says the node rebooted meanwhile: the time it was
    off is unknown and left out, so the event is at least `age_s` old.
    """

    badge_token: bytes
    tag_type: str = "unknown"  # one of TAG_TYPES
    direction: str = "none"  # one of DIRECTIONS: what this door's check-ins mean
    uid_length: int  # bytes of the UID the token was computed from: one of UID_LENGTHS
    age_s: int
    age_is_bound: bool = False

    def to_json(self) -> JsonObject:
        return {
            "badge_token": self.badge_token.hex(),
            "tag_type": self.tag_type,
            "direction": self.direction,
            "uid_length": self.uid_length,
            "age_s": self.age_s,
            "age_is_bound": self.age_is_bound,
        }

    @classmethod
    def from_json(cls, fields: Any) -> Checkin:
        """The check-in of a JSON object; raises CodecError if it is not shaped as one."""
        _no_unknown(fields, _CHECKIN_KEYS, "a check-in")
        token = _require(fields, "badge_token", "a check-in")
        try:
            token_bytes = bytes.fromhex(token)
        except (TypeError, ValueError):
            token_bytes = b""
        if len(token_bytes) != BADGE_TOKEN_SIZE:
            raise CodecError("bad_value", f"badge_token must be {2 * BADGE_TOKEN_SIZE} hex digits, got {token!r}")
        return cls(
            badge_token=token_bytes,
            tag_type=fields.get("tag_type", "unknown"),
            direction=fields.get("direction", "none"),
            uid_length=_require(fields, "uid_length", "a check-in"),
            age_s=_require(fields, "age_s", "a check-in"),
            age_is_bound=fields.get("age_is_bound", False),
        )


_CHECKIN_KEYS = {field.name for field in dataclasses.fields(Checkin)}


@dataclass(frozen=True, slots=True)
class CheckinBatch:
    """The check-ins one frame carries, 1 to MAX_CHECKINS, with consecutive node-side numbers.

    `first_number16` is the low 16 bits of the first check-in's number; the others follow
    it. The receiver resolves the full number (`counter.resolve_checkin_number`): that
    number, not the frame, is a check-in's identity, whichever retry carried it.
    """

    msg_type: ClassVar[MessageType] = TYPE_BY_NAME["checkin"]
    first_number16: int
    checkins: tuple[Checkin, ...]

    def to_json(self) -> JsonObject:
        return {"first_number16": self.first_number16, "checkins": [checkin.to_json() for checkin in self.checkins]}

    @classmethod
    def from_json(cls, fields: Any) -> CheckinBatch:
        """The batch of `{"first_number16": n, "checkins": [...]}`; raises CodecError if it is not shaped as one."""
        _no_unknown(fields, {"first_number16", "checkins"}, "a check-in frame")
        first = _require(fields, "first_number16", "a check-in frame")
        checkins = _require(fields, "checkins", "a check-in frame")
        if not isinstance(checkins, list):
            raise CodecError("bad_value", f"a check-in frame holds 1 to {MAX_CHECKINS} check-ins")
        return cls(first, tuple(Checkin.from_json(event) for event in checkins))


# --- telemetry and config: presence-bitmap bodies -----------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class Telemetry:
    """One sensor report: the fields the board has, None for the others (TELEMETRY_FIELDS)."""

    msg_type: ClassVar[MessageType] = TYPE_BY_NAME["telemetry"]
    temperature_c: float | None = None
    humidity_pct: float | None = None
    pressure_hpa: float | None = None
    co2_ppm: int | None = None
    voc_index: int | None = None
    meter_pulses: int | None = None
    battery_mv: int | None = None

    def to_json(self) -> JsonObject:
        return _bitmap_json(TELEMETRY_FIELDS, self)

    @classmethod
    def from_json(cls, fields: Any) -> Telemetry:
        """The report of a JSON object; a key absent or null is a field the board lacks."""
        return cls(**_bitmap_values_of_json(TELEMETRY_FIELDS, fields, "telemetry"))


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """A configuration downlink: the settings to change, None for those kept (CONFIG_FIELDS)."""

    msg_type: ClassVar[MessageType] = TYPE_BY_NAME["config"]
    report_interval_s: int | None = None
    status_interval_s: int | None = None
    spreading_factor: int | None = None
    tx_power_dbm: int | None = None
    badge_retap_s: int | None = None
    checkin_direction: str | None = None  # one of DIRECTIONS
    reboot: bool = False

    def to_json(self) -> JsonObject:
        return _bitmap_json(CONFIG_FIELDS, self)

    @classmethod
    def from_json(cls, fields: Any) -> Config:
        """The downlink of a JSON object; a key absent or null is a setting kept, `reboot` absent is False."""
        return cls(**_bitmap_values_of_json(CONFIG_FIELDS, fields, "config"))


# --- status --------------------------------------------------------------------------------
_STATUS_COUNTERS = (
    "queue_depth",
    "checkins_dropped",
    "radio_errors",
    "reader_errors",
    "flash_errors",
    "duty_cycle_deferrals",
    "config_digest",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Status:
    """A node's health: its firmware, why it last reset, and its counters since boot."""

    msg_type: ClassVar[MessageType] = TYPE_BY_NAME["status"]
    firmware: str  # MAJOR.MINOR.PATCH, each 0-255
    uptime_s: int
    reset_cause: str = "unknown"  # one of RESET_CAUSES
    sensor_faults: tuple[str, ...] = ()  # names of the TELEMETRY_FIELDS whose sensor did not answer
    queue_depth: int = 0  # check-ins waiting for an ACK
    checkins_dropped: int = 0  # check-ins lost because the queue was full
    radio_errors: int = 0
    reader_errors: int = 0
    flash_errors: int = 0  # file writes the flash refused (full or failing): journal records, config saves
    duty_cycle_deferrals: int = 0  # frames held back to respect the duty cycle
    config_digest: int = 0  # config_digest() of the last config downlink applied, 0 before any
    next_downlink_counter: int = 0  # the lowest downlink counter the node accepts next

    def to_json(self) -> JsonObject:
        return {
            "firmware": self.firmware,
            "uptime_s": self.uptime_s,
            "reset_cause": self.reset_cause,
            "sensor_faults": list(self.sensor_faults),
            "queue_depth": self.queue_depth,
            "checkins_dropped": self.checkins_dropped,
            "radio_errors": self.radio_errors,
            "reader_errors": self.reader_errors,
            "flash_errors": self.flash_errors,
            "duty_cycle_deferrals": self.duty_cycle_deferrals,
            "config_digest": self.config_digest,
            "next_downlink_counter": self.next_downlink_counter,
        }

    @classmethod
    def from_json(cls, fields: Any) -> Status:
        """The status of a JSON object; raises CodecError if it is not shaped as one."""
        _no_unknown(fields, _STATUS_KEYS, "a status frame")
        faults = fields.get("sensor_faults", [])
        if not isinstance(faults, list):
            raise CodecError("bad_value", f"sensor_faults must be a list of telemetry field names, got {faults!r}")
        return cls(
            firmware=_require(fields, "firmware", "a status frame"),
            uptime_s=_require(fields, "uptime_s", "a status frame"),
            reset_cause=fields.get("reset_cause", "unknown"),
            sensor_faults=tuple(faults),
            **{name: fields.get(name, 0) for name in _STATUS_COUNTERS},
            next_downlink_counter=fields.get("next_downlink_counter", 0),
        )


_STATUS_KEYS = {field.name for field in dataclasses.fields(Status)}


# --- ACK -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class Ack:
    """The gateway's answer to an uplink that asked for it, with its time if the node asked."""

    msg_type: ClassVar[MessageType] = TYPE_BY_NAME["ack"]
    acked_counter16: int  # the low 16 bits of the acknowledged uplink's counter
    gateway_time: int | None = None  # Unix time, seconds

    def to_json(self) -> JsonObject:
        if self.gateway_time is None:
            return {"acked_counter16": self.acked_counter16}
        return {"acked_counter16": self.acked_counter16, "gateway_time": self.gateway_time}

    @classmethod
    def from_json(cls, fields: Any) -> Ack:
        """The ACK of a JSON object; `gateway_time` absent or null is an ACK without the time."""
        _no_unknown(fields, {"acked_counter16", "gateway_time"}, "an ACK")
        return cls(
            acked_counter16=_require(fields, "acked_counter16", "an ACK"), gateway_time=fields.get("gateway_time")
        )


Message = CheckinBatch | Telemetry | Status | Ack | Config
MESSAGE_CLASSES: dict[str, type[Message]] = {
    cls.msg_type.name: cls for cls in (CheckinBatch, Telemetry, Status, Ack, Config)
}


def _names(items: tuple) -> list[str]:
    return [item.name for item in items]


# The bitmap messages hold their table's fields, in bit order: the table in schema.py is the contract.
assert _names(dataclasses.fields(Telemetry)) == _names(TELEMETRY_FIELDS), "Telemetry must follow TELEMETRY_FIELDS"
assert _names(dataclasses.fields(Config)) == _names(CONFIG_FIELDS), "Config must follow CONFIG_FIELDS"


def message_from_json(msg_type: str, fields: Any) -> Message:
    """The `msg_type` message of its JSON form; raises CodecError if the type or the shape is wrong."""
    cls = MESSAGE_CLASSES.get(msg_type)
    if cls is None:
        raise CodecError("unknown_type", f"no message type {msg_type!r}; known: {', '.join(TYPE_BY_NAME)}")
    return cls.from_json(fields)


# --- bytes -----------------------------------------------------------------------------------
def encode_body(message: Message) -> bytes:
    """The body of `message`; raises CodecError when a value does not fit the contract."""
    to_raw = _RAW_OF_MESSAGE.get(type(message))
    if to_raw is None:
        raise CodecError("unknown_type", f"{message!r} is none of the message classes {', '.join(TYPE_BY_NAME)}")
    raw, size = to_raw(message)
    name = message.msg_type.name
    try:
        return COMPILED_BODY_SCHEMAS[name].build(raw, size=size)
    except (ConstructError, struct.error) as error:
        raise CodecError("bad_value", f"{name}: {error}") from None


def decode_body(msg_type: str, body: bytes) -> Message | CodecError:
    """The `msg_type` message of a body, or the CodecError that says why it is not one."""
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
        return _MESSAGE_OF_RAW[msg_type](raw)
    except CodecError as error:
        return error


def _check_size(msg_type: str, size: int) -> CodecError | None:
    if msg_type == "checkin":
        count, rest = divmod(size - CHECKIN_HEAD_SIZE, CHECKIN_SIZE)
        if rest or not 1 <= count <= MAX_CHECKINS:
            return CodecError(
                "bad_length",
                f"check-in body of {size} bytes is not {CHECKIN_HEAD_SIZE} then 1 to {MAX_CHECKINS} events"
                f" of {CHECKIN_SIZE}",
            )
    elif msg_type == "status" and size != STATUS_SIZE:
        return CodecError("bad_length", f"status body is {STATUS_SIZE} bytes, got {size}")
    elif msg_type == "ack" and size not in ACK_SIZES:
        return CodecError("bad_length", f"ACK body is 2 or 6 bytes, got {size}")
    elif size == 0:
        return CodecError("bad_length", f"{msg_type} body is empty")
    return None


def config_digest(body: bytes) -> int:
    """What a node's status reports once it applied the config downlink whose body is `body`."""
    return int.from_bytes(hashlib.sha256(body).digest()[:CONFIG_DIGEST_SIZE], "little")


# --- enumerations and checks ---------------------------------------------------------------
def _name_of(names: tuple[T, ...], code: int, what: str) -> T:
    if code >= len(names):
        raise CodecError("bad_value", f"{what} code {code} is not one of {len(names)} known")
    return names[code]


def _code_of(names: tuple[Any, ...], name: Any, what: str) -> int:
    if name not in names:
        raise CodecError("bad_value", f"{what} {name!r} is not one of {', '.join(map(str, names))}")
    return names.index(name)


def _require(fields: JsonObject, key: str, what: str) -> Any:
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


# --- check-in bytes ------------------------------------------------------------------------
# The oldest age the field holds: minutes round to the nearest, a half minute up (as the node's integer
# arithmetic does), so the last 29 s past AGE_MAX_S still round to raw 65535.
AGE_ROUNDED_MAX_S = AGE_MAX_S + 29


def age_to_raw(age_s: int) -> int:
    """The 2-byte age code: seconds below 32768, then minutes, rounded to the nearest, a half minute
    up; saturates at 23.1 days."""
    if age_s < AGE_SECONDS_LIMIT:
        return age_s
    return AGE_SECONDS_LIMIT + min((age_s - AGE_SECONDS_LIMIT + 30) // 60, 0x7FFF)


def age_from_raw(raw: int) -> int:
    if raw < AGE_SECONDS_LIMIT:
        return raw
    return AGE_SECONDS_LIMIT + (raw - AGE_SECONDS_LIMIT) * 60


def _checkins_to_raw(batch: CheckinBatch) -> tuple[dict, int]:
    checkins = batch.checkins
    if not isinstance(checkins, tuple | list) or not 1 <= len(checkins) <= MAX_CHECKINS:
        raise CodecError("bad_value", f"a check-in frame holds 1 to {MAX_CHECKINS} check-ins")
    events = []
    for event in checkins:
        if not isinstance(event, Checkin):
            raise CodecError("bad_value", f"a check-in frame holds Checkin values, got {event!r}")
        token = event.badge_token
        if not isinstance(token, bytes) or len(token) != BADGE_TOKEN_SIZE:
            raise CodecError("bad_value", f"badge_token must be {BADGE_TOKEN_SIZE} bytes, got {token!r}")
        if not isinstance(event.age_is_bound, bool):
            raise CodecError("bad_value", f"age_is_bound must be true or false, got {event.age_is_bound!r}")
        tag = (
            _code_of(DIRECTIONS, event.direction, "direction") << 6
            | (TAG_AGE_IS_BOUND if event.age_is_bound else 0)
            | _code_of(TAG_TYPES, event.tag_type, "tag_type") << 2
            | _code_of(UID_LENGTHS, event.uid_length, "uid_length")
        )
        age_s = _whole(event.age_s, 0, AGE_ROUNDED_MAX_S, "age_s")
        events.append({"tag": tag, "badge_token": token, "age": age_to_raw(age_s)})
    first = _whole(batch.first_number16, 0, 0xFFFF, "first_number16")
    return {"first_number16": first, "checkins": events}, CHECKIN_HEAD_SIZE + len(events) * CHECKIN_SIZE


def _checkins_from_raw(raw: Any) -> CheckinBatch:
    return CheckinBatch(
        raw.first_number16,
        tuple(
            Checkin(
                badge_token=event.badge_token,
                tag_type=_name_of(TAG_TYPES, (event.tag >> 2) & TAG_TYPE_MASK, "tag_type"),
                direction=_name_of(DIRECTIONS, event.tag >> 6, "direction"),
                uid_length=_name_of(UID_LENGTHS, event.tag & 0x03, "uid_length"),
                age_s=age_from_raw(event.age),
                age_is_bound=bool(event.tag & TAG_AGE_IS_BOUND),
            )
            for event in raw.checkins
        ),
    )


# --- presence-bitmap bytes (telemetry, config) ---------------------------------------------
@functools.cache
def field_range(field: BitmapField) -> tuple[int, int]:
    if field.fmt is None:  # callers deal with flags before asking
        raise ValueError(f"{field.name} is a flag: it carries no value, so it has no range")
    size = field.fmt.sizeof()
    signed = field.fmt.fmtstr[-1].islower()  # struct format: b/h/i signed, B/H/I unsigned
    low, high = (-(1 << (8 * size - 1)), (1 << (8 * size - 1)) - 1) if signed else (0, (1 << (8 * size)) - 1)
    return (low if field.raw_min is None else field.raw_min, high if field.raw_max is None else field.raw_max)


def _value_to_raw(field: BitmapField, value: Any) -> int:
    if field.enum:
        return _code_of(field.enum, value, field.name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
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


def _bitmap_json(table: tuple[BitmapField, ...], message: Telemetry | Config) -> JsonObject:
    # A flag field (no bytes, e.g. reboot) is in the JSON form only when it is set.
    fields = {}
    for field in table:
        value = getattr(message, field.name)
        if value is not None and value is not False:
            fields[field.name] = value
    return fields


def _bitmap_values_of_json(table: tuple[BitmapField, ...], fields: Any, what: str) -> dict[str, Any]:
    _no_unknown(fields, {f.name for f in table}, what)
    flags = {f.name for f in table if f.fmt is None}
    return {name: False if name in flags and value is None else value for name, value in fields.items()}


def _bitmap_to_raw(table: tuple[BitmapField, ...], message: Telemetry | Config, what: str) -> tuple[dict, int]:
    raw: dict[str, Any] = {"present": 0}
    for bit, field in enumerate(table):
        value = getattr(message, field.name)
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


def _bitmap_values_of_raw(table: tuple[BitmapField, ...], raw: Any, what: str) -> dict[str, Any]:
    known_bits = (1 << len(table)) - 1
    if raw.present & ~known_bits & 0xFF or raw.present & RESERVED_BITMAP_BIT:
        raise CodecError("unknown_field", f"{what} presence bitmap {raw.present:#04x} names unknown fields")
    if not raw.present:
        raise CodecError("bad_value", f"{what} presence bitmap is empty")
    values: dict[str, Any] = {}
    for bit, field in enumerate(table):
        if raw.present & (1 << bit):
            values[field.name] = True if field.fmt is None else _raw_to_value(field, raw[field.name])
    return values


# --- status bytes --------------------------------------------------------------------------
def _status_to_raw(status: Status) -> tuple[dict, int]:
    version = str(status.firmware).split(".")
    if len(version) != 3 or not all(part.isdigit() and int(part) < 256 for part in version):
        raise CodecError("bad_value", f"firmware must read MAJOR.MINOR.PATCH, each 0-255, got {status.firmware!r}")
    faults = 0
    names = tuple(f.name for f in TELEMETRY_FIELDS)
    if not isinstance(status.sensor_faults, tuple | list):
        raise CodecError("bad_value", f"sensor_faults must be telemetry field names, got {status.sensor_faults!r}")
    for name in status.sensor_faults:
        faults |= 1 << _code_of(names, name, "sensor_faults entry")
    raw = {
        "firmware_major": int(version[0]),
        "firmware_minor": int(version[1]),
        "firmware_patch": int(version[2]),
        "uptime_s": _whole(status.uptime_s, 0, 0xFFFFFFFF, "uptime_s"),
        "reset_cause": _code_of(RESET_CAUSES, status.reset_cause, "reset_cause"),
        "sensor_faults": faults,
    }
    for name in _STATUS_COUNTERS:
        raw[name] = _whole(getattr(status, name), 0, 0xFFFF, name)
    raw["next_downlink_counter"] = _whole(status.next_downlink_counter, 0, 0xFFFFFFFF, "next_downlink_counter")
    return raw, STATUS_SIZE


def _status_from_raw(raw: Any) -> Status:
    if raw.sensor_faults >> len(TELEMETRY_FIELDS):
        raise CodecError("unknown_field", f"sensor_faults {raw.sensor_faults:#04x} names unknown sensors")
    return Status(
        firmware=f"{raw.firmware_major}.{raw.firmware_minor}.{raw.firmware_patch}",
        uptime_s=raw.uptime_s,
        reset_cause=_name_of(RESET_CAUSES, raw.reset_cause, "reset_cause"),
        sensor_faults=tuple(f.name for bit, f in enumerate(TELEMETRY_FIELDS) if raw.sensor_faults & (1 << bit)),
        queue_depth=raw.queue_depth,
        checkins_dropped=raw.checkins_dropped,
        radio_errors=raw.radio_errors,
        reader_errors=raw.reader_errors,
        flash_errors=raw.flash_errors,
        duty_cycle_deferrals=raw.duty_cycle_deferrals,
        config_digest=raw.config_digest,
        next_downlink_counter=raw.next_downlink_counter,
    )


# --- ACK bytes -----------------------------------------------------------------------------
def _ack_to_raw(ack: Ack) -> tuple[dict, int]:
    acked = _whole(ack.acked_counter16, 0, 0xFFFF, "acked_counter16")
    time = ack.gateway_time
    if time is not None:
        time = _whole(time, 0, 0xFFFFFFFF, "gateway_time")
    return {"acked_counter16": acked, "gateway_time": time}, ACK_SIZES[time is not None]


def _ack_from_raw(raw: Any) -> Ack:
    return Ack(acked_counter16=raw.acked_counter16, gateway_time=raw.gateway_time)


_RAW_OF_MESSAGE: dict[type, Callable[[Any], tuple[dict, int]]] = {
    CheckinBatch: _checkins_to_raw,
    Telemetry: lambda message: _bitmap_to_raw(TELEMETRY_FIELDS, message, "telemetry"),
    Status: _status_to_raw,
    Ack: _ack_to_raw,
    Config: lambda message: _bitmap_to_raw(CONFIG_FIELDS, message, "config"),
}
_MESSAGE_OF_RAW: dict[str, Callable[[Any], Message]] = {
    "checkin": _checkins_from_raw,
    "telemetry": lambda raw: Telemetry(**_bitmap_values_of_raw(TELEMETRY_FIELDS, raw, "telemetry")),
    "status": _status_from_raw,
    "ack": _ack_from_raw,
    "config": lambda raw: Config(**_bitmap_values_of_raw(CONFIG_FIELDS, raw, "config")),
}
