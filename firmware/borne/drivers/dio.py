"""What a radio driver waits for after starting a send or a receive: the IRQ of its DIO line, a
timeout, or standby() calling the wait off. Shared by the SX127x (DIO0) and SX126x (DIO1) drivers."""

import asyncio

import machine


class DioWait:
    def __init__(self, pin):
        self._pin = pin  # the DIO line, which stays high until the driver clears the chip's IRQ
        self._flag = asyncio.ThreadSafeFlag()  # set from the pin's (soft) IRQ
        self._waiting = False

    def irq(self, pin):
        """The pin's IRQ handler: the chip raised its DIO line."""
        self._flag.set()

    def arm(self):
        """Forget an IRQ that came before the operation about to start."""
        self._flag.clear()

    def cancel(self):
        """End a wait under way: it returns None."""
        if self._waiting:
            self._waiting = False
            self._flag.set()

    async def wait(self, timeout_ms, light_sleep_ms=0):
        """Wait for the IRQ (True), `timeout_ms` (False; None: no limit) or cancel() (None).

        `light_sleep_ms`: first sleep that long in light sleep, when nothing else needs to run (a node
        that deep-sleeps between reports). The ESP32 stops its clocks then and may miss the IRQ's edge,
        so after it the line's level says whether the chip raised it."""
        if light_sleep_ms > 0:
            machine.lightsleep(light_sleep_ms)
            if self._pin.value():
                return True
            if timeout_ms is not None:
                timeout_ms -= light_sleep_ms
        self._waiting = True
        try:
            if timeout_ms is None:
                await self._flag.wait()
            else:
                await asyncio.wait_for_ms(self._flag.wait(), max(timeout_ms, 0))
        except asyncio.TimeoutError:  # noqa: UP041 (MicroPython's asyncio raises its own)
            self._waiting = False
            return False
        if not self._waiting:
            return None
        self._waiting = False
        return True
