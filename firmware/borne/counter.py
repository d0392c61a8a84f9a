"""The node's frame counters, kept in NVS so that a counter is never used twice.

Uplink: NVS holds a bound, the first counter not yet allowed. `next()` hands out counters
below it and, before handing out the bound itself, commits a new bound STEP further on.
At boot the node resumes at the stored bound: the counters between the last one sent and
the bound are skipped (at most STEP per reboot), none is reused, and NVS is written once
every STEP frames. A power cut between the NVS write and its commit loses the new bound,
but no counter at or beyond the old one was returned before the commit.

Downlink: the last downlink counter accepted, committed on each accepted downlink (rare),
for `frame.Downlink.read(frame, counter.downlink)`.

Both are stored as 4-byte little-endian blobs: NVS's i32 is signed, the counters are not.
"""

import struct

import esp32
from micropython import const

from borne.contract import MAX_COUNTER

STEP = const(64)  # frames per NVS write; also the most counters a reboot skips
NVS_NAMESPACE = "borne"
_UP_KEY = "up_bound"
_DOWN_KEY = "down_last"
NVS_KEYS = (_UP_KEY, _DOWN_KEY)  # every key a FrameCounter writes
_NOT_FOUND = const(-0x1102)  # ESP_ERR_NVS_NOT_FOUND


class FrameCounter:
    """The 32-bit uplink counter and the last accepted downlink counter of one node."""

    def __init__(self, namespace=NVS_NAMESPACE, step=STEP, resume_at=None):
        """`resume_at`: the next counter kept in RTC memory over a deep sleep, which spares a
        jump of up to `step` at each wake; ignored unless it lies under the stored bound."""
        self._nvs = esp32.NVS(namespace)
        self._step = step
        self._buf = bytearray(4)  # the one buffer of every NVS read and write
        bound = self._read(_UP_KEY)
        self._next = 0 if bound is None else bound
        self._bound = self._next  # nothing may be used before a new bound is committed
        if bound is not None and resume_at is not None and bound - step <= resume_at < bound:
            self._next = resume_at  # counters from it up to the bound are unused, and still allowed
        self.downlink = self._read(_DOWN_KEY)  # None until the first downlink is accepted

    @property
    def peek(self):
        """The counter that `next()` will return."""
        return self._next

    def next(self):
        """The counter of the next uplink; commits a new bound first when it needs one."""
        counter = self._next
        if counter >= MAX_COUNTER:  # the bound is stored in 32 bits, so the last counter stays unused
            raise OverflowError("frame counter spent: provision new keys")
        if counter >= self._bound:
            bound = min(counter + self._step, MAX_COUNTER)
            self._write(_UP_KEY, bound)
            self._bound = bound
        self._next = counter + 1
        return counter

    @property
    def next_downlink(self):
        """The lowest downlink counter accepted next (0 before any), which status frames report: a
        gateway that lost its state continues from it."""
        return 0 if self.downlink is None else min(self.downlink + 1, MAX_COUNTER)

    def accept_downlink(self, counter):
        """Store `counter` as the last accepted downlink counter (before acting on the frame)."""
        self._write(_DOWN_KEY, counter)
        self.downlink = counter

    def _read(self, key):
        try:
            if self._nvs.get_blob(key, self._buf) != 4:
                return None
        except OSError as error:
            if error.args[0] == _NOT_FOUND:
                return None
            raise
        return struct.unpack_from("<I", self._buf)[0]

    def _write(self, key, value):
        struct.pack_into("<I", self._buf, 0, value)
        self._nvs.set_blob(key, self._buf)
        self._nvs.commit()
