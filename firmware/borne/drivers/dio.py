"""What a radio driver waits for after starting a send or a receive: the IRQ of its DIO line, a
timeout, or standby() calling the wait off. Shared by the SX127x (DIO0) and SX126x (DIO1) drivers.

A DIO line that never reaches the MCU (a cold solder joint, a wrong pin in the board profile) leaves
a chip that works and answers on SPI: its IRQ flags say what the line should have said. So a wait
that ends without the IRQ asks the chip (the driver's `pending`: its IRQ flags over SPI), and so does
a wait without deadline once a second (as micropython-lib's lora-async modem does, "belts and braces"
against a missed IRQ); flags that are set while the IRQ still does not come one look later mean a dead
line (`dead`), and from then on every wait polls the flags instead (`_IRQ_POLL_MS`), the IRQ still
taken should it come."""

import asyncio
import time

import machine
from micropython import const

# How often a wait looks whether the IRQ came. asyncio.wait_for_ms would put the deadline on a flag's
# wait, at the cost of two tasks and their coroutines at every wait (about 460 bytes of heap, `make
# bench`); a sleep allocates nothing, and the IRQ keeps its own time.
_POLL_MS = const(10)
# Once the line is found dead, how often a wait reads the chip's IRQ flags over SPI: a few bytes on
# the bus, and a time of TX-done or RX-done late by this much at most.
_IRQ_POLL_MS = const(5)
# How often a wait asks the chip whether the line is dead when the IRQ does not come.
_CHECK_MS = const(1000)


class DioWait:
    def __init__(self, pin, pending):
        self._pin = pin  # the DIO line, which stays high until the driver clears the chip's IRQ
        self._pending = pending  # the driver's: the IRQ flags the line shows, read over SPI (0: none, or no answer)
        self._fired = False  # the IRQ came, and no wait took it yet
        self._waiting = False
        self.dead = False  # the line never rose while the chip's flags said it should: waits poll the flags
        self.polled = False  # the last wait ended on the flags read over SPI, not on the IRQ
        self.ticks_ms = time.ticks_ms()  # when the last IRQ came (or a poll or a light sleep found it)

    def irq(self, pin):
        """The pin's IRQ handler: the chip raised its DIO line."""
        self.ticks_ms = time.ticks_ms()
        self._fired = True

    def arm(self):
        """Forget an IRQ that came before the operation about to start."""
        self._fired = False

    def cancel(self):
        """End a wait under way: it returns None."""
        self._waiting = False

    async def wait(self, timeout_ms, light_sleep_ms=0):
        """Wait for the IRQ (True; `ticks_ms` says when it came), `timeout_ms` (False; None: no limit)
        or cancel() (None). On a dead line, the chip's IRQ flags set stand for the IRQ (True, `polled`).

        `light_sleep_ms`: first sleep that long in light sleep, when nothing else needs to run (a node
        that deep-sleeps between reports). The ESP32 stops its clocks then and may miss the IRQ's edge,
        so after it the line's level says whether the chip raised it."""
        self.polled = False
        if light_sleep_ms > 0:
            machine.lightsleep(light_sleep_ms)
            if self._pin.value():
                self.ticks_ms = time.ticks_ms()
                return True
            if timeout_ms is not None:
                timeout_ms -= light_sleep_ms
        self._waiting = True
        started = time.ticks_ms()
        checked = started
        seen = False  # the flags were set at the last look, and the IRQ had not come
        while self._waiting and not self._fired:
            now = time.ticks_ms()
            if self.dead or seen or time.ticks_diff(now, checked) >= _CHECK_MS:
                checked = now
                if not self._pending():
                    seen = False
                elif self.dead:
                    return self._polled(now)
                elif seen:  # still set one look later, and still no IRQ: the line is dead
                    self.dead = True
                    return self._polled(now)
                else:
                    seen = True  # an IRQ on its way may still come: look again
            period = _IRQ_POLL_MS if self.dead or seen else _POLL_MS
            if timeout_ms is not None:
                left = timeout_ms - time.ticks_diff(now, started)
                if left <= 0:
                    if self.dead or not (seen or self._pending()):
                        self._waiting = False
                        return False
                    seen = True  # the flags are set at the deadline: one look later tells a dead line
                    checked = now
                else:
                    period = min(left, period)
            await asyncio.sleep_ms(period)
        if not self._waiting:
            return None
        self._waiting = False
        self._fired = False  # taken: the next wait waits for the next IRQ
        return True

    def tx_done_ms(self, started, airtime_ms):
        """When a send started at `started` ended: the IRQ's time; on the flags read over SPI (no IRQ to
        note it), the end of its time on air if that is sooner than the read that found it."""
        if self.polled:
            ended = time.ticks_add(started, airtime_ms)
            if time.ticks_diff(self.ticks_ms, ended) > 0:
                return ended
        return self.ticks_ms

    def _polled(self, now):
        self._waiting = False
        self._fired = False
        self.polled = True
        self.ticks_ms = now
        return True
