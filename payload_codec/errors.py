"""The one error type of the wire contract.

Decoders return a `CodecError` instead of raising it, so that a gateway can count
and report every rejected input by its reason; builders raise it, because a
caller that asks for an impossible frame has a bug to fix.
"""

from __future__ import annotations

# Every reason a frame or a serial record can be refused, with what it means.
REASONS: dict[str, str] = {
    "truncated": "shorter than its header and fields say it must be",
    "too_long": "longer than the contract allows",
    "bad_length": "a body whose length fits no layout of its type",
    "unknown_version": "the header names a protocol version this codec does not speak",
    "unknown_type": "the header names a message type that does not exist",
    "wrong_direction": "an uplink type where a downlink was expected, or the reverse",
    "unknown_device": "no key is known for this device id",
    "bad_mic": "the message integrity code does not verify: forged, corrupted or wrong key",
    "replay": "the frame counter is not newer than the last accepted one",
    "counter_gap": "the frame counter jumped further ahead than the allowed gap",
    "bad_value": "a field holds a value outside its range or enumeration",
    "unknown_field": "a presence bitmap names a field this codec does not know",
    "bad_crc": "a serial record whose CRC-16 does not match",
    "bad_cobs": "a serial record that is not valid COBS",
    "unknown_record": "a serial record type that does not exist",
}

# Which reasons each decoder can give: air frames, and records of the bridge's serial link.
FRAME_REASONS = frozenset(REASONS) - {"bad_crc", "bad_cobs", "unknown_record"}
RECORD_REASONS = frozenset(
    {"bad_crc", "bad_cobs", "unknown_record", "truncated", "too_long", "bad_length", "bad_value"}
)


class CodecError(Exception):
    """A frame or record refused by the codec, with a machine-readable `reason`.

    `reason` is one of `REASONS`; `detail` is a short human explanation.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown codec error reason {reason!r}")
        super().__init__(f"{reason}: {detail or REASONS[reason]}")
        self.reason = reason
        self.detail = detail or REASONS[reason]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CodecError) and (self.reason, self.detail) == (other.reason, other.detail)

    def __hash__(self) -> int:
        return hash((self.reason, self.detail))

    def __repr__(self) -> str:
        return f"CodecError({self.reason!r}, {self.detail!r})"
