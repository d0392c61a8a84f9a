"""The bytes of every air frame body, as Construct schemas, and the tables behind them.

This file is the wire contract: the message types, the layouts of their bodies and
the meaning of every enumerated value. Schemas use only `this` expressions so that
`.compile()` turns the whole tree into Python (lambdas or BitStruct would fall back
to the slow interpreted path). Bit fields inside a byte are packed and unpacked in
`messages.py` from the tables below, which the JavaScript export reads as well.
"""

from __future__ import annotations

from dataclasses import dataclass

from construct import (
    Array,
    Bytes,
    Construct,
    If,
    Int8sl,
    Int8ul,
    Int16sl,
    Int16ul,
    Int32ul,
    Struct,
    Terminated,
    this,
)

from .crypto import BADGE_TOKEN_SIZE, DOWN, UP

VERSION = 2  # 2: check-ins carry their node-side number and say when an age is a bound
ENVELOPE_SIZE = 9  # header 1, device id 2, counter 2, MIC 4
# A type that carries its full counter has a 4-byte counter field: a receiver that lost the
# sender's counter, or heard nothing from it for longer than 16 bits resolve, learns it again.
FULL_COUNTER_EXTRA = 2
MAX_FRAME_SIZE = 250  # the largest PHY payload EU868 allows (SF7/SF8); see airtime.MAX_FRAME_BY_SF

# Header byte: version in bits 7-6, message type in bits 5-3, flags in bits 2-0.
FLAG_ENCRYPTED = 0x01
FLAG_ACK_REQUESTED = 0x02  # uplinks only: the node waits for an ACK in its receive window
FLAG_TIME_REQUESTED = 0x04  # uplinks only: the ACK must carry the gateway's time
UPLINK_ONLY_FLAGS = FLAG_ACK_REQUESTED | FLAG_TIME_REQUESTED


@dataclass(frozen=True)
class MessageType:
    """One kind of air frame: its code in the header, its direction, its default encryption."""

    name: str
    code: int
    direction: int
    encrypted_by_default: bool
    full_counter: bool = False  # the envelope carries the whole 32-bit counter, not its low 16 bits


MESSAGE_TYPES = (
    MessageType("checkin", 1, UP, encrypted_by_default=True),
    MessageType("telemetry", 2, UP, encrypted_by_default=False),
    MessageType("status", 3, UP, encrypted_by_default=False, full_counter=True),
    MessageType("ack", 4, DOWN, encrypted_by_default=False),
    MessageType("config", 5, DOWN, encrypted_by_default=False),
)
TYPE_BY_NAME = {t.name: t for t in MESSAGE_TYPES}
TYPE_BY_CODE = {t.code: t for t in MESSAGE_TYPES}

# --- Check-in -------------------------------------------------------------------------
# A body is the low 16 bits of the first check-in's number, then 1 to MAX_CHECKINS events of
# 11 bytes each: a tag byte, the badge token and the age of the event. The node numbers each
# check-in when the badge is read; the events of a frame carry consecutive numbers from the first.
# Tag byte: direction in bits 7-6, age-is-a-bound in bit 5, tag type in bits 4-2, UID length in 1-0.
DIRECTIONS = ("none", "in", "out")
TAG_TYPES = (
    "unknown",
    "mifare_classic",
    "mifare_ultralight",
    "ntag",
    "mifare_desfire",
    "mifare_plus",
    "iso14443_4",
)
UID_LENGTHS = (4, 7, 10)
# Set when the age crossed a reboot of the node: the time it was off is unknown and left out,
# so the age is a lower bound and the event happened at the time it gives or earlier.
TAG_AGE_IS_BOUND = 0x20
TAG_TYPE_MASK = 0x07  # tag type, bits 4-2 once shifted down
assert len(TAG_TYPES) <= TAG_TYPE_MASK + 1, "the tag type has three bits"
CHECKIN_HEAD_SIZE = 2  # the first check-in's number, low 16 bits
CHECKIN_SIZE = 1 + BADGE_TOKEN_SIZE + 2
MAX_CHECKINS = 16  # 187 bytes on air: fits SF7/SF8; airtime.max_checkins() caps it per SF

# The age field counts seconds up to AGE_SECONDS_LIMIT (9.1 h), then minutes above it,
# up to AGE_MAX_S (23.1 days): a check-in that waited out a long outage keeps its day
# and minute, and a fresh one its second, in 2 bytes.
AGE_SECONDS_LIMIT = 0x8000
AGE_MAX_S = AGE_SECONDS_LIMIT + 0x7FFF * 60

CheckinEvent = Struct("tag" / Int8ul, "badge_token" / Bytes(BADGE_TOKEN_SIZE), "age" / Int16ul)
CheckinBody = Struct(
    "first_number16" / Int16ul,
    "checkins" / Array((this._params.size - CHECKIN_HEAD_SIZE) // CHECKIN_SIZE, CheckinEvent),
    Terminated,
)


# --- Telemetry and config: a presence bitmap, then only the fields present -------------
@dataclass(frozen=True)
class BitmapField:
    """A field announced by one bit of a presence bitmap, in bit order.

    On the wire the field is an integer `raw`; its value is `raw / divisor` when
    `divisor` > 1, else `offset + raw * step`. A field with `fmt` None carries no
    bytes: its bit alone means True. `enum` names the values of an enumerated field.
    """

    name: str
    fmt: Construct | None
    divisor: int = 1
    step: int = 1
    offset: int = 0
    raw_min: int | None = None
    raw_max: int | None = None
    enum: tuple[str, ...] = ()
    unit: str = ""
    description: str = ""


TELEMETRY_FIELDS = (
    BitmapField("temperature_c", Int16sl, divisor=100, unit="°C", description="air temperature, 0.01 °C"),
    BitmapField("humidity_pct", Int8ul, divisor=2, raw_max=200, unit="%", description="relative humidity, 0.5 %"),
    BitmapField("pressure_hpa", Int16ul, divisor=10, unit="hPa", description="barometric pressure, 0.1 hPa"),
    BitmapField("co2_ppm", Int16ul, unit="ppm", description="CO2 concentration"),
    BitmapField("voc_index", Int16ul, raw_max=500, description="Sensirion VOC index, 1-500"),
    BitmapField("meter_pulses", Int32ul, description="energy meter pulse counter, wraps at 2^32"),
    BitmapField("battery_mv", Int8ul, step=10, offset=2000, unit="mV", description="battery voltage, 2000-4550 mV"),
)
# Bit 7 of both bitmaps is reserved for a second bitmap byte when fields are added.
RESERVED_BITMAP_BIT = 0x80

CONFIG_FIELDS = (
    BitmapField("report_interval_s", Int16ul, raw_min=10, unit="s", description="telemetry period"),
    BitmapField("status_interval_s", Int16ul, raw_min=60, unit="s", description="status period"),
    BitmapField("spreading_factor", Int8ul, raw_min=7, raw_max=12, description="LoRa spreading factor"),
    BitmapField("tx_power_dbm", Int8sl, raw_min=-9, raw_max=22, unit="dBm", description="transmit power"),
    BitmapField("badge_retap_s", Int16ul, unit="s", description="delay before the same badge checks in again"),
    BitmapField("checkin_direction", Int8ul, enum=DIRECTIONS, description="what this door's check-ins mean"),
    BitmapField("reboot", None, description="restart the node once this frame is accepted"),
)


def bitmap_schema(fields: tuple[BitmapField, ...]) -> Struct:
    """A body of a presence byte followed by the fields whose bits are set."""
    present = [f.name / If(this.present & (1 << bit), f.fmt) for bit, f in enumerate(fields) if f.fmt is not None]
    return Struct("present" / Int8ul, *present, Terminated)


# Bit 7 is reserved: a table that outgrows seven fields needs the second bitmap byte first.
assert len(TELEMETRY_FIELDS) <= 7 and len(CONFIG_FIELDS) <= 7, "presence bitmaps hold seven fields"

TelemetryBody = bitmap_schema(TELEMETRY_FIELDS)
ConfigBody = bitmap_schema(CONFIG_FIELDS)

# --- Status ------------------------------------------------------------------------------
RESET_CAUSES = ("unknown", "power_on", "hard", "watchdog", "deepsleep", "soft", "brownout", "crash")

_STATUS_LAYOUT = (
    "firmware_major" / Int8ul,
    "firmware_minor" / Int8ul,
    "firmware_patch" / Int8ul,
    "uptime_s" / Int32ul,
    "reset_cause" / Int8ul,
    "queue_depth" / Int16ul,  # check-ins waiting for an ACK
    "checkins_dropped" / Int16ul,  # check-ins lost because the queue was full, since boot
    "sensor_faults" / Int8ul,  # telemetry bitmap of the sensors that failed to answer
    "radio_errors" / Int16ul,
    "reader_errors" / Int16ul,
    "flash_errors" / Int16ul,  # file writes the flash refused (full or failing), since boot
    "duty_cycle_deferrals" / Int16ul,  # frames held back to respect the duty cycle
    "config_digest" / Int16ul,  # CONFIG_DIGEST of the last config body applied, 0 before any
    # The lowest downlink counter the node accepts next (the last it accepted + 1, 0 before any):
    # a gateway that lost its state continues its downlinks from there.
    "next_downlink_counter" / Int32ul,
)
StatusBody = Struct(*_STATUS_LAYOUT, Terminated)
STATUS_SIZE = Struct(*_STATUS_LAYOUT).sizeof()

# How a node shows which config downlink it applied: the first two bytes of the SHA-256 of the
# config body (as decrypted), little-endian. The same body resent has the same digest, so the
# gateway recognises its change whichever of its tries the node heard.
CONFIG_DIGEST_SIZE = 2

# --- ACK: the acknowledged uplink counter, and the gateway's time if the node asked ------
AckBody = Struct("acked_counter16" / Int16ul, "gateway_time" / If(this._params.size == 6, Int32ul), Terminated)
ACK_SIZES = (2, 6)

BODY_SCHEMAS: dict[str, Struct] = {
    "checkin": CheckinBody,
    "telemetry": TelemetryBody,
    "status": StatusBody,
    "ack": AckBody,
    "config": ConfigBody,
}
COMPILED_BODY_SCHEMAS = {name: schema.compile() for name, schema in BODY_SCHEMAS.items()}
