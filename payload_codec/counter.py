"""Rebuilding the 32-bit frame counter from the 16 bits that travel on air."""

from __future__ import annotations

from .errors import CodecError

# LoRaWAN 1.0's MAX_FCNT_GAP: a node may lose this many frames in a row and still be heard.
MAX_COUNTER_GAP = 16384
COUNTER_LIMIT = 1 << 32


def resolve_counter(last: int | None, counter16: int, max_gap: int = MAX_COUNTER_GAP) -> int | CodecError:
    """The full counter of a frame whose low 16 bits are `counter16`.

    `last` is the last counter accepted from the device, or None when none was ever
    accepted (the device is new: its counter starts below 65536). The result is
    strictly newer than `last` and at most `max_gap` ahead of it; a frame at or
    behind `last` is a `replay`, one further ahead a `counter_gap`.
    """
    if last is None:
        return counter16
    ahead = (counter16 - last) & 0xFFFF
    if ahead == 0 or ahead > 0x8000:
        return CodecError("replay", f"counter …{counter16:04x} is not newer than {last}")
    if ahead > max_gap:
        return CodecError("counter_gap", f"counter is {ahead} ahead of {last}, more than {max_gap}")
    resolved = last + ahead
    if resolved >= COUNTER_LIMIT:
        return CodecError("replay", "the 32-bit counter is exhausted; the device needs new keys")
    return resolved
