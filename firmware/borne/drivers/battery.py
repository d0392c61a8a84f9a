# The battery's voltage, read through a resistor divider on an ADC pin (e.g. 100k/100k: ratio 2).
from machine import ADC, Pin
from micropython import const

_SAMPLES = const(8)  # averaged: one ESP32 ADC reading wanders by tens of millivolts


class Battery:
    """`Battery(pin, ratio).millivolts()`: the voltage at `pin` (a Pin or a GPIO number) times the
    divider's `ratio`. `atten` sets the ADC's range: 11 dB reads up to about 2.5 V at the pin."""

    def __init__(self, pin, ratio, atten=ADC.ATTN_11DB):
        self._adc = ADC(pin if isinstance(pin, Pin) else Pin(pin), atten=atten)
        self._ratio = ratio

    def millivolts(self):
        total = 0
        for _ in range(_SAMPLES):
            total += self._adc.read_uv()
        return round(total * self._ratio / (_SAMPLES * 1000))
