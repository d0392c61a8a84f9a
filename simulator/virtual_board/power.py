"""The board's power and resets: which VM runs, why it booted, the watchdog, deep sleep.

A reset of any kind ends the VM's process, and a new one boots over the same flash: fresh Python
state, same files, as on an ESP32. Its exit code says how (a soft reboot in raw or friendly REPL,
`machine.reset()`, deep sleep); the reset button, a power cycle, the watchdog and the deep-sleep
timer are the host's. RTC memory (a file in the state directory) lives while the board has power.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence

from simulator.virtual_board.mcu import (
    EXIT_DEEPSLEEP,
    EXIT_MACHINE_RESET,
    EXIT_NOT_INSTALLED,
    EXIT_SOFT_REBOOT_FRIENDLY,
    EXIT_SOFT_REBOOT_RAW,
    NPM_PROJECT,
    ControlLink,
    Mcu,
    Silicon,
    VirtualBoardError,
)
from simulator.virtual_board.messages import Control, DeepSleep, Event, WatchdogFed, WatchdogStarted

log = logging.getLogger(__name__)

# machine.reset_cause() values on ESP32, and what gives each: ports/esp32/modmachine.c (v1.27)
# maps esp_reset_reason(), and reports SOFT_RESET after a soft reboot (machine_deinit).
PWRON_RESET = 1  # ESP_RST_POWERON: power on, and the EN button ("ESP_RST_EXT is never returned")
HARD_RESET = 2  # ESP_RST_SW, ESP_RST_PANIC: machine.reset() (esp_restart) and a crash
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5  # a soft reboot: Ctrl-D, machine.soft_reset(), mpremote's raw-REPL reset

RTC_MEMORY_FILE = "rtc_memory.bin"  # in the state directory, while the power is on
NVS_FILE = "nvs.json"  # in the state directory: the NVS partition, committed values only

_PANIC_PAUSE_S = 0.5  # keeps a VM that crashes at boot from spinning
_REQUEST_TIMEOUT_S = 10  # for the pump to act on reset() or power_cycle()
WDT_MESSAGE = b"\r\nE (0) task_wdt: Task watchdog got triggered: mpy_machine_wdt was not fed in time\r\n"


class Power:
    """Boots each VM, and keeps what outlives one: the reset cause, the watchdog, the deep-sleep timer.

    `world` returns the control messages that describe what a VM finds at power-on (every pin an
    input again); `link` is the control pipe the running VM is connected to; `show` prints what the
    chip's ROM prints on the console. Only the pump thread calls the methods below `power_cycle`."""

    def __init__(
        self,
        silicon: Silicon,
        link: ControlLink,
        world: Callable[[], Sequence[Control]],
        show: Callable[[bytes], None],
        replug: Callable[[], None],
        unplug: Callable[[], None],
    ) -> None:
        self.silicon = silicon
        self.mcu: Mcu | None = None  # the running VM, or None while off or in deep sleep
        self.boots = 0  # VMs started so far: each reset adds one
        self.reset_cause = PWRON_RESET  # of the VM running now
        self.on = False
        self._link = link
        self._world = world
        self._show = show
        self._replug = replug  # the chip reset or woke: a native USB port comes back as a new one (Console.replug)
        self._unplug = unplug  # the chip deep sleeps: a native USB port is gone until it wakes (Console.unplug)
        self._requests: queue.Queue[tuple[str, float, threading.Event]] = queue.Queue()
        # The watchdog (which only a soft reboot leaves running) and deep sleep, on the host's clock.
        self._wdt_timeout_s: float | None = None
        self._wdt_deadline: float | None = None
        self._sleep_ms = 0
        self._wake_at: float | None = None

    @property
    def asleep(self) -> bool:
        """True while the board is in deep sleep."""
        return self.on and self.mcu is None

    def power_on(self) -> None:
        """Boot the first VM; RTC memory from an earlier run is gone."""
        self._lose_power()
        self._boot(reset_cause=PWRON_RESET)
        self.on = True

    def power_off(self) -> None:
        self.on = False
        self._halt()

    def reset(self) -> None:
        """Ask the pump to press the reset (EN) button; return once the new VM is started."""
        self._request("reset")

    def power_cycle(self, off_s: float = 0.0) -> None:
        """Ask the pump to cut the power for `off_s` and restore it; return once the new VM is started."""
        self._request("power cycle", off_s)

    def handle(self, event: Event) -> bool:
        """Act on the watchdog's and deep sleep's events; False for an event that is not power's."""
        if isinstance(event, WatchdogStarted):
            self._wdt_timeout_s = event.timeout_ms / 1000
        elif isinstance(event, DeepSleep):
            self._sleep_ms = event.ms
            return True
        elif not isinstance(event, WatchdogFed):
            return False
        if self._wdt_timeout_s is not None:
            self._wdt_deadline = time.monotonic() + self._wdt_timeout_s
        return True

    def serve_requests(self) -> bool:
        """Act on reset() and power_cycle(); True if the VM was replaced."""
        served = False
        while not self._requests.empty():
            action, off_s, done = self._requests.get()
            self._halt()
            if action == "power cycle":
                self._lose_power()
                time.sleep(off_s)  # the board is off: nothing runs, its clocks stop
            self._boot(reset_cause=PWRON_RESET)
            done.set()
            served = True
        return served

    def run_timers(self, read_events: Callable[[], None]) -> bool:
        """The watchdog and the deep-sleep wake-up timer; True if the VM was replaced. `read_events`
        handles what the VM has said, since a feed may be waiting in the pipe."""
        now = time.monotonic()
        if self.mcu is None and self._wake_at is not None and now >= self._wake_at:
            self._boot(reset_cause=DEEPSLEEP_RESET)
            return True
        if self._wdt_deadline is not None and now >= self._wdt_deadline:
            read_events()
        if self._wdt_deadline is not None and now >= self._wdt_deadline:
            self._show(WDT_MESSAGE)
            self._halt()
            self._boot(reset_cause=WDT_RESET)
            return True
        return False

    def reboot_after(self, exit_code: int) -> None:
        """Boot the next VM as the ending one asked; a crash reboots like an ESP32 panic does.
        The caller has handled what the VM said before it ended."""
        self._halt()
        if exit_code == EXIT_NOT_INSTALLED:
            log.error(
                "virtual board %s: the MicroPython VM is missing: run `npm ci` in %s", self._link.name, NPM_PROJECT
            )
            self.on = False
        elif exit_code in (EXIT_SOFT_REBOOT_FRIENDLY, EXIT_SOFT_REBOOT_RAW):
            # A soft reboot keeps the REPL's mode and a running watchdog.
            repl = "raw" if exit_code == EXIT_SOFT_REBOOT_RAW else "friendly"
            self._boot(reset_cause=SOFT_RESET, repl=repl, soft_reboot=True)
        elif exit_code == EXIT_MACHINE_RESET:
            self._boot(reset_cause=HARD_RESET)
        elif exit_code == EXIT_DEEPSLEEP:
            # The chip is off but for its RTC: no VM until the timer (if any) wakes it, or a reset.
            self._wdt_timeout_s = self._wdt_deadline = None
            self._wake_at = time.monotonic() + self._sleep_ms / 1000 if self._sleep_ms > 0 else None
            self._unplug()
        else:
            log.warning("virtual board %s: the VM stopped (exit code %s); rebooting it", self._link.name, exit_code)
            time.sleep(_PANIC_PAUSE_S)
            self._boot(reset_cause=HARD_RESET)

    def _request(self, action: str, off_s: float = 0.0) -> None:
        if not self.on:
            raise VirtualBoardError("the board is off: start() it first")
        done = threading.Event()
        self._requests.put((action, off_s, done))
        if not done.wait(_REQUEST_TIMEOUT_S + off_s):
            raise VirtualBoardError(f"the board did not {action} within {_REQUEST_TIMEOUT_S} s")

    def _lose_power(self) -> None:
        (self.silicon.state / RTC_MEMORY_FILE).unlink(missing_ok=True)

    def _boot(self, *, reset_cause: int, repl: str = "friendly", soft_reboot: bool = False) -> None:
        if not soft_reboot:
            self._wdt_timeout_s = self._wdt_deadline = None  # a chip reset stops the watchdog
            if self.on:
                self._replug()
        self._wake_at = None

        def start() -> Mcu:
            mcu = Mcu.start(
                self.silicon, reset_cause=reset_cause, repl=repl, soft_reboot=soft_reboot, world=self._world()
            )
            self.mcu = mcu
            self.boots += 1
            self.reset_cause = reset_cause
            return mcu

        self._link.connect(start)

    def _halt(self) -> None:
        if self.mcu is not None:
            self._link.disconnect()
            self.mcu.stop()
            self.mcu = None
