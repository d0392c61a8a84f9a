"""The hardware watchdog, and how it leaves the installer alone.

ESP32's watchdog cannot be stopped, and a soft reset leaves it running. So the firmware feeds it
from its asyncio loop (a loop that hangs resets the board), and whenever the firmware is not
running (after mpremote's soft reset, Ctrl-C, or in safe mode) a hardware timer feeds it instead:
an installer's mpremote session is never cut short by a reset.
"""

import machine
from micropython import const

from borne import retained

TIMEOUT_MS = const(30000)
_TIMER_ID = const(0)

_wdt = None
_timer = None


def arm(timeout_ms=TIMEOUT_MS):
    """Start the watchdog (or take it over from the timer): feed() must run within timeout_ms."""
    global _wdt
    _stop_timer()
    _wdt = machine.WDT(timeout=timeout_ms)
    retained.update(wdt=timeout_ms)


def feed():
    if _wdt is not None:
        _wdt.feed()


def hold():
    """Keep feeding a watchdog the firmware started, from a timer, until arm() takes it over."""
    global _wdt, _timer
    timeout_ms = retained.load().get("wdt")
    if not timeout_ms or _timer is not None:
        return
    if _wdt is None:
        _wdt = machine.WDT(timeout=timeout_ms)  # the one that is running: a new object, same watchdog
    _timer = machine.Timer(_TIMER_ID)
    _timer.init(mode=machine.Timer.PERIODIC, period=timeout_ms // 4, callback=_feed_from_timer)


def _feed_from_timer(_timer):
    feed()


def _stop_timer():
    global _timer
    if _timer is not None:
        _timer.deinit()
        _timer = None
