"""Air frames of a node: uplinks built in place, downlinks checked and read.

    header(1) | device id(2) | counter, low 16 bits(2) | body | MIC(4), little-endian
    header: version (bits 7-6) | message type (5-3) | flags (2-0)

The same bytes as payload_codec, the contract's authority (docs/wire-contract.md); the
shared vectors hold both to it. Errors are values: Downlink.read returns the reason a
frame was refused, named as payload_codec names it.
"""

import struct

from micropython import const

from .crypto import BADGE_TOKEN_SIZE, DOWN, MIC_SIZE, UP

VERSION = const(1)
CHECKIN = const(1)
TELEMETRY = const(2)
STATUS = const(3)
ACK = const(4)
CONFIG = const(5)

FLAG_ENCRYPTED = const(0x01)
FLAG_ACK_REQUESTED = const(0x02)
FLAG_TIME_REQUESTED = const(0x04)

MAX_FRAME_SIZE = const(250)  # EU868's largest PHY payload (SF7/SF8)
MAX_CHECKINS = const(16)
CHECKIN_SIZE = const(11)  # tag | badge token (8) | age (2)
_HEAD = const(5)  # header, device id, counter16
_ENVELOPE = const(9)  # _HEAD + MIC
_STATUS_LAYOUT = "<BBBIBHHBHHH"  # 19 bytes
_STATUS_SIZE = const(19)

# The age of a check-in: seconds below 32768 (9.1 h), then minutes, up to 23.1 days.
_AGE_SECONDS = const(0x8000)
_AGE_MAX_CODE = const(0xFFFF)

# Telemetry, in bit order: struct format, size, raw range, and the scale
# raw = round((value - offset) * mul / step), as payload_codec computes it.
_TELEMETRY = (
    ("<h", 2, -32768, 32767, 100, 1, 0),  # temperature_c, 0.01 °C
    ("<B", 1, 0, 200, 2, 1, 0),  # humidity_pct, 0.5 %
    ("<H", 2, 0, 65535, 10, 1, 0),  # pressure_hpa, 0.1 hPa
    ("<H", 2, 0, 65535, 1, 1, 0),  # co2_ppm
    ("<H", 2, 0, 500, 1, 1, 0),  # voc_index
    ("<I", 4, 0, 0xFFFFFFFF, 1, 1, 0),  # meter_pulses
    ("<B", 1, 0, 255, 1, 10, 2000),  # battery_mv, 10 mV from 2000 mV
)
TEMPERATURE_C = const(0)
HUMIDITY_PCT = const(1)
PRESSURE_HPA = const(2)
CO2_PPM = const(3)
VOC_INDEX = const(4)
METER_PULSES = const(5)
BATTERY_MV = const(6)

# Config, in bit order: struct format, size, accepted range; size 0 is a flag without bytes.
_CONFIG = (
    ("<H", 2, 10, 65535),  # report_interval_s
    ("<H", 2, 60, 65535),  # status_interval_s
    ("<B", 1, 7, 12),  # spreading_factor
    ("<b", 1, -9, 22),  # tx_power_dbm
    ("<H", 2, 0, 65535),  # badge_retap_s
    ("<B", 1, 0, 2),  # checkin_direction: none, in, out
    (None, 0, 0, 0),  # reboot
)
REPORT_INTERVAL_S = const(0)
STATUS_INTERVAL_S = const(1)
SPREADING_FACTOR = const(2)
TX_POWER_DBM = const(3)
BADGE_RETAP_S = const(4)
CHECKIN_DIRECTION = const(5)
REBOOT = const(6)
_CONFIG_MAX_BODY = const(10)  # presence byte and every field
_RESERVED_BIT = const(0x80)  # announces a second bitmap byte, in a later version

MAX_COUNTER_GAP = const(16384)  # LoRaWAN 1.0's MAX_FCNT_GAP


# payload_codec's TAG_TYPES: a check-in carries the index of its badge's type.
TAG_TYPES = ("unknown", "mifare_classic", "mifare_ultralight", "ntag", "mifare_desfire", "mifare_plus", "iso14443_4")


def checkin_tag(direction, tag_type, uid_length):
    """The tag byte of a check-in: direction 0-2, tag type 0-6, UID length 4, 7 or 10."""
    return direction << 6 | tag_type << 2 | (0 if uid_length == 4 else 1 if uid_length == 7 else 2)


def max_checkins(max_frame_size):
    """How many check-ins fit one frame of at most `max_frame_size` bytes (see airtime)."""
    return min(MAX_CHECKINS, (max_frame_size - _ENVELOPE) // CHECKIN_SIZE)


def age_code(age_s):
    """The 2-byte age of an event: seconds, then minutes (rounded); saturates at 23.1 days."""
    if age_s < _AGE_SECONDS:
        return age_s if age_s > 0 else 0
    return min(_AGE_SECONDS + (age_s - _AGE_SECONDS + 30) // 60, _AGE_MAX_CODE)


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
        self.checkins = 0  # events added to the batch being built

    def add_checkin(self, tag, token, age_s):
        """Add one event to the check-in batch; returns how many it holds."""
        if self.checkins >= MAX_CHECKINS:
            raise ValueError("check-in batch full")
        at = _HEAD + self.checkins * CHECKIN_SIZE
        buf = self._buf
        buf[at] = tag
        for i in range(BADGE_TOKEN_SIZE):
            buf[at + 1 + i] = token[i]
        struct.pack_into("<H", buf, at + 1 + BADGE_TOKEN_SIZE, age_code(age_s))
        self.checkins += 1
        return self.checkins

    def seal_checkins(self, counter, ack=True, time=False, encrypt=True):
        """The frame of the batch added since the last one; check-ins ask for an ACK by default."""
        if not self.checkins:
            raise ValueError("no check-in to send")
        size = self.checkins * CHECKIN_SIZE
        self.checkins = 0
        return self._seal(CHECKIN, _flags(encrypt, ack, time), counter, size)

    def telemetry(self, counter, values, encrypt=False):
        """The telemetry frame of `values`, indexed TEMPERATURE_C … BATTERY_MV, None when absent.

        A reading beyond its wire range is sent at the range's bound rather than lost.
        """
        buf = self._buf
        at = _HEAD + 1
        present = 0
        for bit in range(len(_TELEMETRY)):
            value = values[bit]
            if value is None:
                continue
            fmt, size, low, high, mul, step, offset = _TELEMETRY[bit]
            # payload_codec's arithmetic, step by step; a whole value stays whole (a float32
            # cannot hold 2**32 - 1), and each skipped step is a float less on the heap.
            if offset:
                value -= offset
            if mul != 1:
                value *= mul
            if step != 1:
                value /= step
            if isinstance(value, float):
                value = round(value)
            struct.pack_into(fmt, buf, at, _clamp(value, low, high))
            present |= 1 << bit
            at += size
        if not present:
            raise ValueError("no telemetry value")
        buf[_HEAD] = present
        return self._seal(TELEMETRY, _flags(encrypt, False, False), counter, at - _HEAD)

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
        duty_cycle_deferrals=0,
        encrypt=False,
    ):
        """The status frame; `firmware` is (major, minor, patch), counters saturate at 65535."""
        struct.pack_into(
            _STATUS_LAYOUT,
            self._buf,
            _HEAD,
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
            min(duty_cycle_deferrals, 0xFFFF),
        )
        return self._seal(STATUS, _flags(encrypt, False, False), counter, _STATUS_SIZE)

    def _seal(self, kind, flags, counter, size):
        buf = self._buf
        device_id = self.device_id
        if flags & FLAG_ENCRYPTED:
            self._keys.crypt(UP, device_id, counter, buf, _HEAD, buf, _HEAD, size)
        struct.pack_into("<BHH", buf, 0, VERSION << 6 | kind << 3 | flags, device_id, counter & 0xFFFF)
        n = _HEAD + size
        self._keys.sign(UP, device_id, counter, buf, n)
        return self._view[: n + MIC_SIZE]


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
        return "replay"
    if ahead > max_gap:
        return "counter_gap"
    if last + ahead > 0xFFFFFFFF:
        return "replay"  # the 32-bit counter is spent: the device needs new keys
    return last + ahead


class Downlink:
    """Reads the gateway's frames to this node: ACKs and configuration.

    After read() returns None, the attributes hold the frame: `kind` (ACK or CONFIG),
    `counter`, `encrypted`, and `acked_counter16`, `gateway_time` (None unless the node
    asked for the time) for an ACK, or `config` (a list indexed REPORT_INTERVAL_S …
    REBOOT, None where absent) for a config frame. After a refusal they mean nothing.
    """

    def __init__(self, device_id, keys):
        self.device_id = device_id
        self._keys = keys
        self._body = bytearray(_CONFIG_MAX_BODY)
        self.kind = 0
        self.counter = 0
        self.encrypted = False
        self.acked_counter16 = 0
        self.gateway_time = None
        self.config = [None] * len(_CONFIG)  # type: list

    def read(self, frame, last_counter):
        """Check and decode `frame`; None if accepted, else why not (payload_codec's reasons).

        `last_counter` is the last downlink counter the node accepted (None before the
        first); the node stores `self.counter` once it has acted on the frame.
        """
        n = len(frame)
        if n < _ENVELOPE + 1:
            return "truncated"
        if n > MAX_FRAME_SIZE:
            return "too_long"
        header = frame[0]
        if header >> 6 != VERSION:
            return "unknown_version"
        kind = header >> 3 & 0x07
        if kind == 0 or kind > CONFIG:
            return "unknown_type"
        if kind < ACK:
            return "wrong_direction"
        flags = header & 0x07
        if flags & (FLAG_ACK_REQUESTED | FLAG_TIME_REQUESTED):
            return "bad_value"  # flags that only uplinks use
        device_id = frame[1] | frame[2] << 8
        if device_id != self.device_id:
            return "unknown_device"
        counter = resolve_counter(last_counter, frame[3] | frame[4] << 8)
        if isinstance(counter, str):
            return counter
        signed = n - MIC_SIZE
        if not self._keys.verify(DOWN, device_id, counter, frame, signed):
            return "bad_mic"
        size = signed - _HEAD
        if size > _CONFIG_MAX_BODY:
            return "bad_length"  # longer than any downlink body, whatever it holds
        body = self._body
        if flags & FLAG_ENCRYPTED:
            self._keys.crypt(DOWN, device_id, counter, frame, _HEAD, body, 0, size)
        else:
            for i in range(size):
                body[i] = frame[_HEAD + i]
        reason = self._read_ack(body, size) if kind == ACK else self._read_config(body, size)
        if reason is None:
            self.kind = kind
            self.counter = counter
            self.encrypted = bool(flags & FLAG_ENCRYPTED)
        return reason

    def _read_ack(self, body, size):
        if size != 2 and size != 6:
            return "bad_length"
        self.acked_counter16 = body[0] | body[1] << 8
        self.gateway_time = struct.unpack_from("<I", body, 2)[0] if size == 6 else None
        return None

    def _read_config(self, body, size):
        if size == 0:
            return "bad_length"
        present = body[0]
        need = 1
        for bit in range(len(_CONFIG)):
            if present & 1 << bit:
                need += _CONFIG[bit][1]
        if need != size:
            return "bad_length"
        if present & _RESERVED_BIT:
            return "unknown_field"
        if not present:
            return "bad_value"
        config = self.config
        at = 1
        for bit in range(len(_CONFIG)):
            fmt, width, low, high = _CONFIG[bit]
            if not present & 1 << bit:
                config[bit] = None
            elif fmt is None:
                config[bit] = True
            else:
                value = struct.unpack_from(fmt, body, at)[0]
                if value < low or value > high:
                    return "bad_value"
                config[bit] = value
                at += width
        return None
