# A Sensirion SCD4x (SCD40/SCD41) on I2C, at the level of its commands: 16-bit command words, answers
# of 16-bit words each followed by a CRC-8 (polynomial 0x31, init 0xFF). Periodic measurement gives a
# sample every `interval_ms` (5000 on the chip; the host may shorten it) of the air the host set.
# measure_single_shot (SCD41; datasheet v1.3 §3.10.1) gives one sample `single_shot_ms` later (5000,
# its execution time); like every command but read_measurement, get_data_ready_status,
# stop_periodic_measurement and set_ambient_pressure it is refused (NACKed) while a periodic
# measurement runs (§3.4 Table 9, column "During meas."), and while it executes the chip
# acknowledges nothing (§3.3: no command while the previous one is processing).
import time

from i2c_bus import Chip

_START_PERIODIC = 0x21B1
_READ_MEASUREMENT = 0xEC05
_DATA_READY = 0xE4B8
_STOP_PERIODIC = 0x3F86
_SERIAL_NUMBER = 0x3682
_MEASURE_SINGLE_SHOT = 0x219D
_DURING_PERIODIC = (_READ_MEASUREMENT, _DATA_READY, _STOP_PERIODIC, 0xE000)  # 0xE000: set_ambient_pressure


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


# get_data_ready_status's two answers, made once: the firmware polls it (bytes: nobody changes them).
_SAMPLE_WAITING = bytes(words(0x8006))
_NO_SAMPLE = bytes(words(0x8000))


class SCD4x(Chip):
    def __init__(self, air):
        super().__init__(air)
        self.running = False
        self.started = 0
        self.samples_read = 0
        self.interval_ms = 5000
        self.single_shot_ms = 5000
        self.shot_at = None  # ticks_ms when the single shot under way, or done and unread, has its sample
        self.answer = None  # what the next read transfer returns

    def configure(self, state):
        self.interval_ms = state.get("interval_ms", 5000)
        self.single_shot_ms = state.get("single_shot_ms", 5000)

    def samples_taken(self):
        if not self.running:
            return self.samples_read
        return max(time.ticks_diff(time.ticks_ms(), self.started), 0) // max(self.interval_ms, 1)

    def shooting(self):
        """True while a single shot executes."""
        return self.shot_at is not None and time.ticks_diff(self.shot_at, time.ticks_ms()) > 0

    def sample_waiting(self):
        if self.running:
            return self.samples_taken() > self.samples_read
        return self.shot_at is not None and not self.shooting()

    def write(self, data):
        if len(data) < 2 or self.shooting():
            return False
        command = data[0] << 8 | data[1]
        if self.running and command not in _DURING_PERIODIC:
            return False
        self.answer = None
        if command == _START_PERIODIC:
            self.running, self.started, self.samples_read, self.shot_at = True, time.ticks_ms(), 0, None
            if not self.interval_ms:
                self.started -= 1  # a sample at once, for the host that asked for no wait
        elif command == _STOP_PERIODIC:
            self.running = False
        elif command == _MEASURE_SINGLE_SHOT:
            self.shot_at = time.ticks_add(time.ticks_ms(), self.single_shot_ms)
        elif command == _DATA_READY:
            # The low 11 bits are non-zero when a sample waits to be read.
            self.answer = _SAMPLE_WAITING if self.sample_waiting() else _NO_SAMPLE
        elif command == _READ_MEASUREMENT:
            if self.sample_waiting():  # else the chip NACKs the read: no data
                if self.running:
                    self.samples_read = self.samples_taken()
                else:
                    self.shot_at = None  # the buffer is emptied upon read-out
                air = self.air
                self.answer = words(
                    int(air["co2_ppm"]),
                    round((air["temperature_c"] + 45) * 65535 / 175),
                    round(air["humidity_pct"] * 65535 / 100),
                )
                if self.take_corruption():
                    self.answer[2] ^= 0x5A
        elif command == _SERIAL_NUMBER:
            self.answer = words(0x1F4A, 0x7B07, 0x3B3A)
        return True

    def read(self, n):
        answer, self.answer = self.answer, None
        if answer is None:
            return None
        if n == len(answer) and isinstance(answer, bytes):
            return answer  # as it is: a poll's answer allocates nothing
        return bytes(answer[:n]) + b"\xff" * (n - len(answer))
