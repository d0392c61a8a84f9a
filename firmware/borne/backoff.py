"""Retry delays: exponential backoff with full jitter, in whole milliseconds.

The n-th retry (0 for the first) waits a uniform random time in [0, ceiling_ms(n)], where
the ceiling doubles from _BASE_MS up to _CAP_MS. Full jitter spreads nodes that lost the
same gateway ACK (a collision, a gateway reboot) so that they do not collide again.
On an ESP32, `random` is seeded from the hardware RNG at boot: nodes do not share a sequence.
"""

import random

from micropython import const

_BASE_MS = const(2000)
_CAP_MS = const(600_000)  # 10 minutes
_BITS = const(30)  # getrandbits gives at most 32; 30 keeps the value a small int on the heap


def ceiling_ms(attempt, base_ms=_BASE_MS, cap_ms=_CAP_MS):
    """The longest wait before retry `attempt` (0, 1, …): base_ms * 2**attempt, at most cap_ms."""
    # base_ms << attempt >= cap_ms, without the shift: from attempt 20 it would pass 2**30, a big int
    if attempt >= _BITS or base_ms > (cap_ms - 1) >> attempt:
        return cap_ms
    return base_ms << attempt


def delay_ms(attempt, base_ms=_BASE_MS, cap_ms=_CAP_MS):
    """A random wait in [0, ceiling_ms(attempt)] before retry `attempt`."""
    return uniform_ms(ceiling_ms(attempt, base_ms, cap_ms))


def uniform_ms(span_ms):
    """A random whole number of milliseconds in [0, span_ms]: also the jitter of periodic reports,
    so that nodes powered on together do not send together ever after."""
    span = span_ms + 1
    # Rejection keeps the draw uniform: take the smallest power of two above span, redraw beyond it.
    bits = 1
    while 1 << bits < span:
        bits += 1
    while True:
        draw = random.getrandbits(bits)
        if draw < span:
            return draw
