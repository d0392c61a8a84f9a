"""Rebuilding the 32-bit frame counter from the 16 bits that travel on air, and the receive window.

A receiver remembers, per sender, the highest counter it accepted (the top) and which of the
`WINDOW_SIZE` counters just below the top it accepted too (`seen_below`, bit i for top - 1 - i):
the sliding window of RFC 4303 §3.4.3 / RFC 6479. A frame newer than the top moves the window;
a frame below the top is accepted once, if the window still covers it. The node reads its
downlinks with every bit set (`ALL_SEEN`): nothing below the top is ever accepted there.
"""

from __future__ import annotations

from .errors import CodecError

# LoRaWAN 1.0's MAX_FCNT_GAP: a node may lose this many frames in a row and still be heard.
MAX_COUNTER_GAP = 16384
COUNTER_LIMIT = 1 << 32
# Counters below the top a late frame may still carry: one that took a slower path, or a
# check-in that waited while the node sent telemetry.
WINDOW_SIZE = 64
ALL_SEEN = (1 << WINDOW_SIZE) - 1  # a window that accepts nothing below its top


def resolve_counter(
    last: int | None, counter16: int, max_gap: int = MAX_COUNTER_GAP, seen_below: int = ALL_SEEN
) -> int | CodecError:
    """The full counter of a frame whose low 16 bits are `counter16`.

    `last` is the highest counter accepted from the device, or None when none was ever
    accepted (the device is new: its counter starts below 65536). `seen_below` says which
    of the WINDOW_SIZE counters below `last` were accepted too. The result is at most
    `max_gap` ahead of `last`, or one of the WINDOW_SIZE counters below it not yet seen.
    `last` itself, a counter seen, or one older than the window is a `replay`; one further
    ahead than `max_gap` a `counter_gap`.
    """
    if last is None:
        return counter16
    behind = (last - counter16) & 0xFFFF
    if behind == 0:
        return CodecError("replay", f"counter {last} is the last one accepted")
    if behind <= min(WINDOW_SIZE, last):
        if already_seen(last, seen_below, last - behind):
            return CodecError("replay", f"counter {last - behind} was accepted before (last accepted: {last})")
        return last - behind
    ahead = (counter16 - last) & 0xFFFF
    if ahead > 0x8000:
        return CodecError("replay", f"counter …{counter16:04x} is older than the window below {last}")
    if ahead > max_gap:
        return CodecError("counter_gap", f"counter is {ahead} ahead of {last}, more than {max_gap}")
    resolved = last + ahead
    if resolved >= COUNTER_LIMIT:
        return CodecError("replay", "the 32-bit counter is exhausted; the device needs new keys")
    return resolved


def resolve_full_counter(last: int | None, counter: int, seen_below: int = ALL_SEEN) -> int | CodecError:
    """The counter of a frame that carries all 32 bits of it: accepted if the window has not seen
    it, however far ahead of `last` (the MIC, checked next, proves the sender chose it)."""
    if last is not None and already_seen(last, seen_below, counter):
        return CodecError("replay", f"counter {counter} is not newer than the window at {last}")
    return counter


def already_seen(last: int, seen_below: int, counter: int) -> bool:
    """Whether a window at `last` refuses `counter` as old: it is `last`, a counter below it the
    window marks as accepted, or one below the window (or below zero)."""
    behind = last - counter
    if behind < 0:
        return False
    if behind == 0 or behind > WINDOW_SIZE or counter < 0:
        return True
    return bool(seen_below >> (behind - 1) & 1)


def slide_window(last: int | None, seen_below: int, counter: int) -> tuple[int, int]:
    """The window (top, seen_below) once `counter` is accepted; `counter` must not be `already_seen`.

    A device's first counter opens a full window: the receiver cannot know which counters
    below it were used, so it accepts none of them.
    """
    if last is None:
        return counter, ALL_SEEN
    if counter > last:
        shift = counter - last
        if shift > WINDOW_SIZE:
            return counter, 0
        return counter, ((seen_below << shift) | (1 << (shift - 1))) & ALL_SEEN
    if already_seen(last, seen_below, counter):
        raise ValueError(f"counter {counter} is not new to the window at {last}")
    return last, seen_below | 1 << (last - counter - 1)


def resolve_checkin_number(last: int | None, number16: int) -> int:
    """The full node-side number of a check-in whose low 16 bits are `number16`.

    `last` is the highest number the receiver published for the device (None before the
    first): the result is the number nearest to it with those low bits, at most 32768 below
    or 32767 above, and never below zero. A retry carries numbers at or below `last`; a
    node whose full queue dropped check-ins skips numbers ahead of it.
    """
    if last is None:
        return number16
    ahead = (number16 - last) & 0xFFFF
    if ahead < 0x8000:
        return last + ahead
    return max(last + ahead - 0x10000, number16)
