# Sensirion SHT4x (SHT40/41/45) temperature and humidity sensor on I2C. Each command is one byte; the
# answer is two 16-bit words, each followed by its CRC-8. The sensor NACKs while it measures.
import time

from micropython import const

from borne.drivers.sensirion import crc8

_CMD_MEASURE_HIGH_PRECISION = const(0xFD)
_CMD_SERIAL_NUMBER = const(0x89)
_CMD_SOFT_RESET = const(0x94)
_MEASURE_MS = const(10)  # high precision takes 8.3 ms at most
_COMMAND_MS = const(1)  # serial number and soft reset

ADDRESS = const(0x44)  # SHT4x-A; the -B and -C variants answer at 0x45 and 0x46


class SHT4x:
    """An SHT4x on `i2c`. A sensor that does not answer raises OSError(ENODEV); an answer whose CRC
    does not match raises OSError(EIO)."""

    def __init__(self, i2c, address=ADDRESS):
        self._i2c = i2c
        self._address = address
        self._command = bytearray(1)
        self._answer = bytearray(6)

    def _exchange(self, command, wait_ms):
        """Send a command, wait for it, then read its two words, checking each CRC."""
        self._command[0] = command
        self._i2c.writeto(self._address, self._command)
        time.sleep_ms(wait_ms)
        a = self._answer
        self._i2c.readfrom_into(self._address, a)
        if crc8(a, 0, 2) != a[2] or crc8(a, 3, 5) != a[5]:
            raise OSError(5, "SHT4x bad CRC")  # EIO
        return a

    def read(self):
        """Measure once, with high precision: (temperature in 0.01 °C, relative humidity in 0.01 %, 0 to 10000).

        The datasheet's conversion (section 4.6), T = -45 + 175 * S / 65535 and RH = -6 + 125 * S / 65535,
        in whole numbers rounded half up: 17500 / 65535 is 3500 / 13107, whose products with a 16-bit S
        stay small ints, so a reading puts no float on the heap."""
        a = self._exchange(_CMD_MEASURE_HIGH_PRECISION, _MEASURE_MS)
        temperature = -4500 + (7000 * (a[0] << 8 | a[1]) + 13107) // 26214
        humidity = -600 + (5000 * (a[3] << 8 | a[4]) + 13107) // 26214
        return temperature, min(max(humidity, 0), 10000)  # the datasheet says to crop it so

    def serial_number(self):
        a = self._exchange(_CMD_SERIAL_NUMBER, _COMMAND_MS)
        return a[0] << 24 | a[1] << 16 | a[3] << 8 | a[4]

    def reset(self):
        """Soft reset: back to the state after power-on."""
        self._command[0] = _CMD_SOFT_RESET
        self._i2c.writeto(self._address, self._command)
        time.sleep_ms(_COMMAND_MS)
