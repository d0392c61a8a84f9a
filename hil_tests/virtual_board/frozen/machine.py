# The part of ESP32's `machine` that the installer's tools use: mpremote's `reset` shortcut runs
# `machine.reset()`. The simulated peripherals (Pin, I2C, SPI, ADC, WDT, RTC) belong here too.
import _board

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5


def reset():
    _board.reset()  # the host restarts the VM: this call does not return


def soft_reset():
    raise SystemExit


def reset_cause():
    return _board.reset_cause


def unique_id():
    return bytes.fromhex(_board.unique_id)


def freq():
    return 160_000_000
