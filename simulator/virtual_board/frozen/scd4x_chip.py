# A Sensirion SCD4x (SCD40/SCD41) on I2C, at the level of its commands: 16-bit command words, answers
# of 16-bit words each followed by a CRC-8 (polynomial 0x31, init 0xFF). Periodic measurement gives a
# sample every `interval_ms` (5000 on the chip; the host may shorten it) of the air the host set.
import time

from i2c_bus import Chip

_START_PERIODIC = 0x21B1
_READ_MEASUREMENT = 0xEC05
_DATA_READY = 0xE4B8
_STOP_PERIODIC = 0x3F86
_SERIAL_NUMBER = 0x3682


def crc8(data):
    crc = 0xFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc << 1 ^ 0x31 if crc & 0x80 else crc << 1) & 0xFF
    return crc


def words(*values):
    out = bytearray()
    for value in values:
        pair = bytes((value >> 8 & 0xFF, value & 0xFF))
        out += pair + bytes((crc8(pair),))
    return out


class SCD4x(Chip):
    def __init__(self, air):
        super().__init__(air)
        self.running = False
        self.started = 0
        self.samples_read = 0
        self.interval_ms = 5000
        self.answer = None  # what the next read transfer returns

    def configure(self, state):
        self.interval_ms = state.get("interval_ms", 5000)

    def samples_taken(self):
        if not self.running:
            return self.samples_read
        return max(time.ticks_diff(time.ticks_ms(), self.started), 0) // max(self.interval_ms, 1)

    def write(self, data):
        if len(data) < 2:
            return False
        command = data[0] << 8 | data[1]
        self.answer = None
        if command == _START_PERIODIC:
            self.running, self.started, self.samples_read = True, time.ticks_ms(), 0
            if not self.interval_ms:
                self.started -= 1  # a sample at once, for the host that asked for no wait
        elif command == _STOP_PERIODIC:
            self.running = False
        elif command == _DATA_READY:
            # The low 11 bits are non-zero when a sample waits to be read.
            self.answer = words(0x8006 if self.samples_taken() > self.samples_read else 0x8000)
        elif command == _READ_MEASUREMENT:
            if self.samples_taken() > self.samples_read:  # else the chip NACKs the read: no data
                self.samples_read = self.samples_taken()
                air = self.air
                self.answer = words(
                    int(air["co2_ppm"]),
                    round((air["temperature_c"] + 45) * 65535 / 175),
                    round(air["humidity_pct"] * 65535 / 100),
                )
                if self.take_corruption():
                    self.answer[2] ^= 0x5A
        elif command == _SERIAL_NUMBER and not self.running:
            self.answer = words(0x1F4A, 0x7B07, 0x3B3A)
        return True

    def read(self, n):
        answer, self.answer = self.answer, None
        if answer is None:
            return None
        return bytes(answer[:n]) + b"\xff" * (n - len(answer))
