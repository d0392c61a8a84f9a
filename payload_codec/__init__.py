"""Borne's wire contract: air frames, the bridge's serial records, keys and counters.

Everything that crosses the air or the bridge's USB link is defined here and only
here; the firmware's encoder and the exported JavaScript are held to it by the
shared vectors in `payload_codec/vectors/`. Each air message is a frozen dataclass
(`CheckinBatch` of `Checkin`s, `Telemetry`, `Status`, `Ack`, `Config`) with a JSON
form, `to_json()`/`from_json()`: the vectors' "fields".
"""

from .counter import ALL_SEEN, MAX_COUNTER_GAP, WINDOW_SIZE, already_seen, resolve_counter, slide_window
from .crypto import (
    DOWN,
    UP,
    DeviceKeys,
    badge_token,
    derive_badge_key,
    derive_device_keys,
)
from .errors import REASONS, CodecError
from .frame import (
    Frame,
    SealedEnvelope,
    build_frame,
    open_envelope,
    open_frame,
    read_envelope,
)
from .messages import (
    Ack,
    Checkin,
    CheckinBatch,
    Config,
    Message,
    Status,
    Telemetry,
    config_digest,
    decode_body,
    encode_body,
    message_from_json,
)
from .schema import AGE_MAX_S, MESSAGE_TYPES, TYPE_BY_NAME

__all__ = [
    "AGE_MAX_S",
    "ALL_SEEN",
    "DOWN",
    "MAX_COUNTER_GAP",
    "MESSAGE_TYPES",
    "REASONS",
    "TYPE_BY_NAME",
    "UP",
    "WINDOW_SIZE",
    "Ack",
    "Checkin",
    "CheckinBatch",
    "CodecError",
    "Config",
    "DeviceKeys",
    "Frame",
    "Message",
    "SealedEnvelope",
    "Status",
    "Telemetry",
    "already_seen",
    "badge_token",
    "build_frame",
    "config_digest",
    "decode_body",
    "derive_badge_key",
    "derive_device_keys",
    "encode_body",
    "message_from_json",
    "open_envelope",
    "open_frame",
    "read_envelope",
    "resolve_counter",
    "slide_window",
]
