"""Whole air frames: the envelope around a body, its MIC and its encryption.

    header(1) | device id(2, LE) | counter low 16 bits(2, LE) | body | MIC(4)
    header(1) | device id(2, LE) | counter(4, LE) | body | MIC(4)      (types with full_counter)

`build_frame` is what a node (or a gateway sending a downlink) does; `read_envelope`
then `open_envelope` is what the receiver does: the first needs no key and tells
which device and counter the frame claims, the second verifies the MIC against the
full counter resolved from the receiver's state, decrypts and decodes.
"""

from __future__ import annotations

from dataclasses import dataclass

from construct import GreedyBytes, Int8ul, Int16ul, Int32ul, Struct

from .counter import ALL_SEEN, MAX_COUNTER_GAP, resolve_counter, resolve_full_counter
from .crypto import DOWN, MIC_SIZE, UP, DeviceKeys, compute_mic, crypt_body, mic_matches
from .errors import CodecError
from .messages import JsonObject, Message, decode_body, encode_body
from .schema import (
    ENVELOPE_SIZE,
    FLAG_ACK_REQUESTED,
    FLAG_ENCRYPTED,
    FLAG_TIME_REQUESTED,
    FULL_COUNTER_EXTRA,
    MAX_FRAME_SIZE,
    TYPE_BY_CODE,
    UPLINK_ONLY_FLAGS,
    VERSION,
    MessageType,
)

# The bytes the MIC covers; the 4-byte MIC follows them and is checked on the raw bytes.
Envelope = Struct(
    "header" / Int8ul,
    "device_id" / Int16ul,
    "counter16" / Int16ul,
    "body" / GreedyBytes,
)
COMPILED_ENVELOPE = Envelope.compile()
COMPILED_FULL_ENVELOPE = Struct(
    "header" / Int8ul,
    "device_id" / Int16ul,
    "counter" / Int32ul,
    "body" / GreedyBytes,
).compile()


@dataclass(frozen=True)
class SealedEnvelope:
    """What a frame claims before any key is used: who sent it, which counter, which type."""

    msg_type: MessageType
    flags: int
    device_id: int
    counter16: int
    body: bytes  # still encrypted when FLAG_ENCRYPTED is set
    mic: bytes
    signed: bytes  # every byte the MIC covers
    full_counter: int | None = None  # the whole counter, for a type that carries it

    @property
    def direction(self) -> int:
        return self.msg_type.direction


@dataclass(frozen=True, slots=True)
class Frame:
    """A verified, decrypted and decoded frame: the message and what its envelope said."""

    message: Message
    device_id: int
    counter: int
    encrypted: bool
    ack_requested: bool
    time_requested: bool

    @property
    def msg_type(self) -> str:
        return self.message.msg_type.name

    @property
    def direction(self) -> int:
        return self.message.msg_type.direction

    def to_json(self) -> JsonObject:
        return {
            "type": self.msg_type,
            "direction": "up" if self.direction == UP else "down",
            "device_id": self.device_id,
            "counter": self.counter,
            "encrypted": self.encrypted,
            "ack_requested": self.ack_requested,
            "time_requested": self.time_requested,
            "fields": self.message.to_json(),
        }


def header_byte(msg_type: MessageType, flags: int) -> int:
    return VERSION << 6 | msg_type.code << 3 | flags


def build_frame(
    message: Message,
    device_id: int,
    counter: int,
    keys: DeviceKeys,
    *,
    encrypt: bool | None = None,
    ack_requested: bool = False,
    time_requested: bool = False,
) -> bytes:
    """The bytes on air of a message; `encrypt` defaults to its type's default.

    Raises CodecError("bad_value") for values or options the contract cannot carry.
    """
    if not isinstance(message, Message):
        raise CodecError("unknown_type", f"{message!r} is none of the message classes")
    kind = message.msg_type
    if not 0 <= device_id <= 0xFFFF:
        raise CodecError("bad_value", f"device id must be 0-65535, got {device_id}")
    if not 0 <= counter <= 0xFFFFFFFF:
        raise CodecError("bad_value", f"counter must be 0-4294967295, got {counter}")
    if kind.direction == DOWN and (ack_requested or time_requested):
        raise CodecError("bad_value", "only uplinks can request an ACK or the time")
    encrypt = kind.encrypted_by_default if encrypt is None else encrypt
    flags = (
        (FLAG_ENCRYPTED if encrypt else 0)
        | (FLAG_ACK_REQUESTED if ack_requested else 0)
        | (FLAG_TIME_REQUESTED if time_requested else 0)
    )
    return seal_body(kind, flags, device_id, counter, encode_body(message), keys)


def seal_body(kind: MessageType, flags: int, device_id: int, counter: int, body: bytes, keys: DeviceKeys) -> bytes:
    """Wrap an already encoded body: encrypt it if the flags say so, add the envelope and MIC.

    `build_frame` is the way to send a message; this step alone lets tests and
    vectors seal bodies the codec would refuse to build.
    """
    if flags & FLAG_ENCRYPTED:
        body = crypt_body(keys.enc_key, kind.direction, device_id, counter, body)
    header = header_byte(kind, flags)
    if kind.full_counter:
        signed = COMPILED_FULL_ENVELOPE.build(
            {"header": header, "device_id": device_id, "counter": counter, "body": body}
        )
    else:
        signed = COMPILED_ENVELOPE.build(
            {"header": header, "device_id": device_id, "counter16": counter & 0xFFFF, "body": body}
        )
    if len(signed) + MIC_SIZE > MAX_FRAME_SIZE:
        raise CodecError("too_long", f"{len(signed) + MIC_SIZE} bytes on air, more than {MAX_FRAME_SIZE}")
    return signed + compute_mic(keys.mic_key, kind.direction, device_id, counter, signed)


def read_envelope(raw: bytes, direction: int = UP) -> SealedEnvelope | CodecError:
    """The envelope of `raw`, checked for everything that needs no key."""
    if len(raw) < ENVELOPE_SIZE + 1:
        return CodecError("truncated", f"{len(raw)} bytes, a frame has at least {ENVELOPE_SIZE + 1}")
    if len(raw) > MAX_FRAME_SIZE:
        return CodecError("too_long", f"{len(raw)} bytes, a frame has at most {MAX_FRAME_SIZE}")
    signed = raw[:-MIC_SIZE]
    version, code, flags = raw[0] >> 6, (raw[0] >> 3) & 0x07, raw[0] & 0x07
    if version != VERSION:
        return CodecError("unknown_version", f"version {version}, this codec speaks {VERSION}")
    kind = TYPE_BY_CODE.get(code)
    if kind is None:
        return CodecError("unknown_type", f"message type code {code}")
    if kind.direction != direction:
        article = "an" if kind.name[0] in "aeiou" else "a"
        travels = "down" if kind.direction else "up"
        return CodecError("wrong_direction", f"{article} {kind.name} frame travels {travels}")
    if kind.direction == DOWN and flags & UPLINK_ONLY_FLAGS:
        return CodecError("bad_value", f"downlink flags {flags:#x} set bits only uplinks use")
    if not kind.full_counter:
        envelope = COMPILED_ENVELOPE.parse(signed)
        return SealedEnvelope(
            kind, flags, envelope.device_id, envelope.counter16, envelope.body, raw[-MIC_SIZE:], signed
        )
    if len(raw) < ENVELOPE_SIZE + FULL_COUNTER_EXTRA + 1:
        return CodecError("truncated", f"{len(raw)} bytes, a {kind.name} frame has at least {ENVELOPE_SIZE + 3}")
    full = COMPILED_FULL_ENVELOPE.parse(signed)
    return SealedEnvelope(
        kind, flags, full.device_id, full.counter & 0xFFFF, full.body, raw[-MIC_SIZE:], signed, full.counter
    )


def open_envelope(
    envelope: SealedEnvelope,
    keys: DeviceKeys | None,
    last_counter: int | None,
    max_gap: int = MAX_COUNTER_GAP,
    seen_below: int = ALL_SEEN,
) -> Frame | CodecError:
    """Verify, decrypt and decode; `last_counter` is the highest counter accepted from the sender.

    `seen_below` is the receive window below it (see `counter.py`); the default accepts
    nothing below `last_counter`. The MIC is checked before anything is decrypted or
    decoded, and nothing here changes state: the caller stores `frame.counter` once it
    has accepted the frame.
    """
    if keys is None:
        return CodecError("unknown_device", f"no key for device {envelope.device_id}")
    if envelope.full_counter is not None:
        counter = resolve_full_counter(last_counter, envelope.full_counter, seen_below)
    else:
        counter = resolve_counter(last_counter, envelope.counter16, max_gap, seen_below)
    if isinstance(counter, CodecError):
        return counter
    kind = envelope.msg_type
    if not mic_matches(keys.mic_key, kind.direction, envelope.device_id, counter, envelope.signed, envelope.mic):
        return CodecError("bad_mic", f"MIC of device {envelope.device_id} counter {counter} does not verify")
    body = envelope.body
    if envelope.flags & FLAG_ENCRYPTED:
        body = crypt_body(keys.enc_key, kind.direction, envelope.device_id, counter, body)
    message = decode_body(kind.name, body)
    if isinstance(message, CodecError):
        return message
    return Frame(
        message=message,
        device_id=envelope.device_id,
        counter=counter,
        encrypted=bool(envelope.flags & FLAG_ENCRYPTED),
        ack_requested=bool(envelope.flags & FLAG_ACK_REQUESTED),
        time_requested=bool(envelope.flags & FLAG_TIME_REQUESTED),
    )


def open_frame(
    raw: bytes, keys: DeviceKeys | None, last_counter: int | None, direction: int = UP
) -> Frame | CodecError:
    """`read_envelope` then `open_envelope`, for a receiver that already knows the sender's keys."""
    envelope = read_envelope(raw, direction)
    if isinstance(envelope, CodecError):
        return envelope
    return open_envelope(envelope, keys, last_counter)
