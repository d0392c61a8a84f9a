"""What a radio driver waits for after starting a send or a receive: the IRQ of its DIO line, a
timeout, or standby() calling the wait off. Shared by the SX127x (DIO0) and SX126x (DIO1) drivers.

A DIO line that never reaches the MCU (a cold solder joint, a wrong pin in the board profile) leaves
a chip that works and answers on SPI: its IRQ flags say what the line should have said. So a wait
that ends without the IRQ asks the chip (the driver's `pending`: its IRQ flags over SPI), and so does
a wait without deadline once a second (as micropython-lib's lora-async modem does, "belts and braces"
against a missed IRQ); flags that are set while the IRQ still does not come one look later mean a dead
line (`dead`), and from then on every wait polls the flags instead (`_IRQ_POLL_MS`), the IRQ still
taken should it come."""

import time

import esp32
import machine
from micropython import const

from borne.reused import RETURN_FALSE, RETURN_NONE, RETURN_TRUE, Reused, sleep_ms

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
        # The wait under way: its arguments, and its state between looks.
        self._timeout_ms = None
        self._light_sleep_ms = 0
        self._sleep_to_irq = False
        self._wakes_cpu = None  # whether the line can wake the ESP32 from light sleep: asked at first need
        now = time.ticks_ms()
        self._started = now  # when it started
        self._checked = now  # when it last read the chip's flags
        self._seen = False  # the flags were set at that read, and the IRQ had not come
        self.dead = False  # the line never rose while the chip's flags said it should: waits poll the flags
        self.polled = False  # the last wait ended on the flags read over SPI, not on the IRQ
        self.armed_ms = now  # when the operation waited for started (arm())
        self.ticks_ms = now  # when the last IRQ came (or a poll or a light sleep found it)
        self._wait = Reused(self._waits)

    def irq(self, pin):
        """The pin's IRQ handler: the chip raised its DIO line."""
        self.ticks_ms = time.ticks_ms()
        self._fired = True

    def arm(self):
        """Forget an IRQ that came before the operation about to start, and note when it starts."""
        self._fired = False
        self.armed_ms = time.ticks_ms()

    def cancel(self):
        """End a wait under way: it gives None."""
        self._waiting = False

    def wait(self, timeout_ms, light_sleep_ms=0, sleep_to_irq=False):
        """Await it: the IRQ (True; `ticks_ms` says when it came), `timeout_ms` (False; None: no limit)
        or cancel() (None; also for a wait that another task's newer wait replaced). On a dead line, the
        chip's IRQ flags set stand for the IRQ (True, `polled`). Allocates nothing (borne/reused.py).

        On a node that deep-sleeps between reports nothing else needs to run, and the wait is spent in
        light sleep as far as the chip allows. `light_sleep_ms`: first sleep that long (a send's time on
        air: its TX-done cannot come sooner, and follows within a ms). `sleep_to_irq`: sleep until the
        line rises or `timeout_ms` (a receive, whose IRQ comes from the air), where the line can wake
        the ESP32 (ext0: an RTC GPIO; else the wait stays awake). The ESP32 stops its clocks then and
        may miss the IRQ's edge, so after it the line's level says whether the chip raised it."""
        self._timeout_ms = timeout_ms
        self._light_sleep_ms = light_sleep_ms
        # A line found dead never rises: its waits poll the chip's flags, awake.
        self._sleep_to_irq = sleep_to_irq and timeout_ms is not None and not self.dead and self._can_wake_cpu()
        return self._wait()

    def _can_wake_cpu(self):
        """Whether the line can wake the ESP32 from light sleep (ext0): an RTC GPIO, as the port says."""
        if self._wakes_cpu is None:
            try:
                esp32.wake_on_ext0(self._pin, True)
                self._wakes_cpu = True
            except ValueError:  # not an RTC GPIO (e.g. GPIO 33 on an ESP32-S3)
                self._wakes_cpu = False
            esp32.wake_on_ext0(None, True)
        return self._wakes_cpu

    def _waits(self):
        # Every wait(), one after another (see borne/reused.py).
        while True:
            timeout_ms = self._timeout_ms
            self.polled = False
            if self._light_sleep_ms > 0 or self._sleep_to_irq:
                slept = time.ticks_ms()
                rose = False
                if self._light_sleep_ms > 0:
                    machine.lightsleep(self._light_sleep_ms)
                    rose = self._pin.value()
                elif timeout_ms is not None and not self._pin.value():
                    # A line high before the sleep (stuck, or a wrong pin with a pull-up) would wake it at
                    # once and say nothing of this IRQ: the wait stays awake, on the line's edges and the
                    # chip's flags.
                    self._sleep_to_line(timeout_ms)
                    rose = self._pin.value()
                if rose:
                    self.ticks_ms = time.ticks_ms()
                    self._fired = False  # taken, its edge seen or not
                    yield RETURN_TRUE
                    continue
                if timeout_ms is not None:
                    timeout_ms -= time.ticks_diff(time.ticks_ms(), slept)
            self._waiting = True
            self._seen = False
            self._started = self._checked = time.ticks_ms()
            end = None
            while self._waiting and not self._fired:
                now = time.ticks_ms()
                if self._look(now):
                    end = RETURN_TRUE
                    break
                left = _POLL_MS if timeout_ms is None else timeout_ms - time.ticks_diff(now, self._started)
                if left <= 0:
                    if self.dead or not (self._seen or self._pending()):
                        self._waiting = False
                        end = RETURN_FALSE
                        break
                    self._seen = True  # the flags are set at the deadline: one look later tells a dead line
                    self._checked = now
                    left = _POLL_MS
                yield from sleep_ms(min(left, _IRQ_POLL_MS if self.dead or self._seen else _POLL_MS))
            if end is None:
                if self._waiting:
                    self._waiting = False
                    self._fired = False  # taken: the next wait waits for the next IRQ
                    end = RETURN_TRUE
                else:
                    end = RETURN_NONE  # cancel()
            yield end

    def _sleep_to_line(self, ms):
        """Light-sleep up to `ms`, woken by the line rising (ext0). The wake leaves its pad an RTC IO,
        which reads 0 and takes no IRQ: a Pin.init() with a mode makes it a digital GPIO again
        (ports/esp32/machine_pin.c: rtc_gpio_deinit), as ESP-IDF's Sleep Modes guide asks."""
        if ms <= 0:
            return
        esp32.wake_on_ext0(self._pin, True)
        try:
            machine.lightsleep(ms)
        finally:
            esp32.wake_on_ext0(None, True)  # it would wake the node from deep sleep too
            self._pin.init(self._pin.IN)

    def _look(self, now):
        """Whether the chip's IRQ flags, read over SPI when it is time to, end the wait: on a dead line,
        or on one found dead now (set at two reads, and no IRQ between them)."""
        if not (self.dead or self._seen or time.ticks_diff(now, self._checked) >= _CHECK_MS):
            return False
        self._checked = now
        if not self._pending():
            self._seen = False
            return False
        if not (self.dead or self._seen):
            self._seen = True  # an IRQ on its way may still come: look again
            return False
        self.dead = True
        self._waiting = False
        self._fired = False
        self.polled = True
        self.ticks_ms = now
        return True

    def tx_done_ms(self, airtime_ms):
        """When the send armed last ended: the IRQ's time; on the flags read over SPI (no IRQ to note
        it), the end of its time on air if that is sooner than the read that found it."""
        if self.polled:
            ended = time.ticks_add(self.armed_ms, airtime_ms)
            if time.ticks_diff(self.ticks_ms, ended) > 0:
                return ended
        return self.ticks_ms
