# A Bosch BME280 on I2C, at the level of its registers: chip id, calibration (NVM) data, control
# registers, and raw ADC values computed from the air the host set by inverting the datasheet's
# floating-point compensation (section 8.1), so a driver's integer compensation is checked for real.
# A forced measurement takes the datasheet's maximum time (section 9.1: 1.25 ms, plus 2.3 ms per
# oversampled T, P and H conversion, plus 0.575 ms for P and for H), with status.measuring set
# meanwhile (section 5.4.4); the host may make the first one after power-on slower
# (`first_sample_ms`), as a part that is slow to start.
import struct
import time

from i2c_bus import Chip

_CHIP_ID = 0x60
# Calibration words of a real part (the datasheet's worked example for T and P; H from a sensor).
_T = (27504, 26435, -1000)
_P = (36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000)
_H = (75, 362, 0, 313, 50, 30)
_REG_CALIB_TP = 0x88
_REG_H1 = 0xA1
_REG_CHIP_ID = 0xD0
_REG_RESET = 0xE0
_REG_CALIB_H = 0xE1
_REG_CTRL_HUM = 0xF2
_REG_STATUS = 0xF3
_REG_CTRL_MEAS = 0xF4
_REG_CONFIG = 0xF5
_REG_DATA = 0xF7
_SKIPPED_20 = 0x80000  # what a skipped temperature or pressure measurement reads
_SKIPPED_16 = 0x8000


def temperature(adc_t):
    """The datasheet's double-precision compensation: (°C, t_fine)."""
    t1, t2, t3 = _T
    var1 = (adc_t / 16384 - t1 / 1024) * t2
    var2 = (adc_t / 131072 - t1 / 8192) ** 2 * t3
    return (var1 + var2) / 5120, int(var1 + var2)


def pressure(adc_p, t_fine):
    """Pa."""
    p1, p2, p3, p4, p5, p6, p7, p8, p9 = _P
    var1 = t_fine / 2 - 64000
    var2 = var1 * var1 * p6 / 32768 + var1 * p5 * 2
    var2 = var2 / 4 + p4 * 65536
    var1 = (p3 * var1 * var1 / 524288 + p2 * var1) / 524288
    var1 = (1 + var1 / 32768) * p1
    p = (1048576 - adc_p - var2 / 4096) * 6250 / var1
    return p + (p9 * p * p / 2147483648 + p * p8 / 32768 + p7) / 16


def humidity(adc_h, t_fine):
    """%RH."""
    h1, h2, h3, h4, h5, h6 = _H
    h = t_fine - 76800
    h = (adc_h - (h4 * 64 + h5 / 16384 * h)) * (h2 / 65536 * (1 + h6 / 67108864 * h * (1 + h3 / 67108864 * h)))
    return min(max(h * (1 - h1 * h / 524288), 0), 100)


def _invert(function, target, bits, rising=True):
    """The raw value in [0, 2**bits) whose compensated value is nearest `target` (monotonic function)."""
    low, high = 0, (1 << bits) - 1
    while low < high:
        middle = (low + high) // 2
        if (function(middle) < target) == rising:
            low = middle + 1
        else:
            high = middle
    return low


class BME280(Chip):
    def __init__(self, air):
        super().__init__(air)
        self.registers = bytearray(256)
        self.pointer = 0
        calib = struct.pack("<HhhHhhhhhhhh", *_T, *_P)
        self.registers[_REG_CALIB_TP : _REG_CALIB_TP + len(calib)] = calib
        h1, h2, h3, h4, h5, h6 = _H
        self.registers[_REG_H1] = h1
        self.registers[_REG_CALIB_H : _REG_CALIB_H + 7] = struct.pack(
            "<hBBBBb", h2, h3, h4 >> 4, (h4 & 0x0F) | (h5 & 0x0F) << 4, h5 >> 4, h6
        )
        self.registers[_REG_CHIP_ID] = _CHIP_ID
        self.done_at = time.ticks_ms()  # the end of the measurement under way, if any
        self.first_sample_ms = None  # the host's: the first measurement lasts this long
        self.measured = False
        self.reset()

    def configure(self, state):
        self.first_sample_ms = state.get("first_sample_ms")
        self.latch_air()

    def latch_air(self):
        """Work out the raw values of the air the host set (every i2c_chips message configures the chip):
        the bisection makes kilobytes of floats, which the chip makes none of, so it runs here, in the
        host's call, and not in the firmware's, where its garbage would count against the ESP32's heap."""
        air = self.air
        adc_t = _invert(lambda raw: temperature(raw)[0], air["temperature_c"], 20)
        t_fine = temperature(adc_t)[1]
        adc_p = _invert(lambda raw: pressure(raw, t_fine), air["pressure_hpa"] * 100, 20, rising=False)
        adc_h = _invert(lambda raw: humidity(raw, t_fine), air["humidity_pct"], 16)
        self.adc = (adc_t, adc_p, adc_h)

    def measuring(self):
        return time.ticks_diff(self.done_at, time.ticks_ms()) > 0

    def reset(self):
        for register in (_REG_CTRL_HUM, _REG_STATUS, _REG_CTRL_MEAS, _REG_CONFIG):
            self.registers[register] = 0
        self.registers[_REG_DATA : _REG_DATA + 8] = b"\x80\x00\x00\x80\x00\x00\x80\x00"

    def write(self, data):
        # The first byte sets the register pointer; then (register, value) pairs, as the datasheet's
        # I2C write has no auto-increment.
        if data:
            self.pointer = data[0]
        rest = data[1:]
        if rest:
            self.put(self.pointer, rest[0])
            for i in range(1, len(rest) - 1, 2):
                self.put(rest[i], rest[i + 1])
        return True

    def put(self, register, value):
        if register == _REG_RESET and value == 0xB6:
            self.reset()
        elif register in (_REG_CTRL_HUM, _REG_CONFIG):
            self.registers[register] = value
        elif register == _REG_CTRL_MEAS:
            self.registers[register] = value
            if value & 0x03 in (1, 2) and not self.measuring():  # forced: one measurement, then back to sleep
                self.measure()
                self.registers[register] = value & 0xFC
                self.done_at = time.ticks_add(time.ticks_ms(), self.measure_ms())
                self.measured = True

    def measure_ms(self):
        """How long the measurement just started takes (datasheet section 9.1, maximum)."""
        if not self.measured and self.first_sample_ms is not None:
            return self.first_sample_ms
        osrs = (self.registers[_REG_CTRL_MEAS] >> 5, self.registers[_REG_CTRL_MEAS] >> 2 & 7)
        osrs += (self.registers[_REG_CTRL_HUM] & 7,)
        samples = [0 if code == 0 else 1 << min(code - 1, 4) for code in osrs]  # codes 1..5: x1..x16
        microseconds = 1250 + 2300 * samples[0]
        microseconds += (2300 * samples[1] + 575 if samples[1] else 0) + (2300 * samples[2] + 575 if samples[2] else 0)
        return (microseconds + 999) // 1000

    def read(self, n):
        # status.measuring (bit 3) while a conversion runs; the data registers hold the last results.
        self.registers[_REG_STATUS] = 0x08 if self.measuring() else 0x00
        reads_data = self.pointer < _REG_DATA + 8 and self.pointer + n > _REG_DATA
        if self.registers[_REG_CTRL_MEAS] & 0x03 == 3 and reads_data:
            self.measure()  # normal mode: the data registers always hold a fresh measurement
        out = bytes(self.registers[(self.pointer + i) & 0xFF] for i in range(n))
        self.pointer = (self.pointer + n) & 0xFF
        return out

    def measure(self):
        """Latch raw ADC values for the air, with the oversampling set (0 skips a measurement)."""
        ctrl = self.registers[_REG_CTRL_MEAS]
        adc_t, adc_p, adc_h = self.adc
        if not ctrl >> 5:
            adc_t = _SKIPPED_20
        if not (ctrl >> 2) & 0x07:
            adc_p = _SKIPPED_20
        if not self.registers[_REG_CTRL_HUM] & 0x07:
            adc_h = _SKIPPED_16
        # 20-bit values: MSB, LSB, then XLSB in bits 7..4.
        raw = bytes((adc_p >> 12, adc_p >> 4 & 0xFF, (adc_p & 0x0F) << 4, adc_t >> 12, adc_t >> 4 & 0xFF))
        self.registers[_REG_DATA : _REG_DATA + 8] = raw + bytes(((adc_t & 0x0F) << 4, adc_h >> 8, adc_h & 0xFF))
