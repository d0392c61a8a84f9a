# The battery's voltage, read through a resistor divider on an ADC pin (e.g. 100k/100k: ratio 2).
from machine import ADC, Pin
from micropython import const

_SAMPLES = const(8)  # averaged: one ESP32 ADC reading wanders by tens of millivolts


class Battery:
    """`Battery(pin, ratio).millivolts()`: the voltage at `pin` (a Pin or a GPIO number) times the
    divider's `ratio`. `atten` sets the ADC's range: 11 dB reads up to about 2.5 V at the pin."""

    def __init__(self, pin, ratio, atten=ADC.ATTN_11DB):
        self._adc = ADC(pin if isinstance(pin, Pin) else Pin(pin), atten=atten)
        self._ratio_per_mille = round(ratio * 1000)  # whole numbers from here on: a reading takes no float

    def millivolts(self):
        total = 0
        for _ in range(_SAMPLES):
            total += self._adc.read_uv()
        # The pin's voltage in 0.1 mV, then times the ratio: every product stays a small int (under 2**30).
        tenths = (total + _SAMPLES * 50) // (_SAMPLES * 100)
        return (tenths * self._ratio_per_mille + 5000) // 10000
