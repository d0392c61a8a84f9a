"""What a radio driver waits for after starting a send or a receive: the IRQ of its DIO line, a
timeout, or standby() calling the wait off. Shared by the SX127x (DIO0) and SX126x (DIO1) drivers."""

import asyncio
import time

import machine
from micropython import const

# How often a wait with a deadline looks whether the IRQ came. asyncio.wait_for_ms would put the
# deadline on the flag's wait, at the cost of two tasks and their coroutines at every wait (about
# 460 bytes of heap, `make bench`); a sleep allocates nothing, and the IRQ keeps its own time.
_POLL_MS = const(10)


class DioWait:
    def __init__(self, pin):
        self._pin = pin  # the DIO line, which stays high until the driver clears the chip's IRQ
        self._flag = asyncio.ThreadSafeFlag()  # set from the pin's (soft) IRQ: what a wait without deadline awaits
        self._fired = False  # the IRQ came, and no wait took it yet
        self._waiting = False
        # Which wait is the current one. A wait cancelled while it sleeps between two looks at the
        # flag must not take the IRQ of the operation that started meanwhile (standby() then send()).
        self._turn = 0
        self.ticks_ms = time.ticks_ms()  # when the last IRQ came (or a light sleep found the line high)

    def irq(self, pin):
        """The pin's IRQ handler: the chip raised its DIO line."""
        self.ticks_ms = time.ticks_ms()
        self._fired = True
        self._flag.set()

    def arm(self):
        """Forget an IRQ that came before the operation about to start."""
        self._fired = False
        self._flag.clear()

    def cancel(self):
        """End a wait under way: it returns None."""
        if self._waiting:
            self._waiting = False
            self._flag.set()

    async def wait(self, timeout_ms, light_sleep_ms=0):
        """Wait for the IRQ (True; `ticks_ms` says when it came), `timeout_ms` (False; None: no limit)
        or cancel() (None).

        `light_sleep_ms`: first sleep that long in light sleep, when nothing else needs to run (a node
        that deep-sleeps between reports). The ESP32 stops its clocks then and may miss the IRQ's edge,
        so after it the line's level says whether the chip raised it."""
        if light_sleep_ms > 0:
            machine.lightsleep(light_sleep_ms)
            if self._pin.value():
                self.ticks_ms = time.ticks_ms()
                return True
            if timeout_ms is not None:
                timeout_ms -= light_sleep_ms
        self._turn = turn = (self._turn + 1) & 0xFFFF
        self._waiting = True
        if timeout_ms is None:
            while self._waiting and self._turn == turn and not self._fired:
                await self._flag.wait()
        else:
            deadline = time.ticks_add(time.ticks_ms(), max(timeout_ms, 0))
            while self._waiting and self._turn == turn and not self._fired:
                left = time.ticks_diff(deadline, time.ticks_ms())
                if left <= 0:
                    self._waiting = False
                    return False
                await asyncio.sleep_ms(min(left, _POLL_MS))
        if not self._waiting or self._turn != turn:
            return None
        self._waiting = False
        self._fired = False  # taken: the next wait waits for the next IRQ
        self._flag.clear()
        return True
