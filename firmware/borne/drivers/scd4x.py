# Sensirion SCD4x (SCD40/SCD41) CO2 sensor on I2C, in periodic measurement (a sample every 5 s), or
# one sample on demand (single shot, SCD41 only: what a node that sleeps between readings wants).
# Commands are 16-bit words; every 16-bit word the sensor sends is followed by its CRC-8.
import time

from micropython import const

from borne.drivers.sensirion import crc8

_CMD_START_PERIODIC = const(0x21B1)
_CMD_READ_MEASUREMENT = const(0xEC05)
_CMD_DATA_READY = const(0xE4B8)
_CMD_STOP_PERIODIC = const(0x3F86)
_CMD_MEASURE_SINGLE_SHOT = const(0x219D)
SINGLE_SHOT_MS = const(5000)  # its execution time (datasheet v1.3 §3.10.1): the chip answers nothing meanwhile
_STOP_MS = const(500)  # the sensor ignores commands this long after a stop
_COMMAND_MS = const(1)  # execution time of a read command before its answer can be read

ADDRESS = const(0x62)


class SCD4x:
    """An SCD4x on `i2c`. A sensor that does not answer raises OSError(ENODEV); an answer whose CRC
    does not match raises OSError(EIO)."""

    def __init__(self, i2c, address=ADDRESS):
        self._i2c = i2c
        self._address = address
        self._command = bytearray(2)
        self._answer = bytearray(9)
        view = memoryview(self._answer)
        self._words = {1: view[:3], 3: view[:9]}  # the answer of n words, made once: a poll allocates nothing

    def _send(self, command):
        self._command[0] = command >> 8
        self._command[1] = command & 0xFF
        self._i2c.writeto(self._address, self._command)

    def _read_words(self, command, n):
        """Send a read command, then read `n` words, checking each CRC. Returns the buffer."""
        self._send(command)
        time.sleep_ms(_COMMAND_MS)
        answer = self._words[n]
        self._i2c.readfrom_into(self._address, answer)
        for i in range(0, 3 * n, 3):
            if crc8(answer, i, i + 2) != answer[i + 2]:
                raise OSError(5, "SCD4x bad CRC")  # EIO
        return answer

    def start(self):
        """Start periodic measurement: the first sample is ready 5 s later."""
        self._send(_CMD_START_PERIODIC)

    def measure_single_shot(self):
        """Start one measurement, ready SINGLE_SHOT_MS later (read it with read()). The sensor refuses
        it (NACK: OSError(ENODEV)) during a periodic measurement: stop() that first."""
        self._send(_CMD_MEASURE_SINGLE_SHOT)

    def stop(self):
        """Stop periodic measurement (needed before other configuration commands); takes 500 ms."""
        self._send(_CMD_STOP_PERIODIC)
        time.sleep_ms(_STOP_MS)

    def data_ready(self):
        a = self._read_words(_CMD_DATA_READY, 1)
        return bool((a[0] << 8 | a[1]) & 0x07FF)

    def read(self):
        """The latest sample: (CO2 in ppm, temperature in 0.01 °C, relative humidity in 0.01 %).

        Call when data_ready(): with no new sample the sensor NACKs, which raises OSError(ENODEV)."""
        a = self._read_words(_CMD_READ_MEASUREMENT, 3)
        raw_t = a[3] << 8 | a[4]
        raw_h = a[6] << 8 | a[7]
        return a[0] << 8 | a[1], (17500 * raw_t >> 16) - 4500, 10000 * raw_h >> 16
