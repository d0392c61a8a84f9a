"""The node's configured sensors, read into one telemetry frame's values.

A sensor that is missing or fails is a fault for this reading (its bits in `faults`, which the
status frame carries), never a crash; a missing one is looked for again at every reading, so a
sensor plugged in later is found.

An SCD4x measures on its own every 5 s (periodic measurement), except on a node that deep-sleeps
between readings (`deep_sleep`): it would never be awake 5 s after starting it, so `measure()` asks
for one sample (single shot, SCD41) and waits the 5 s it takes. Nothing else runs on such a node, so
its waits for a sensor's measurement are spent in light sleep.
"""

import machine

from borne.contract import (
    BATTERY_MV,
    CO2_PPM,
    HUMIDITY_PCT,
    METER_PULSES,
    PRESSURE_HPA,
    TELEMETRY_FIELDS,
    TEMPERATURE_C,
)

_BIT_T = 1 << TEMPERATURE_C
_BIT_H = 1 << HUMIDITY_PCT
_BIT_P = 1 << PRESSURE_HPA
_QUANTITIES = len(TELEMETRY_FIELDS)  # TEMPERATURE_C … BATTERY_MV


def telemetry_raw(field, value, per=1):
    """Telemetry field `field`'s value on the wire, round((value - offset) * divisor / step) as its
    TELEMETRY_FIELDS row says, for `value`, a whole number in 1/`per` of the field's unit: 2153 with
    `per` 100 is 21.53 °C.

    The drivers read whole numbers (0.01 °C, 0.01 %, Pa, mV), which stay whole here, rounded half to
    even as payload_codec rounds: a reading reaches the frame without a float on the heap. Not clamped
    to the wire's range: Uplink.telemetry does that.
    """
    _, _, _, _, mul, step, offset = TELEMETRY_FIELDS[field]
    if mul == step == per == 1 and not offset:
        return value  # a count (CO2, pulses: up to 2**32 - 1, past a small int) goes as it is
    numerator = (value - offset * per) * mul
    divisor = step * per
    whole = numerator // divisor
    rest = numerator - whole * divisor
    if 2 * rest > divisor or (2 * rest == divisor and whole & 1):
        whole += 1
    return whole


def _bme280(bus):
    from borne.drivers.bme280 import BME280

    return BME280(bus)


def _scd4x(bus):
    from borne.drivers.scd4x import SCD4x

    sensor = SCD4x(bus)
    stop_scd4x(sensor)  # after a warm reset it may still be measuring, and would refuse to start
    sensor.start()
    return sensor


def _scd4x_idle(bus):
    from borne.drivers.scd4x import SCD4x

    return SCD4x(bus)


def _single_shot(scd4x):
    try:
        scd4x.measure_single_shot()
    except OSError:
        if not stop_scd4x(scd4x):  # it does not answer at all
            raise
        scd4x.measure_single_shot()  # it was measuring periodically (configured so before): it refused


def stop_scd4x(scd4x):
    """Stop its periodic measurement, if it was measuring: True if it was."""
    try:
        scd4x.stop()
    except OSError:
        return False  # it was not measuring: the stop is NACKed
    return True


def _sht4x(bus):
    from borne.drivers.sht4x import SHT4x

    return SHT4x(bus)


class Sensors:
    def __init__(self, names, board, i2c, deep_sleep=False):
        self.names = names
        self._deep_sleep = deep_sleep  # nothing else runs: the SCD4x measures once per reading, waits in light sleep
        self._i2c = i2c  # the board's sensor bus, shared with a PN532
        self._drivers: dict = {}  # name -> driver, once it answered
        self._co2 = None  # the SCD4x's last sample: it measures every 5 s, on its own, or once per measure()
        self.values = [None] * _QUANTITIES
        self.faults = 0  # telemetry bitmap of the quantities whose sensor failed at the last reading
        if "battery" in names and board.get("battery"):
            from borne.drivers.battery import Battery

            self._drivers["battery"] = Battery(board["battery"]["pin"], board["battery"]["ratio"])
        if "pulse" in names and board.get("pulse") is not None:
            from borne.drivers.pulse import PulseCounter

            self._drivers["pulse"] = PulseCounter(board["pulse"])

    def _driver(self, name, make):
        driver = self._drivers.get(name)
        if driver is None:
            driver = self._drivers[name] = make(self._i2c)  # OSError if it does not answer
        return driver

    async def measure(self):
        """read(), after the SCD4x's single shot on a node that sleeps between readings."""
        if self._deep_sleep and "scd4x" in self.names:
            self._co2 = None
            try:
                _single_shot(self._driver("scd4x", _scd4x_idle))
                from borne.drivers.scd4x import SINGLE_SHOT_MS

                machine.lightsleep(SINGLE_SHOT_MS)  # the watchdog's 30 s allow it
            except OSError:
                self._drivers.pop("scd4x", None)  # read() looks for it again, and counts the fault
        return self.read()

    def read(self):
        """Read every configured sensor: `values`, each field's value on the wire (telemetry_raw; None where
        nothing was measured), and `faults`."""
        values = self.values
        for i in range(_QUANTITIES):
            values[i] = None
        faults = 0
        names = self.names
        # Temperature and humidity from the most precise sensor that has them: SHT4x, BME280, SCD4x.
        if "scd4x" in names:
            try:
                scd = self._driver("scd4x", _scd4x_idle if self._deep_sleep else _scd4x)
                if scd.data_ready():
                    self._co2 = scd.read()
                elif self._deep_sleep:
                    raise OSError(110, "SCD4x single shot not ready")  # ETIMEDOUT: no sample for this reading
            except OSError:
                self._drivers.pop("scd4x", None)
                self._co2 = None
                faults |= 1 << CO2_PPM
            if self._co2 is not None:
                values[CO2_PPM] = self._co2[0]
                values[TEMPERATURE_C] = telemetry_raw(TEMPERATURE_C, self._co2[1], 100)
                values[HUMIDITY_PCT] = telemetry_raw(HUMIDITY_PCT, self._co2[2], 100)
        if "bme280" in names:
            try:
                t, h, p = self._driver("bme280", _bme280).read(self._deep_sleep)  # 0.01 °C, 0.01 %, Pa
                values[TEMPERATURE_C] = telemetry_raw(TEMPERATURE_C, t, 100)
                values[HUMIDITY_PCT] = telemetry_raw(HUMIDITY_PCT, h, 100)
                values[PRESSURE_HPA] = telemetry_raw(PRESSURE_HPA, p, 100)
            except OSError:
                self._drivers.pop("bme280", None)
                faults |= _BIT_T | _BIT_H | _BIT_P
        if "sht4x" in names:
            try:
                t, h = self._driver("sht4x", _sht4x).read()  # 0.01 °C, 0.01 %
                values[TEMPERATURE_C] = telemetry_raw(TEMPERATURE_C, t, 100)
                values[HUMIDITY_PCT] = telemetry_raw(HUMIDITY_PCT, h, 100)
            except OSError:
                self._drivers.pop("sht4x", None)
                faults |= _BIT_T | _BIT_H
        for name, bit in (("battery", BATTERY_MV), ("pulse", METER_PULSES)):
            if name not in names:
                continue
            driver = self._drivers.get(name)
            if driver is None:
                faults |= 1 << bit  # the board profile has no such input
            elif name == "battery":
                values[bit] = telemetry_raw(BATTERY_MV, driver.millivolts())
            else:
                values[bit] = driver.count
        # A quantity another sensor did measure is not a fault.
        for i in range(_QUANTITIES):
            if values[i] is not None:
                faults &= ~(1 << i)
        self.faults = faults
        return values
