"""Check-ins waiting for the gateway's ACK, kept on flash through any power cut, each with its number.

Every check-in gets a number when the badge is read, one more than the last one this journal
gave: never reused while the journal lives (the device's keys change with a board whose flash
is erased). A frame carries the first number of its check-ins, which follow on consecutively;
the gateway publishes each number once, whichever frame carried it. The numbers are reserved
_RESERVE_STEP at a time, in a record written before the first of them is given (as the frame
counter jumps ahead): a boot that finds a damaged or torn record, which may have held the last
number given, goes on from the reservation. Each damaged record past the first may have hidden a
later reservation (with the pushes after it), so each adds _RESERVE_STEP: a number is never given
twice, however many records were damaged. After a clean power cut the numbers follow on.

Files, beside `path` (default "/checkins"):
  .log  an append-only journal of 24-byte records, each with its CRC-32:
          kind(1) | tag(1) | arg(4) | token(8) | boot(2) | clock(4) | crc32(4), little-endian
        P push: one event; arg = its number. A push into a full queue evicts the oldest event
          (the replay does the same), counted in `dropped`
        A ack: arg = the number acknowledged up to: every event numbered below it is removed
        B boot: a new boot id; arg = the next number
        R reservation: arg = the number below which numbers may have been given
        H head of a compacted journal: arg = dropped so far, token[0:4] = the next number,
          token[4:8] = the reservation (0 in a journal from before reservations).
        The queue is the replay of the journal.
        A torn or damaged record fails its CRC and is skipped, alone: the records are fixed
        size. One push or ack appends one record (and one push in _RESERVE_STEP a reservation);
        the journal is rewritten (to .new, then os.rename over .log) only after COMPACT_AFTER
        records, or at a boot that found a bad record or half that many. A torn last record
        that a full flash keeps from being rewritten away is padded to a whole record, so
        that the records appended after it are read whole.

Age: the node has no clock that survives a power cut. Every record carries `clock`, the
seconds the node has been running summed over its boots (the largest clock in the journal,
plus the uptime of this boot). The age sent is clock now - clock of the event, computed each
time a frame is built: exact for an event of this boot, and for an older one a lower bound that
leaves out the time the node was off (and the end of that boot after its last record). Events
stay in order; `exact(i)` says which ages are exact, and the frame marks the others.
"""

import os
import struct
from binascii import crc32

from micropython import const

_CAPACITY = const(128)  # events; a RAM copy of 19 bytes each
COMPACT_AFTER = const(512)  # records in the journal before it is rewritten (12 KiB)
_RESERVE_STEP = const(64)  # numbers reserved by one record
_DAY_S = const(86400)

_RECORD = const(24)
_CHECKED = const(20)  # bytes under the CRC
_CRC_RESIDUE = const(0x2144DF1C)  # CRC-32 of any bytes followed by their CRC-32, little-endian
_LAYOUT = "<BBI"  # kind, tag, arg; then token at 6, boot and clock at 14
_STAMP = "<HI"
_SLOT = const(19)  # in RAM: tag(1) | token(8) | boot(2) | clock(4) | number(4)
_PUSH = const(0x50)  # 'P'
_ACK = const(0x41)  # 'A'
_BOOT = const(0x42)  # 'B'
_HEAD = const(0x48)  # 'H'
_RESERVE = const(0x52)  # 'R'


PATH = "/checkins"
# Every file the queue writes, and those of firmware before check-in numbers (.fly, .tmp: a frame
# kept to be resent byte for byte), removed at boot.
FILES = tuple(PATH + suffix for suffix in (".log", ".new", ".fly", ".tmp"))


class CheckinQueue:
    """A bounded FIFO of numbered check-ins (tag byte, 8-byte badge token, when) on flash.

    `now_s` arguments are the seconds since this boot (the scheduler's uptime clock).
    """

    def __init__(self, path=PATH, capacity=_CAPACITY):
        self._log = path + ".log"
        self._new = path + ".new"
        self.capacity = capacity
        self._ring = bytearray(capacity * _SLOT)
        self._head = 0
        self.depth = 0
        self.dropped = 0
        self.journal_errors = 0  # writes the flash refused (full, or failing): see _append
        self.next_number = 0  # the number the next check-in gets
        self._reserved = 0  # numbers below it may have been given: see _RESERVE_STEP
        self._torn = 0  # bytes of a torn last record found at boot, still in the journal
        self._rec = bytearray(_RECORD)
        self._rec_checked = memoryview(self._rec)[:_CHECKED]
        self._token_buf = bytearray(8)  # the token handed to batch()'s add
        self._records = 0  # in the journal file
        self._clock = 0  # the largest clock recorded
        for leftover in (self._new, path + ".fly", path + ".tmp"):
            _remove(leftover)
        self.boot = 0
        damaged = self._replay()
        if damaged:  # a bad record may have held the last number given, or a reservation
            self.next_number = max(self.next_number, self._reserved) + (damaged - 1) * _RESERVE_STEP
        self.boot = (self.boot + 1) & 0xFFFF
        self._base = self._clock  # this boot's clock starts where the journal's ends
        if damaged or self._records >= COMPACT_AFTER // 2:
            self._compact()
        else:
            self._append(_BOOT, 0, self.next_number, None, self.boot, self._base)

    # The queue.

    def push(self, tag, token, now_s):
        """Queue one check-in and return its number; evicts the oldest event if full (see `dropped`)."""
        number = self.next_number
        clock = self._base + now_s
        if number >= self._reserved:  # on flash before the number is given
            self._reserved = number + _RESERVE_STEP
            self._append(_RESERVE, 0, self._reserved, None, self.boot, clock)
        self._append(_PUSH, tag, number, token, self.boot, clock)
        self._apply_push(tag, number, self.boot, clock, self._rec, 6)
        return number

    @property
    def first_number(self):
        """The number of the oldest queued event, None when the queue is empty."""
        return self.number(0) if self.depth else None

    def number(self, i):
        return _u32(self._ring, self._slot(i) + 15)

    def fill_s(self, now_s):
        """Seconds until a push would evict the oldest event, at the pace the queued events came from
        the oldest until `now_s`: 0 when full, or after a burst of more events than seconds, whose
        pace slows as time goes on. Time the node was off is left out: the figure errs short. None
        when empty. The pace is taken at most a day per event, which keeps the figure a small int."""
        if not self.depth:
            return None
        since_oldest = self._base + now_s - _u32(self._ring, self._slot(0) + 11)
        return (self.capacity - self.depth) * min(since_oldest // self.depth, _DAY_S)

    def batch(self, add, max_n, now_s, start=0):
        """Call add(tag, token, age_s, exact) for the events from the `start`-th oldest on, at most
        max_n; returns how many.

        The events handed over have consecutive numbers from `number(start)`: a gap (a record
        lost to a damaged flash) ends the batch. Ages are those of `now_s`. `add` is typically
        an `Uplink.add_checkin` bound once; `token` is a buffer the queue reuses.
        """
        n = min(max_n, self.depth - start)
        token = self._token_buf
        now = self._base + now_s
        ring = self._ring
        first = self.number(start) if n > 0 else 0
        for i in range(n):
            at = self._slot(start + i)
            if _u32(ring, at + 15) != first + i:
                return i
            for j in range(8):
                token[j] = ring[at + 1 + j]
            add(ring[at], token, now - _u32(ring, at + 11), ring[at + 9] | ring[at + 10] << 8 == self.boot)
        return n

    def ack(self, upto, now_s=0):
        """Remove every event numbered below `upto` (the gateway ACKed a frame carrying them)."""
        self._append(_ACK, 0, upto, None, self.boot, self._base + now_s)
        self._apply_ack(upto)
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

    # Inside.

    def _slot(self, i):
        return (self._head + i) % self.capacity * _SLOT

    def _apply_push(self, tag, number, boot, clock, src, src_at):
        ring = self._ring
        if self.depth >= self.capacity:
            self._head = (self._head + 1) % self.capacity
            self.depth -= 1
            self.dropped += 1
        at = self._slot(self.depth)
        ring[at] = tag
        for j in range(8):
            ring[at + 1 + j] = src[src_at + j]
        struct.pack_into("<HII", ring, at + 9, boot, clock, number)
        self.depth += 1
        if number >= self.next_number:
            self.next_number = number + 1

    def _apply_ack(self, upto):
        while self.depth and self.number(0) < upto:
            self._head = (self._head + 1) % self.capacity
            self.depth -= 1
        if upto > self.next_number:
            self.next_number = upto

    def _append(self, kind, tag, arg, token, boot, clock):
        self._pack(kind, tag, arg, token, boot, clock)
        if not self._write(self._rec):
            return
        self._records += 1
        if clock > self._clock:
            self._clock = clock

    def _write(self, data):
        try:
            with open(self._log, "ab") as f:
                f.write(data)
        except OSError:
            # A full or failing flash (ENOSPC, EIO): the queue goes on in RAM, so check-ins still
            # leave, but what the journal lacks is lost at a power cut. Crashing would lose it all.
            self.journal_errors += 1
            return False
        return True

    def _pack(self, kind, tag, arg, token, boot, clock):
        rec = self._rec
        struct.pack_into(_LAYOUT, rec, 0, kind, tag, arg)
        for j in range(8):
            rec[6 + j] = token[j] if token is not None else 0
        struct.pack_into(_STAMP, rec, 14, boot, clock)
        struct.pack_into("<I", rec, _CHECKED, crc32(self._rec_checked))

    def _pack_event(self, at):
        """The push record of the event in ring slot `at`, its bytes copied one by one: a compaction
        writes up to _CAPACITY of them in one call, and allocates nothing for them but their CRCs."""
        rec, ring = self._rec, self._ring
        rec[0] = _PUSH
        rec[1] = ring[at]
        for j in range(4):  # arg: the number
            rec[2 + j] = ring[at + 15 + j]
        for j in range(14):  # token, boot and clock: in the same order in both
            rec[6 + j] = ring[at + 1 + j]
        struct.pack_into("<I", rec, _CHECKED, crc32(self._rec_checked))

    def _replay(self):
        """Rebuild the queue from the journal; how many records were torn or damaged."""
        damaged = 0
        rec = self._rec
        if not _exists(self._log):
            return 0
        with open(self._log, "rb") as f:
            while True:
                got = f.readinto(rec)
                if got < _RECORD:
                    self._torn = got
                    return damaged + (got > 0)  # a torn last record
                self._records += 1
                # Nothing allocated per record: a boot replays up to COMPACT_AFTER of them. The CRC-32 of
                # a record with its CRC is a constant, a small int; the CRC alone is often a big one.
                if crc32(rec) != _CRC_RESIDUE:
                    damaged += 1
                    continue
                kind, tag, arg = rec[0], rec[1], _u32(rec, 2)
                boot, clock = rec[14] | rec[15] << 8, _u32(rec, 16)
                if clock > self._clock:
                    self._clock = clock
                if kind == _PUSH:
                    self._apply_push(tag, arg, boot, clock, rec, 6)
                elif kind == _ACK:
                    self._apply_ack(arg)
                elif kind == _RESERVE:
                    if arg > self._reserved:
                        self._reserved = arg
                elif kind == _BOOT:
                    self.boot = boot
                    if arg > self.next_number:
                        self.next_number = arg
                elif kind == _HEAD:
                    self._head = self.depth = 0
                    self.dropped = arg
                    self.next_number = _u32(rec, 6)
                    self._reserved = _u32(rec, 10)
                    self.boot = boot
                    self._clock = clock
                else:
                    damaged += 1

    def _compact(self):
        """Rewrite the journal as its head and the queued events: to .new, renamed over .log."""
        try:
            self._rewrite()
        except OSError:  # a full flash keeps the journal as it was (see _append)
            self.journal_errors += 1
            _remove(self._new)
            if self._torn and self._write(bytes(_RECORD - self._torn)):
                self._torn = 0  # a damaged record now, skipped alone; the next ones are read whole

    def _rewrite(self):
        with open(self._new, "wb") as f:
            token = self._token_buf
            struct.pack_into("<II", token, 0, self.next_number, self._reserved)
            self._pack(_HEAD, 0, self.dropped, token, self.boot, self._clock)
            f.write(self._rec)
            for i in range(self.depth):
                self._pack_event(self._slot(i))
                f.write(self._rec)
        os.rename(self._new, self._log)
        self._records = 1 + self.depth
        self._torn = 0


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
