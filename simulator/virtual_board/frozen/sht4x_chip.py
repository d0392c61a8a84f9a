# A Sensirion SHT4x (SHT40/41/45) on I2C, at the level of its commands: one command byte, then an
# answer of two 16-bit words (temperature, humidity; or the serial number), each followed by its
# CRC-8. While it measures or resets, the chip NACKs everything, reads included.
import time

from i2c_bus import Chip
from scd4x_chip import words

# Command -> how long the chip is busy before its answer can be read (datasheet maxima, rounded up).
_BUSY_MS = {
    0xFD: 9,  # measure T and RH, high precision (8.3 ms)
    0xF6: 5,  # medium precision (4.5 ms)
    0xE0: 2,  # low precision (1.6 ms)
    0x89: 1,  # read the serial number
    0x94: 1,  # soft reset
}
_MEASURE = (0xFD, 0xF6, 0xE0)
_SERIAL_NUMBER = 0x89


def _raw(value, offset, span):
    return min(max(round((value + offset) * 65535 / span), 0), 65535)


class SHT4x(Chip):
    def __init__(self, air):
        super().__init__(air)
        self.serial = 0x0F3A5C21
        self.answer = None  # what the next read transfer returns, once the chip is no longer busy
        self.busy_until = time.ticks_ms()
        self.first_sample_ms = None  # the host's: the first measurement lasts this long (a slow part)
        self.measured = False

    def configure(self, state):
        self.serial = state.get("serial", self.serial)
        self.first_sample_ms = state.get("first_sample_ms")

    def busy(self):
        return time.ticks_diff(self.busy_until, time.ticks_ms()) > 0

    def write(self, data):
        if self.busy() or len(data) != 1 or data[0] not in _BUSY_MS:
            return False
        command = data[0]
        busy_ms = _BUSY_MS[command]
        if command in _MEASURE and not self.measured and self.first_sample_ms is not None:
            busy_ms = self.first_sample_ms
        self.busy_until = time.ticks_add(time.ticks_ms(), busy_ms)
        self.answer = None
        if command in _MEASURE:
            self.measured = True
            air = self.air
            # The datasheet's conversions, inverted: T = -45 + 175·S/65535, RH = -6 + 125·S/65535.
            self.answer = words(_raw(air["temperature_c"], 45, 175), _raw(air["humidity_pct"], 6, 125))
            if self.take_corruption():
                self.answer[2] ^= 0x5A
        elif command == _SERIAL_NUMBER:
            self.answer = words(self.serial >> 16, self.serial & 0xFFFF)
        return True

    def read(self, n):
        if self.busy() or self.answer is None:
            return None  # NACK: measuring, or nothing to read
        answer, self.answer = self.answer, None
        return bytes(answer[:n]) + b"\xff" * (n - len(answer))
