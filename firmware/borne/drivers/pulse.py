# Pulses of an energy meter's S0 output (an open collector closed for 30 to 120 ms per Wh, say),
# counted by a GPIO interrupt.
import time

from machine import Pin


class PulseCounter:
    """`PulseCounter(pin)` counts the pulses on `pin` (a Pin or a GPIO number): `count` since boot,
    `take()` since the last take.

    A pulse is an `edge` (IRQ_FALLING: the S0 contact closing to ground against `pull`) after the
    line rested at least `debounce_ms` in the other state: a contact's bounces are not pulses."""

    def __init__(self, pin, pull=Pin.PULL_UP, edge=Pin.IRQ_FALLING, debounce_ms=20):
        self.count = 0
        self._taken = 0
        self._active = 0 if edge == Pin.IRQ_FALLING else 1  # the level a pulse starts
        self._debounce_ms = debounce_ms
        self._rested_since = time.ticks_add(time.ticks_ms(), -debounce_ms)
        self._pin = pin if isinstance(pin, Pin) else Pin(pin)
        self._pin.init(Pin.IN, pull)
        # Both edges: the other one says since when the line rests.
        self._pin.irq(self._edge, Pin.IRQ_FALLING | Pin.IRQ_RISING)

    def _edge(self, pin):
        # In the IRQ: small integers only, no allocation.
        now = time.ticks_ms()
        if pin.value() != self._active:
            self._rested_since = now
        elif time.ticks_diff(now, self._rested_since) >= self._debounce_ms:
            self.count += 1
            self._rested_since = now  # what follows soon, bounce or not, is this pulse's

    def take(self):
        """The pulses since the last take (or since boot)."""
        count = self.count  # read once: the IRQ may add one meanwhile, which the next take gets
        pulses = count - self._taken
        self._taken = count
        return pulses
