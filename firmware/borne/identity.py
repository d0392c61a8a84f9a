"""What belongs to the device a board is, and goes when the board becomes another device.

The check-ins queued on flash and the frame counters (NVS, and RTC memory on a sleeping node) were
made under one device id, with its keys. `borne board flash` calls `forget()` over mpremote when
the board's config.json named another device (or none), so that no check-in of the old device
leaves under the new id. A second flash as the same device keeps them, unless its key epoch moved
(`forget_counters()`).
"""

import os

import esp32

from borne import retained
from borne.checkin_queue import FILES as QUEUE_FILES
from borne.counter import NVS_KEYS, NVS_NAMESPACE

_RETAINED_KEYS = ("counter", "wakes")  # a sleeping node's counter over its deep sleeps (node.py)


def forget():
    """Remove the queued check-ins and the counters of the device the board was; return the queue files removed."""
    removed = sum(_removed(path) for path in QUEUE_FILES)
    forget_counters()
    return removed


def forget_counters():
    """Remove the frame counters, uplink and downlink: the device starts over under new keys (a new
    key epoch), whose counters were never used. Its queued check-ins stay: they are its own."""
    nvs = esp32.NVS(NVS_NAMESPACE)
    for key in NVS_KEYS:
        _erase(nvs, key)
    nvs.commit()
    state = retained.load()
    for key in _RETAINED_KEYS:
        state.pop(key, None)
    retained.save(state)


def _removed(path):
    try:
        os.remove(path)
    except OSError:
        return 0  # never written
    return 1


def _erase(nvs, key):
    try:
        nvs.erase_key(key)
    except OSError:
        return  # never written
