# An NXP PN532 NFC reader on I2C (address 0x24), at the level of its frames: every read transfer
# starts with the ready byte (0x01 when an answer waits), a command frame is acknowledged with the
# ACK frame, then answered with a normal information frame (00 00 FF LEN LCS D5 CMD+1 … DCS 00).
# A frame with a bad checksum gets the error frame; an ACK from the host aborts the command.
# InListPassiveTarget (106 kbps type A) finds the badge the host presents, if any, at once: as the
# chip does with MxRtyPassiveActivation below 0xFF (no endless wait is modelled).
# Faults the host may ask for in its state: `power_up_ms`, the time after power-up (or after the host
# powers it again) during which it NACKs its address, its firmware still starting; `stretch_ms`, how
# long it holds SCL low in every transfer (a PN532 stretches the clock as it wakes, as Adafruit's
# adafruit_pn532/i2c.py notes), which the ESP32's I2C gives up on past its `timeout` (machine_i2c.c:
# 50 ms unless told), raising ETIMEDOUT.
import time

from i2c_bus import Chip
from iso14443a import card

ACK = b"\x00\x00\xff\x00\xff\x00"
ERROR_FRAME = b"\x00\x00\xff\x01\xff\x7f\x81\x00"  # application-level error: syntax error in the frame
_FIRMWARE = b"\x32\x01\x06\x07"  # IC PN532, version 1.6, supports ISO14443A, ISO14443B and ISO18092

_GET_FIRMWARE_VERSION = 0x02
_SAM_CONFIGURATION = 0x14
_RF_CONFIGURATION = 0x32
_IN_LIST_PASSIVE_TARGET = 0x4A
_IN_RELEASE = 0x52

_DESFIRE_ATS = b"\x06\x75\x77\x81\x02\x80"


def information_frame(data, damaged=False):
    """00 00 FF LEN LCS D5 data DCS 00; `damaged` spoils the data checksum."""
    length = len(data) + 1
    dcs = -(0xD5 + sum(data)) & 0xFF
    return bytes((0, 0, 0xFF, length, -length & 0xFF, 0xD5)) + bytes(data) + bytes((dcs ^ damaged, 0))


class PN532(Chip):
    def __init__(self, air):
        super().__init__(air)
        self.badge = None  # (uid, atqa, sak)
        self.queue = []  # frames waiting for read transfers: ACK, then the answer
        self.sam_configured = False
        self.off = True  # until the host's first description powers it
        self.ready_at = time.ticks_ms()
        self.stretch_ms = 0

    def configure(self, state):
        badge = state.get("badge")
        self.badge = None if badge is None else card(badge)
        self.stretch_ms = state.get("stretch_ms", 0)
        if not self.answering:
            self.off = True
        elif self.off:  # powered (again): its firmware starts, from its reset state
            self.off = False
            self.queue = []
            self.sam_configured = False
            self.ready_at = time.ticks_add(time.ticks_ms(), state.get("power_up_ms", 0))

    def starting(self):
        return time.ticks_diff(self.ready_at, time.ticks_ms()) > 0

    def stretch_us(self):
        return self.stretch_ms * 1000

    def write(self, data):
        if self.starting():
            return False  # NACK
        data = bytes(data)
        if data.startswith(b"\x00\x00\xff\x00\xff"):  # the host's ACK: abort what is pending
            self.queue = []
            return True
        if not data.startswith(b"\x00\x00\xff") or len(data) < 8:
            return True  # noise: the PN532 ignores what is not a frame
        length, lcs = data[3], data[4]
        body = data[5 : 5 + length]
        if (length + lcs) & 0xFF or len(body) != length or len(data) < 6 + length:
            self.queue = [ERROR_FRAME]
            return True
        if (sum(body) + data[5 + length]) & 0xFF or body[0] != 0xD4:
            self.queue = [ERROR_FRAME]
            return True
        answer = self.execute(body[1], body[2:])
        self.queue = [ACK] if answer is None else [ACK, information_frame(answer, self.take_corruption())]
        return True

    def execute(self, command, params):
        """The data of the answer (after TFI D5), or None for a command this model does not know."""
        if command == _GET_FIRMWARE_VERSION:
            return bytes((command + 1,)) + _FIRMWARE
        if command == _SAM_CONFIGURATION:
            self.sam_configured = True
            return bytes((command + 1,))
        if command in (_RF_CONFIGURATION, _IN_RELEASE):
            return bytes((command + 1,)) + (b"\x00" if command == _IN_RELEASE else b"")
        if command == _IN_LIST_PASSIVE_TARGET:
            if len(params) < 2 or params[1] != 0x00 or self.badge is None or not self.sam_configured:
                return bytes((command + 1, 0))  # NbTg 0: no target (only 106 kbps type A is modelled)
            uid, atqa, sak = self.badge
            target = bytes((command + 1, 1, 1, atqa >> 8, atqa & 0xFF, sak, len(uid))) + uid
            return target + (_DESFIRE_ATS if sak & 0x20 else b"")
        return None

    def read(self, n):
        if self.starting():
            return None  # NACK
        if not self.queue:
            return bytes(n)  # status 0x00: busy, nothing to read
        frame = self.queue.pop(0)
        out = b"\x01" + frame[: n - 1]
        return out + bytes(n - len(out))
