"""Check-ins waiting for the gateway's ACK, kept on flash through any power cut.

Files, beside `path` (default "/checkins"):
  .log  an append-only journal of 24-byte records, each with its CRC-32:
          kind(1) | tag(1) | arg(4) | token(8) | boot(2) | clock(4) | crc32(4), little-endian
        P push: one event; arg = 0, or 1 + the position of the event it evicted (queue full),
          or 0xFFFFFFFF: refused (every queued event in flight), counted in `dropped`
        A ack: tag = events removed from the head; arg = counter of the frame ACKed
        B boot: a new boot id; H head of a compacted journal: arg = dropped so far,
          token[0:4] = last frame ACKed. The queue is the replay of the journal.
        A torn or damaged record fails its CRC and is skipped, alone: the records are fixed
        size. One push or ack appends one record; the journal is rewritten (to .new, then
        os.rename over .log) only after COMPACT_AFTER records, or at a boot that found a bad
        record or half that many.
  .fly  the frame in flight: counter(4) | events(1) | size(1) | frame | crc32(4), written
        to .tmp then renamed, before the frame is first transmitted. After a reboot the node
        sends these same bytes (same counter) again: the gateway re-ACKs a copy of the frame
        it accepted last and publishes nothing twice, where a rebuilt frame, with a new
        counter, would publish its events twice.

Age: the node has no clock that survives a power cut. Every record carries `clock`, the
seconds the node has been running summed over its boots (the largest clock in the journal,
plus the uptime of this boot). The age sent is clock now - clock of the event: exact for an
event of this boot, and for an older one a lower bound that leaves out the time the node was
off (and the end of that boot after its last record). Events stay in order; `exact(i)` says
which ages are exact.

Full queue: the new event is kept and the oldest one not in the frame in flight is evicted
(the frames in flight are already on air); `dropped` counts them, across reboots. If every
queued event is in flight, the new one is refused, and counted in `dropped` too.
"""

import os
import struct
from binascii import crc32

from micropython import const

from .contract import MAX_FRAME_SIZE

CAPACITY = const(128)  # events; a RAM copy of 15 bytes each
COMPACT_AFTER = const(512)  # records in the journal before it is rewritten (12 KiB)

_RECORD = const(24)
_CHECKED = const(20)  # bytes under the CRC
_LAYOUT = "<BBI"  # kind, tag, arg; then token at 6, boot and clock at 14
_STAMP = "<HI"
_SLOT = const(15)  # in RAM: tag(1) | token(8) | boot(2) | clock(4)
_FLY_HEAD = "<IBB"
_FLY_HEAD_SIZE = const(6)
_NONE = const(0xFFFFFFFF)
_PUSH = const(0x50)  # 'P'
_ACK = const(0x41)  # 'A'
_BOOT = const(0x42)  # 'B'
_HEAD = const(0x48)  # 'H'


PATH = "/checkins"
FILES = tuple(PATH + suffix for suffix in (".log", ".new", ".fly", ".tmp"))  # every file the queue writes


class CheckinQueue:
    """A bounded FIFO of check-ins (tag byte, 8-byte badge token, when) on flash.

    `now_s` arguments are the seconds since this boot (the scheduler's uptime clock).
    """

    def __init__(self, path=PATH, capacity=CAPACITY):
        self._log = path + ".log"
        self._new = path + ".new"
        self._fly_path = path + ".fly"
        self._tmp = path + ".tmp"
        self.capacity = capacity
        self._ring = bytearray(capacity * _SLOT)
        self._head = 0
        self.depth = 0
        self.dropped = 0
        self._rec = bytearray(_RECORD)
        self._rec_checked = memoryview(self._rec)[:_CHECKED]
        self._token_buf = bytearray(8)  # the token handed to batch()'s add
        self._records = 0  # in the journal file
        self._clock = 0  # the largest clock recorded
        self._last_acked = _NONE
        self._fly = bytearray(_FLY_HEAD_SIZE + MAX_FRAME_SIZE + 4)
        self._fly_view = memoryview(self._fly)
        self.flight_counter = None  # counter of the frame in flight, None when there is none
        self.flight_events = 0  # queued events (from the head) that it carries
        self._flight_size = 0
        for leftover in (self._new, self._tmp):
            _remove(leftover)
        self.boot = 0
        damaged = self._replay()
        self.boot = (self.boot + 1) & 0xFFFF
        self._base = self._clock  # this boot's clock starts where the journal's ends
        self._load_flight()
        if damaged or self._records >= COMPACT_AFTER // 2:
            self._compact()
        else:
            self._append(_BOOT, 0, 0, None, self.boot, self._base)

    # The queue.

    def push(self, tag, token, now_s):
        """Queue one check-in; evicts the oldest event not in flight if full (see `dropped`)."""
        evict = 0
        if self.depth >= self.capacity:
            if self.flight_events >= self.depth:
                self._append(_PUSH, tag, _NONE, token, self.boot, self._base + now_s)
                self.dropped += 1  # nothing can go: the new one is refused
                return False
            evict = self.flight_events + 1
        clock = self._base + now_s
        self._append(_PUSH, tag, evict, token, self.boot, clock)
        self._apply_push(tag, evict, self.boot, clock, self._rec, 6)
        return True

    def batch(self, add, max_n, now_s):
        """Call add(tag, token, age_s) for the oldest events, at most max_n; returns how many.

        `add` is typically an `Uplink.add_checkin` bound once; `token` is a buffer the queue reuses.
        """
        n = min(max_n, self.depth)
        token = self._token_buf
        now = self._base + now_s
        ring = self._ring
        for i in range(n):
            at = self._slot(i)
            for j in range(8):
                token[j] = ring[at + 1 + j]
            add(ring[at], token, now - _u32(ring, at + 11))
        return n

    def ack(self, n, now_s=0):
        """Remove the first n events (ACKed by the gateway); the frame in flight is done."""
        n = min(n, self.depth)
        counter = _NONE if self.flight_counter is None else self.flight_counter
        self._append(_ACK, n, counter, None, self.boot, self._base + now_s)
        self._apply_ack(n, counter)
        if counter != _NONE:
            _remove(self._fly_path)
        if self._records >= COMPACT_AFTER:
            self._compact()

    def exact(self, i):
        """True if the age of event i is exact (it happened during this boot)."""
        return struct.unpack_from("<H", self._ring, self._slot(i) + 9)[0] == self.boot

    def event(self, i):
        """(tag, token, boot, clock) of event i, for inspection: allocates."""
        at = self._slot(i)
        boot, clock = struct.unpack_from(_STAMP, self._ring, at + 9)
        return self._ring[at], bytes(self._ring[at + 1 : at + 9]), boot, clock

    # The frame in flight.

    def send(self, frame, counter, n):
        """Keep `frame` (counter `counter`, carrying the first n events) as in flight.

        Call it before the first transmission; retransmissions send `flight` unchanged.
        """
        size = len(frame)
        if size > MAX_FRAME_SIZE or n > self.depth:
            raise ValueError("frame")
        fly = self._fly
        struct.pack_into(_FLY_HEAD, fly, 0, counter, n, size)
        fly[_FLY_HEAD_SIZE : _FLY_HEAD_SIZE + size] = frame
        end = _FLY_HEAD_SIZE + size
        struct.pack_into("<I", fly, end, crc32(self._fly_view[:end]))
        with open(self._tmp, "wb") as f:
            f.write(self._fly_view[: end + 4])
        os.rename(self._tmp, self._fly_path)
        self.flight_counter = counter
        self.flight_events = n
        self._flight_size = size

    @property
    def flight(self):
        """The bytes of the frame in flight (a view of the queue's buffer), or None."""
        if self.flight_counter is None:
            return None
        return self._fly_view[_FLY_HEAD_SIZE : _FLY_HEAD_SIZE + self._flight_size]

    # Inside.

    def _slot(self, i):
        return (self._head + i) % self.capacity * _SLOT

    def _apply_push(self, tag, evict, boot, clock, src, src_at):
        ring = self._ring
        if evict == _NONE:
            self.dropped += 1
            return
        if evict or self.depth >= self.capacity:
            # Close the gap of the evicted event: the older ones move one slot towards the tail.
            position = evict - 1 if evict else 0
            for i in range(min(position, self.depth - 1), 0, -1):
                dst, from_ = self._slot(i), self._slot(i - 1)
                for j in range(_SLOT):
                    ring[dst + j] = ring[from_ + j]
            self._head = (self._head + 1) % self.capacity
            self.depth -= 1
            self.dropped += 1
        at = self._slot(self.depth)
        ring[at] = tag
        for j in range(8):
            ring[at + 1 + j] = src[src_at + j]
        struct.pack_into(_STAMP, ring, at + 9, boot, clock)
        self.depth += 1

    def _apply_ack(self, n, counter):
        n = min(n, self.depth)
        self._head = (self._head + n) % self.capacity
        self.depth -= n
        if counter != _NONE:
            self._last_acked = counter
        self.flight_counter = None
        self.flight_events = 0

    def _append(self, kind, tag, arg, token, boot, clock):
        self._pack(kind, tag, arg, token, boot, clock)
        with open(self._log, "ab") as f:
            f.write(self._rec)
        self._records += 1
        if clock > self._clock:
            self._clock = clock

    def _pack(self, kind, tag, arg, token, boot, clock):
        rec = self._rec
        struct.pack_into(_LAYOUT, rec, 0, kind, tag, arg)
        for j in range(8):
            rec[6 + j] = token[j] if token is not None else 0
        struct.pack_into(_STAMP, rec, 14, boot, clock)
        struct.pack_into("<I", rec, _CHECKED, crc32(self._rec_checked))

    def _replay(self):
        """Rebuild the queue from the journal; True if a record was torn or damaged."""
        damaged = False
        rec = self._rec
        if not _exists(self._log):
            return False
        with open(self._log, "rb") as f:
            while True:
                got = f.readinto(rec)
                if got < _RECORD:
                    return damaged or got > 0  # a torn last record
                self._records += 1
                if crc32(self._rec_checked) != struct.unpack_from("<I", rec, _CHECKED)[0]:
                    damaged = True
                    continue
                kind, tag, arg = struct.unpack_from(_LAYOUT, rec, 0)
                boot, clock = struct.unpack_from(_STAMP, rec, 14)
                if clock > self._clock:
                    self._clock = clock
                if kind == _PUSH:
                    self._apply_push(tag, arg, boot, clock, rec, 6)
                elif kind == _ACK:
                    self._apply_ack(tag, arg)
                elif kind == _BOOT:
                    self.boot = boot
                elif kind == _HEAD:
                    self._head = self.depth = 0
                    self.dropped = arg
                    self._last_acked = struct.unpack_from("<I", rec, 6)[0]
                    self.boot = boot
                    self._clock = clock
                else:
                    damaged = True

    def _load_flight(self):
        fly = self._fly
        try:
            with open(self._fly_path, "rb") as f:
                got = f.readinto(fly)
        except OSError:
            return
        if got >= _FLY_HEAD_SIZE + 4:
            counter, n, size = struct.unpack_from(_FLY_HEAD, fly, 0)
            end = _FLY_HEAD_SIZE + size
            if (
                got == end + 4
                and struct.unpack_from("<I", fly, end)[0] == crc32(self._fly_view[:end])
                and counter != self._last_acked  # ACKed just before the power cut
                and n <= self.depth
            ):
                self.flight_counter = counter
                self.flight_events = n
                self._flight_size = size
                return
        _remove(self._fly_path)

    def _compact(self):
        """Rewrite the journal as its head and the queued events: to .new, renamed over .log."""
        with open(self._new, "wb") as f:
            token = self._token_buf
            struct.pack_into("<I", token, 0, self._last_acked)
            self._pack(_HEAD, 0, self.dropped, token, self.boot, self._clock)
            f.write(self._rec)
            ring = self._ring
            for i in range(self.depth):
                at = self._slot(i)
                boot, clock = struct.unpack_from(_STAMP, ring, at + 9)
                self._pack(_PUSH, ring[at], 0, ring[at + 1 : at + 9], boot, clock)
                f.write(self._rec)
        os.rename(self._new, self._log)
        self._records = 1 + self.depth


def _u32(buf, at):
    return buf[at] | buf[at + 1] << 8 | buf[at + 2] << 16 | buf[at + 3] << 24


def _exists(path):
    try:
        os.stat(path)
    except OSError:
        return False
    return True


def _remove(path):
    if _exists(path):
        os.remove(path)
