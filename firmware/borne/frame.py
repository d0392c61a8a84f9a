"""Air frames of a node: uplinks built in place, downlinks checked and read.

    header(1) | device id(2) | counter, low 16 bits(2) | body | MIC(4), little-endian
    (a status frame carries the whole counter on 4 bytes: FULL_COUNTER_TYPES)
    header: version (bits 7-6) | message type (5-3) | flags (2-0)

The same bytes as payload_codec, the contract's authority (docs/wire-contract.md); the
shared vectors hold both to it. Sizes, codes and field tables come from contract.py, which
is generated from payload_codec; the code that packs and checks the bytes is written here.
Errors are values: Downlink.read returns the reason a frame was refused, named as
payload_codec names it.
"""

import hashlib
import struct

from .contract import (
    ACK,
    ACK_SIZE,
    ACK_TIME_SIZE,
    AGE_MAX_CODE,
    AGE_SECONDS_LIMIT,
    BAD_LENGTH,
    BAD_MIC,
    BAD_VALUE,
    BADGE_TOKEN_SIZE,
    CHECKIN,
    CHECKIN_HEAD_SIZE,
    CHECKIN_SIZE,
    CONFIG_DIGEST_SIZE,
    CONFIG_FIELDS,
    CONFIG_MAX_SIZE,
    COUNTER_GAP,
    DOWN,
    ENVELOPE_SIZE,
    FLAG_ACK_REQUESTED,
    FLAG_ENCRYPTED,
    FLAG_TIME_REQUESTED,
    FULL_COUNTER_TYPES,
    FULL_HEAD_SIZE,
    HEAD_SIZE,
    MAX_CHECKINS,
    MAX_COUNTER,
    MAX_COUNTER_GAP,
    MAX_FRAME_SIZE,
    MIC_SIZE,
    REPLAY,
    RESERVED_BITMAP_BIT,
    STATUS,
    STATUS_LAYOUT,
    STATUS_SIZE,
    TAG_AGE_IS_BOUND,
    TELEMETRY,
    TELEMETRY_FIELDS,
    TOO_LONG,
    TRUNCATED,
    TYPE_DIRECTIONS,
    UID_LENGTHS,
    UNKNOWN_DEVICE,
    UNKNOWN_FIELD,
    UNKNOWN_TYPE,
    UNKNOWN_VERSION,
    UP,
    UPLINK_ONLY_FLAGS,
    VERSION,
    WRONG_DIRECTION,
)


def checkin_tag(direction, tag_type, uid_length):
    """The tag byte of a check-in: indexes of DIRECTIONS and TAG_TYPES, the UID's length in bytes.

    A length that UID_LENGTHS lacks is sent as the longest (ISO 14443 UIDs are 4, 7 or 10 bytes).
    """
    code = UID_LENGTHS.index(uid_length) if uid_length in UID_LENGTHS else len(UID_LENGTHS) - 1
    return direction << 6 | tag_type << 2 | code


def max_checkins(max_frame_size):
    """How many check-ins fit one frame of at most `max_frame_size` bytes (see airtime)."""
    return min(MAX_CHECKINS, (max_frame_size - ENVELOPE_SIZE - CHECKIN_HEAD_SIZE) // CHECKIN_SIZE)


def age_code(age_s):
    """The 2-byte age of an event: seconds, then minutes (rounded); saturates at 23.1 days."""
    if age_s < AGE_SECONDS_LIMIT:
        return age_s if age_s > 0 else 0
    return min(AGE_SECONDS_LIMIT + (age_s - AGE_SECONDS_LIMIT + 30) // 60, AGE_MAX_CODE)


def _clamp(raw, low, high):
    return low if raw < low else high if raw > high else raw


class Uplink:
    """The uplinks of one node, each built in place in one buffer that lives with the node.

    A built frame is a memoryview of that buffer: send it before building the next one.
    """

    def __init__(self, device_id, keys):
        self.device_id = device_id
        self._keys = keys
        self._buf = bytearray(MAX_FRAME_SIZE)
        self._view = memoryview(self._buf)
        self._frames = {}  # length -> the view of a frame that long: made once, so sealing allocates nothing
        self.checkins = 0  # events added to the batch being built

    def add_checkin(self, tag, token, age_s, exact=True):
        """Add one event to the check-in batch; returns how many it holds.

        `exact` False: the age crossed a reboot, and is sent marked as a lower bound.
        """
        if self.checkins >= MAX_CHECKINS:
            raise ValueError("check-in batch full")
        at = HEAD_SIZE + CHECKIN_HEAD_SIZE + self.checkins * CHECKIN_SIZE
        buf = self._buf
        buf[at] = tag if exact else tag | TAG_AGE_IS_BOUND
        for i in range(BADGE_TOKEN_SIZE):
            buf[at + 1 + i] = token[i]
        struct.pack_into("<H", buf, at + 1 + BADGE_TOKEN_SIZE, age_code(age_s))
        self.checkins += 1
        return self.checkins

    def seal_checkins(self, counter, first_number, ack=True, time=False, encrypt=True):
        """The frame of the batch added since the last one, numbered on from `first_number`.

        Check-ins ask for an ACK by default.
        """
        if not self.checkins:
            raise ValueError("no check-in to send")
        struct.pack_into("<H", self._buf, HEAD_SIZE, first_number & 0xFFFF)
        size = CHECKIN_HEAD_SIZE + self.checkins * CHECKIN_SIZE
        self.checkins = 0
        return self._seal(CHECKIN, _flags(encrypt, ack, time), counter, size)

    def telemetry(self, counter, raws, encrypt=False):
        """The telemetry frame of `raws`, the fields' values on the wire (sensors.telemetry_raw) indexed
        TEMPERATURE_C … BATTERY_MV, None when absent.

        A value beyond its wire range is sent at the range's bound rather than lost.
        """
        buf = self._buf
        at = HEAD_SIZE + 1
        present = 0
        for bit in range(len(TELEMETRY_FIELDS)):
            raw = raws[bit]
            if raw is None:
                continue
            fmt, size, low, high, _, _, _ = TELEMETRY_FIELDS[bit]
            struct.pack_into(fmt, buf, at, _clamp(raw, low, high))
            present |= 1 << bit
            at += size
        if not present:
            raise ValueError("no telemetry value")
        buf[HEAD_SIZE] = present
        return self._seal(TELEMETRY, _flags(encrypt, False, False), counter, at - HEAD_SIZE)

    def status(
        self,
        counter,
        firmware,
        uptime_s,
        reset_cause,
        queue_depth=0,
        checkins_dropped=0,
        sensor_faults=0,
        radio_errors=0,
        reader_errors=0,
        flash_errors=0,
        duty_cycle_deferrals=0,
        config_digest=0,
        next_downlink_counter=0,
        encrypt=False,
    ):
        """The status frame; `firmware` is (major, minor, patch), counters saturate at 65535.

        `config_digest` is Downlink.config_digest of the last config applied, 0 before any;
        `next_downlink_counter` the lowest downlink counter the node accepts next."""
        struct.pack_into(
            STATUS_LAYOUT,
            self._buf,
            FULL_HEAD_SIZE,
            firmware[0],
            firmware[1],
            firmware[2],
            uptime_s,
            reset_cause,
            min(queue_depth, 0xFFFF),
            min(checkins_dropped, 0xFFFF),
            sensor_faults,
            min(radio_errors, 0xFFFF),
            min(reader_errors, 0xFFFF),
            min(flash_errors, 0xFFFF),
            min(duty_cycle_deferrals, 0xFFFF),
            config_digest,
            next_downlink_counter,
        )
        return self._seal(STATUS, _flags(encrypt, False, False), counter, STATUS_SIZE)

    def _seal(self, kind, flags, counter, size):
        buf = self._buf
        device_id = self.device_id
        header = VERSION << 6 | kind << 3 | flags
        if kind in FULL_COUNTER_TYPES:
            head = FULL_HEAD_SIZE
            struct.pack_into("<BHI", buf, 0, header, device_id, counter)
        else:
            head = HEAD_SIZE
            struct.pack_into("<BHH", buf, 0, header, device_id, counter & 0xFFFF)
        if flags & FLAG_ENCRYPTED:
            self._keys.crypt(UP, device_id, counter, buf, head, buf, head, size)
        n = head + size
        self._keys.sign(UP, device_id, counter, buf, n)
        n += MIC_SIZE
        frame = self._frames.get(n)
        if frame is None:
            frame = self._frames[n] = self._view[:n]
        return frame


def _flags(encrypt, ack, time):
    return (
        (FLAG_ENCRYPTED if encrypt else 0) | (FLAG_ACK_REQUESTED if ack else 0) | (FLAG_TIME_REQUESTED if time else 0)
    )


def resolve_counter(last, counter16, max_gap=MAX_COUNTER_GAP):
    """The full counter of a frame whose low 16 bits are `counter16`, or the reason it is refused.

    `last` is the last counter accepted, None before the first: the frame must be newer
    than it and at most `max_gap` ahead ("replay", "counter_gap"). payload_codec/counter.py's rule.
    """
    if last is None:
        return counter16
    ahead = (counter16 - last) & 0xFFFF
    if ahead == 0 or ahead > 0x8000:
        return REPLAY
    if ahead > max_gap:
        return COUNTER_GAP
    if last + ahead > MAX_COUNTER:
        return REPLAY  # the 32-bit counter is spent: the device needs new keys
    return last + ahead


class Downlink:
    """Reads the gateway's frames to this node: ACKs and configuration.

    After read() returns None, the attributes hold the frame: `kind` (ACK or CONFIG),
    `counter`, `encrypted`, and `acked_counter16`, `gateway_time` (None unless the node
    asked for the time) for an ACK, or `config` (a list indexed REPORT_INTERVAL_S …
    REBOOT, None where absent) and `config_digest` (what the status reports once the node
    applied it) for a config frame. After a refusal they mean nothing.
    """

    def __init__(self, device_id, keys):
        self.device_id = device_id
        self._keys = keys
        self._body = bytearray(CONFIG_MAX_SIZE)
        self.kind = 0
        self.counter = 0
        self.encrypted = False
        self.acked_counter16 = 0
        self.gateway_time = None
        self.config = [None] * len(CONFIG_FIELDS)  # type: list
        self.config_digest = 0

    def read(self, frame, last_counter):
        """Check and decode `frame`; None if accepted, else why not (payload_codec's reasons).

        `last_counter` is the last downlink counter the node accepted (None before the
        first); the node stores `self.counter` once it has acted on the frame.
        """
        n = len(frame)
        if n < ENVELOPE_SIZE + 1:
            return TRUNCATED
        if n > MAX_FRAME_SIZE:
            return TOO_LONG
        header = frame[0]
        if header >> 6 != VERSION:
            return UNKNOWN_VERSION
        kind = header >> 3 & 0x07
        if kind >= len(TYPE_DIRECTIONS) or TYPE_DIRECTIONS[kind] is None:
            return UNKNOWN_TYPE
        if TYPE_DIRECTIONS[kind] != DOWN:
            return WRONG_DIRECTION
        flags = header & 0x07
        if flags & UPLINK_ONLY_FLAGS:
            return BAD_VALUE
        device_id = frame[1] | frame[2] << 8
        if device_id != self.device_id:
            return UNKNOWN_DEVICE
        counter = resolve_counter(last_counter, frame[3] | frame[4] << 8)
        if isinstance(counter, str):
            return counter
        signed = n - MIC_SIZE
        if not self._keys.verify(DOWN, device_id, counter, frame, signed):
            return BAD_MIC
        size = signed - HEAD_SIZE
        if size > CONFIG_MAX_SIZE:
            return BAD_LENGTH  # longer than any downlink body, whatever it holds
        body = self._body
        if flags & FLAG_ENCRYPTED:
            self._keys.crypt(DOWN, device_id, counter, frame, HEAD_SIZE, body, 0, size)
        else:
            for i in range(size):
                body[i] = frame[HEAD_SIZE + i]
        reason = self._read_ack(body, size) if kind == ACK else self._read_config(body, size)
        if reason is None:
            self.kind = kind
            self.counter = counter
            self.encrypted = bool(flags & FLAG_ENCRYPTED)
        return reason

    def _read_ack(self, body, size):
        if size != ACK_SIZE and size != ACK_TIME_SIZE:
            return BAD_LENGTH
        self.acked_counter16 = body[0] | body[1] << 8
        self.gateway_time = struct.unpack_from("<I", body, ACK_SIZE)[0] if size == ACK_TIME_SIZE else None
        return None

    def _read_config(self, body, size):
        if size == 0:
            return BAD_LENGTH
        present = body[0]
        need = 1
        for bit in range(len(CONFIG_FIELDS)):
            if present & 1 << bit:
                need += CONFIG_FIELDS[bit][1]
        if need != size:
            return BAD_LENGTH
        if present & RESERVED_BITMAP_BIT:
            return UNKNOWN_FIELD
        if not present:
            return BAD_VALUE
        config = self.config
        at = 1
        for bit in range(len(CONFIG_FIELDS)):
            fmt, width, low, high = CONFIG_FIELDS[bit]
            if not present & 1 << bit:
                config[bit] = None
            elif fmt is None:
                config[bit] = True
            else:
                value = struct.unpack_from(fmt, body, at)[0]
                if value < low or value > high:
                    return BAD_VALUE
                config[bit] = value
                at += width
        digest = hashlib.sha256(bytes(body[:size])).digest()
        self.config_digest = int.from_bytes(digest[:CONFIG_DIGEST_SIZE], "little")
        return None
