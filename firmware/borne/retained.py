"""What the firmware keeps in RTC memory: it survives resets and deep sleep, not a power cut.

A small JSON object: "wdt" (the watchdog's timeout once the firmware has started it), "crashes"
(boots in a row that did not run long enough to count as healthy), "crashed" (the last boot ended in
a crash), and for a deep-sleeping node "counter" and "wakes" (see node.py).
"""

import json

import machine


def load():
    try:
        state = json.loads(machine.RTC().memory() or b"{}")
    except ValueError:
        return {}  # garbage after a power glitch: start afresh
    return state if isinstance(state, dict) else {}


def save(state):
    machine.RTC().memory(json.dumps(state))


def update(**changes):
    state = load()
    state.update(changes)
    save(state)
    return state
