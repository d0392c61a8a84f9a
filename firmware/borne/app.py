"""The firmware's start: configuration, safe mode, watchdog, the board's power, and the role it plays.

A boot that does not reach _HEALTHY_AFTER_MS of running counts as a crash, unless the installer stops
it (Ctrl-C, as mpremote does); after MAX_CRASHES in a
row (counted in RTC memory, so a power cycle starts afresh) the board stays in safe mode: the
firmware does not start and the REPL is left to the installer, with the last error in /crash.txt.
Holding the board's button at reset gives safe mode too, and so does a configuration error.

Every task of a role runs `supervised`: one that raises, or ends when it must not, is a crash (its
error in /crash.txt, then a reset), never a board that looks alive with a part of it gone; and an
error in a task nobody awaits reaches the loop's exception handler, which crashes the same way.
"""

import asyncio
import gc
import sys
import time

import machine
from micropython import const

from borne import retained, watchdog
from borne.contract import RESET_CRASH

FIRMWARE_VERSION = (0, 4, 0)
MAX_CRASHES = const(3)
_HEALTHY_AFTER_MS = const(120000)
CRASH_LOG = "/crash.txt"

_stopped_once = False
_crashes_before = 0  # the count this boot found: a boot the installer stops (Ctrl-C) did not crash


class Uptime:
    """Seconds since boot, past the wrap of ticks_ms (about 6 days): read it at least daily."""

    def __init__(self):
        self._ms = 0
        self._ticks = time.ticks_ms()

    def seconds(self):
        now = time.ticks_ms()
        self._ms += time.ticks_diff(now, self._ticks)
        self._ticks = now
        return self._ms // 1000


def start():
    """What main.py runs: the configured role until Ctrl-C; safe mode if the board must not run it."""
    crashes = retained.load().get("crashes", 0)
    from borne import config as board_config  # its checks run once: dropped below

    try:
        config = board_config.load()
    except board_config.ConfigError as error:
        return _safe_mode(f"the configuration is wrong: {error}")
    finally:
        del board_config
        forget("borne.config")
    if crashes >= MAX_CRASHES:
        return _safe_mode(f"{crashes} crashes in a row; the last error is in {CRASH_LOG}")
    button = config["board"].get("button")
    if button is not None and machine.Pin(button, machine.Pin.IN, machine.Pin.PULL_UP).value() == 0:
        return _safe_mode("the button was held at reset")
    global _crashes_before
    _crashes_before = crashes
    retained.update(crashes=crashes + 1)
    try:
        # The role's modules are the bulk of the heap: imported before the loop, and their garbage
        # collected, so that the role is built (in the loop's first step) on a heap in one piece. The
        # virtual board's VM collects only when a call into it returns: main.py's does, here.
        role = _role_class(config["role"])
        forget("borne.contract")  # its facts are copied into the modules that read them: the module is done
        gc.collect()
        asyncio.run(_main(config, role))
    except KeyboardInterrupt:
        _stopped()


def reset_cause():
    """The reset cause to report (payload_codec's RESET_CAUSES): machine's, or crash."""
    state = retained.load()
    if state.pop("crashed", False):
        retained.save(state)
        return RESET_CRASH
    return machine.reset_cause()


def forget(name):
    """Drop a module that is done with, such as the configuration's checks once the board has booted:
    its code leaves the heap at the next collection, unless something still holds it (an `import`
    that needs it again reads it from flash again). Its qstrs stay: MicroPython never frees them."""
    sys.modules.pop(name, None)
    package, _, module = name.rpartition(".")
    if package in sys.modules and hasattr(sys.modules[package], module):
        delattr(sys.modules[package], module)


def clear_crashes():
    """Leave safe mode at the next reset (the installer fixed what made the firmware crash)."""
    retained.update(crashes=0)


def _role_class(role):
    if role == "node":
        from borne.node import Node

        return Node
    from borne.bridge import Bridge

    return Bridge


async def _main(config, role_class):
    watchdog.arm()
    asyncio.get_event_loop().set_exception_handler(_unhandled)
    try:
        power_up(config["board"])
        role = role_class(config).run()
    except Exception as error:  # a board that cannot build its role: its radio or its power chip does not answer
        return _crash(error)
    helpers = [asyncio.create_task(_keep_watchdog_fed()), asyncio.create_task(_healthy_after())]
    try:
        await role  # it returns only when Ctrl-C stops it (the bridge reads its console itself)
        _stopped()
    except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C, seen from inside the loop
        _stopped()
    except Exception as error:
        _crash(error)
    finally:
        for task in helpers:
            task.cancel()


def power_up(board):
    """Switch on what powers the board's parts, before they are used: Vext (Heltec: the OLED's I2C bus,
    with the sensors on it, and the LNA) and a power chip's rails (T-Beam: the radio). After a deep
    sleep Vext is still held off (power_down): its level is set first, then the hold released."""
    vext = board.get("vext")
    if vext:
        # hold: the ESP32 port's (ports/esp32/machine_pin.c), which micropython-esp32-stubs lacks
        machine.Pin(vext["pin"], machine.Pin.OUT, value=vext["on"], hold=False)  # type: ignore[call-arg]
    pmu = board.get("pmu")
    if pmu:
        from borne.drivers import axp

        axp.power_rails(_pmu_bus(board), pmu)


def power_down(board):
    """Switch off what power_up switched on, just before machine.deepsleep(); the next wake's
    power_up switches it on again. Vext is held off: an ESP32's output floats in deep sleep unless
    its pad is held, and Vext's GPIO (21 on an ESP32, 36 on an ESP32-S3) is a digital pad, which
    keeps its hold through deep sleep only with gpio_deep_sleep_hold on too (ESP-IDF gpio.h,
    gpio_hold_en). A power chip keeps its rails as they are while the ESP32 sleeps: they go off."""
    vext = board.get("vext")
    if vext:
        import esp32

        # Both the ESP32 port's (machine_pin.c, modesp32.c), which micropython-esp32-stubs lacks.
        machine.Pin(vext["pin"], machine.Pin.OUT, value=1 - vext["on"], hold=True)  # type: ignore[call-arg]
        esp32.gpio_deep_sleep_hold(True)  # type: ignore[attr-defined]
    pmu = board.get("pmu")
    if pmu:
        from borne.drivers import axp

        axp.power_rails_off(_pmu_bus(board), pmu)


def _pmu_bus(board):
    i2c = board["i2c"]
    return machine.I2C(i2c["id"], sda=machine.Pin(i2c["sda"]), scl=machine.Pin(i2c["scl"]), freq=100000)


def supervised(job, may_end=False):
    """Run the coroutine `job` as a task whose error is a crash, and so is its end unless `may_end`."""
    return asyncio.create_task(_supervise(job, may_end))


async def _supervise(job, may_end):
    try:
        await job
    except asyncio.CancelledError:  # the role stops (Ctrl-C): not a crash
        raise
    except Exception as error:
        _crash(error)
    else:
        if not may_end:
            _crash(RuntimeError(f"the task {job} ended"))


def _unhandled(loop, context):
    """The loop's exception handler: a task nobody awaits raised."""
    _crash(context.get("exception") or RuntimeError(context.get("message")))


async def _keep_watchdog_fed():
    while True:
        watchdog.feed()
        await asyncio.sleep_ms(1000)


async def _healthy_after():
    await asyncio.sleep_ms(_HEALTHY_AFTER_MS)
    retained.update(crashes=0)


def _crash(error):
    gc.collect()  # a task that ran the heap out left its garbage: what follows needs a little
    print("borne: crashed; restarting")
    sys.print_exception(error)
    try:
        with open(CRASH_LOG, "w") as f:
            sys.print_exception(error, f)
    except (OSError, MemoryError):
        pass  # a full or broken flash, or a heap still full, must not stop the reset
    try:
        retained.update(crashed=True)
    finally:
        machine.reset()


def _stopped():
    global _stopped_once
    if _stopped_once:
        return
    _stopped_once = True
    watchdog.hold()
    # mpremote (flash, check, enrol) stops the firmware well within _HEALTHY_AFTER_MS: that boot is
    # not a crash, or a few installer sessions in a row would leave a healthy board in safe mode.
    # Only this boot's count is taken back: a boot already found healthy has cleared the rest.
    retained.update(crashes=min(retained.load().get("crashes", 0), _crashes_before))
    print("borne: stopped; the REPL is free (machine.reset() starts the firmware again)")


def _safe_mode(why):
    watchdog.hold()
    print(f"borne: SAFE MODE: {why}.")
    print("borne: the firmware is not running; mpremote can reach the board.")
    print("borne: fix it, then power-cycle, or run: import borne.app; borne.app.clear_crashes(); machine.reset()")
