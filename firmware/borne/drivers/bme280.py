# Bosch BME280 temperature, humidity and pressure sensor on I2C, in forced mode (one measurement per
# read, the sensor sleeps between: what a node that reports every few minutes wants). Compensation is
# the datasheet's integer code (section 4.2.3), so readings are exact integers, with no floats.
import struct
import time

import machine
from micropython import const

_REG_CALIB_TP = const(0x88)  # 0x88..0x9F: T1..T3, P1..P9
_REG_H1 = const(0xA1)
_REG_CHIP_ID = const(0xD0)
_REG_CALIB_H = const(0xE1)  # 0xE1..0xE7: H2..H6
_REG_CTRL_HUM = const(0xF2)
_REG_STATUS = const(0xF3)
_REG_CTRL_MEAS = const(0xF4)
_REG_DATA = const(0xF7)  # 0xF7..0xFE: pressure, temperature (20 bits each), humidity (16 bits)
_CHIP_ID = const(0x60)
_OVERSAMPLE_X1 = const(0x01)
_MODE_FORCED = const(0x01)
_STATUS_MEASURING = const(0x08)
_MEASURE_POLLS = const(20)  # poll 1 ms apart
# x1 oversampling of all three takes 8 ms, 9.3 at most (datasheet §9.1: 1.25 + 2.3 + 2 x (2.3 + 0.575) ms).
_MEASURE_MAX_MS = const(10)

ADDRESS = const(0x76)  # SDO to GND; 0x77 with SDO to VDDIO


class BME280:
    """A BME280 on `i2c`. Raises OSError(ENODEV) if nothing answers at `address`, or if what answers
    is not a BME280 (a BMP280 has no humidity)."""

    def __init__(self, i2c, address=ADDRESS):
        self._i2c = i2c
        self._address = address
        self._buf = bytearray(26)
        if self._read(_REG_CHIP_ID, 1)[0] != _CHIP_ID:
            raise OSError(19, "not a BME280")
        self._t = struct.unpack("<Hhh", self._read(_REG_CALIB_TP, 6))
        self._p = struct.unpack("<Hhhhhhhhh", self._read(_REG_CALIB_TP + 6, 18))
        h1 = self._read(_REG_H1, 1)[0]
        h2, h3, e4, e5, e6, h6 = struct.unpack("<hBbBbb", self._read(_REG_CALIB_H, 7))
        self._h = (h1, h2, h3, e4 << 4 | e5 & 0x0F, e6 << 4 | e5 >> 4, h6)

    def _read(self, register, n):
        view = memoryview(self._buf)[:n]
        self._i2c.readfrom_mem_into(self._address, register, view)
        return view

    def read(self, light_sleep=False):
        """Measure once: (temperature in 0.01 °C, relative humidity in 0.01 %, pressure in Pa).
        `light_sleep`: nothing else runs on this node (it deep-sleeps between readings), so the CPU
        light-sleeps through the measurement's longest time instead of polling it awake."""
        i2c, address = self._i2c, self._address
        # ctrl_hum takes effect only at the next write of ctrl_meas, which starts the measurement.
        i2c.writeto_mem(address, _REG_CTRL_HUM, bytes((_OVERSAMPLE_X1,)))
        i2c.writeto_mem(address, _REG_CTRL_MEAS, bytes((_OVERSAMPLE_X1 << 5 | _OVERSAMPLE_X1 << 2 | _MODE_FORCED,)))
        if light_sleep:
            machine.lightsleep(_MEASURE_MAX_MS)
        for _ in range(_MEASURE_POLLS):
            if not self._read(_REG_STATUS, 1)[0] & _STATUS_MEASURING:
                break
            time.sleep_ms(1)
        else:
            raise OSError(110, "BME280 measurement did not end")  # ETIMEDOUT
        d = self._read(_REG_DATA, 8)
        adc_p = d[0] << 12 | d[1] << 4 | d[2] >> 4
        adc_t = d[3] << 12 | d[4] << 4 | d[5] >> 4
        adc_h = d[6] << 8 | d[7]
        t_fine = self._t_fine(adc_t)
        return (t_fine * 5 + 128) >> 8, self._humidity(adc_h, t_fine) * 100 >> 10, self._pressure(adc_p, t_fine) >> 8

    def _t_fine(self, adc):
        t1, t2, t3 = self._t
        var1 = (((adc >> 3) - (t1 << 1)) * t2) >> 11
        var2 = (((((adc >> 4) - t1) * ((adc >> 4) - t1)) >> 12) * t3) >> 14
        return var1 + var2

    def _pressure(self, adc, t_fine):
        # Pa in Q24.8.
        p1, p2, p3, p4, p5, p6, p7, p8, p9 = self._p
        var1 = t_fine - 128000
        var2 = var1 * var1 * p6 + ((var1 * p5) << 17) + (p4 << 35)
        var1 = ((var1 * var1 * p3) >> 8) + ((var1 * p2) << 12)
        var1 = (((1 << 47) + var1) * p1) >> 33
        if var1 == 0:
            return 0  # avoids a division by zero, as the datasheet does
        p = 1048576 - adc
        p = (((p << 31) - var2) * 3125) // var1
        var1 = (p9 * (p >> 13) * (p >> 13)) >> 25
        var2 = (p8 * p) >> 19
        return ((p + var1 + var2) >> 8) + (p7 << 4)

    def _humidity(self, adc, t_fine):
        # %RH in Q22.10.
        h1, h2, h3, h4, h5, h6 = self._h
        x = t_fine - 76800
        v = (((adc << 14) - (h4 << 20) - h5 * x) + 16384) >> 15
        v *= (((((((x * h6) >> 10) * (((x * h3) >> 11) + 32768)) >> 10) + 2097152) * h2) + 8192) >> 14
        v -= ((((v >> 15) * (v >> 15)) >> 7) * h1) >> 4
        return min(max(v, 0), 419430400) >> 12
