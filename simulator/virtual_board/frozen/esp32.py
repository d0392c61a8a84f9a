# The part of ESP32's `esp32` module that the firmware uses: NVS, kept by the host (nvs.mjs),
# gpio_deep_sleep_hold and wake_on_ext0.
# Errors are ESP32's: OSError(-esp_err_t, name), e.g. OSError(-4354, 'ESP_ERR_NVS_NOT_FOUND') for a
# missing key, as MicroPython's check_esp_err raises them.
import json
from binascii import hexlify, unhexlify

import machine
from _board import mcu as _mcu
from _board import nvs as _nvs

# Looked up on the nvs proxy once (as machine.py's host functions are): a lookup allocates, and a
# MemoryError in the VM's JavaScript glue leaves it spinning, where ESP-IDF's NVS works on a full heap.
_nvs_set = _nvs.set
_nvs_get = _nvs.get
_nvs_erase = _nvs.erase
_nvs_commit = _nvs.commit

_ERROR_NAMES = {
    -0x1102: "ESP_ERR_NVS_NOT_FOUND",
    -0x1105: "ESP_ERR_NVS_NOT_ENOUGH_SPACE",
    -0x1109: "ESP_ERR_NVS_KEY_TOO_LONG",
    -0x110C: "ESP_ERR_NVS_INVALID_LENGTH",
}
_ESP_ERR_NVS_INVALID_LENGTH = -0x110C


def _check(result):
    if isinstance(result, int) and result < 0:
        raise OSError(result, _ERROR_NAMES.get(result, "ESP_FAIL"))
    return result


def _key(key):
    if not isinstance(key, str):
        raise TypeError(f"can't convert '{type(key).__name__}' object to str implicitly")
    return key


class NVS:
    """Non-volatile storage of one namespace; writes last only once commit() is called."""

    def __init__(self, namespace):
        self._namespace = _key(namespace)
        _check(_nvs.open(self._namespace))

    def set_i32(self, key, value):
        if not isinstance(value, int):
            raise TypeError(f"can't convert {type(value).__name__} to int")
        if not -0x80000000 <= value <= 0x7FFFFFFF:
            raise OverflowError("overflow converting long int to machine word")
        _check(_nvs_set(self._namespace, _key(key), "i32", value))

    def get_i32(self, key):
        return json.loads(_check(_nvs_get(self._namespace, _key(key), "i32")))

    def set_blob(self, key, value):
        if isinstance(value, str):
            value = value.encode()
        elif not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError("object with buffer protocol required")
        _check(_nvs_set(self._namespace, _key(key), "blob", hexlify(value).decode()))

    def get_blob(self, key, buffer):
        """Copy the blob into `buffer` (which must be large enough); return its length."""
        if not isinstance(buffer, (bytearray, memoryview)):
            raise TypeError("object with buffer protocol required")
        blob = unhexlify(json.loads(_check(_nvs_get(self._namespace, _key(key), "blob"))))
        if len(blob) > len(buffer):
            _check(_ESP_ERR_NVS_INVALID_LENGTH)
        buffer[: len(blob)] = blob
        return len(blob)

    def erase_key(self, key):
        _check(_nvs_erase(self._namespace, _key(key)))

    def commit(self):
        _check(_nvs_commit(self._namespace))


def gpio_deep_sleep_hold(enable):
    """Whether held digital (non-RTC) pads keep their state in deep sleep (ports/esp32/modesp32.c:
    gpio_deep_sleep_hold_en/_dis; MicroPython's docs: 'for held pads'): a pad needs Pin(..., hold=True)
    too. On a chip it lasts through every deep sleep until changed (ESP-IDF gpio.h); here each boot
    starts without it (stricter: set it before each sleep)."""
    machine._deep_sleep_hold = bool(enable)


# The GPIOs that can wake the chip (its RTC GPIOs), ports/esp32/modesp32.h RTC_VALID_EXT_PINS.
if _mcu == "esp32s3":
    _WAKE_PINS = frozenset(range(22))
else:
    _WAKE_PINS = frozenset((0, 2, 4, 12, 13, 14, 15, 25, 26, 27, 32, 33, 34, 35, 36, 37, 38, 39))


def wake_on_ext0(pin, level=None):
    """Wake from light sleep (and deep sleep, not modelled) when `pin` is at `level` (None: stop),
    as ports/esp32/modesp32.c's: ValueError('invalid pin') for a pin that is not an RTC GPIO."""
    if pin is None:
        machine._ext0_pin = -1
    else:
        if not isinstance(pin, machine.Pin):
            raise ValueError("expecting a pin")
        if pin._id not in _WAKE_PINS:
            raise ValueError("invalid pin")
        machine._ext0_pin = pin._id
    if level is not None:
        machine._ext0_level = 1 if level else 0
