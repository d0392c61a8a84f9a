# Runs ON the board (MicroPython): what test_persistence.py calls through VirtualBoard.exec.
# Event i of a test is the check-in (tag i & 0xFF, token i as 8 little-endian bytes); report()
# prints one line "J <json>" that the host reads back.
import json
import struct
from binascii import hexlify

from borne.checkin_queue import CheckinQueue

PATH = "/q"


def token(i):
    return struct.pack("<Q", i)


def queue(capacity=64):
    return CheckinQueue(PATH, capacity)


def push(q, first, count, now_s=0):
    for i in range(first, first + count):
        q.push(i & 0xFF, token(i), now_s)


def report(q, now_s=0, **extra):
    events, tags, ages = [], [], []

    def add(tag, tok, age_s):
        events.append(struct.unpack("<Q", tok)[0])
        tags.append(tag)
        ages.append(age_s)

    q.batch(add, q.depth, now_s)
    flight = q.flight
    state = {
        "depth": q.depth,
        "dropped": q.dropped,
        "events": events,
        "tags": tags,
        "ages": ages,
        "exact": [q.exact(i) for i in range(q.depth)],
        "boot": q.boot,
        "flight": None if flight is None else hexlify(flight).decode(),
        "flight_counter": q.flight_counter,
        "flight_events": q.flight_events,
    }
    state.update(extra)
    print("J", json.dumps(state))
