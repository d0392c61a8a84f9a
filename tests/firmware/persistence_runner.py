# Runs ON the board (MicroPython): what test_persistence.py calls through VirtualBoard.exec.
# Event i of a test is the check-in (tag i & 0xFF, token i as 8 little-endian bytes); report()
# prints one line "J <json>" that the host reads back.
import json
import struct
from binascii import hexlify  # noqa: F401  (tests call it on the board)

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
    ages, exact = [], []

    def add(tag, tok, age_s, is_exact):
        ages.append(age_s)
        exact.append(is_exact)

    batched = q.batch(add, q.depth, now_s)  # the ages of the events a frame would carry
    events = [struct.unpack("<Q", q.event(i)[1])[0] for i in range(q.depth)]
    tags = [q.event(i)[0] for i in range(q.depth)]
    state = {
        "depth": q.depth,
        "dropped": q.dropped,
        "events": events,
        "batched": batched,
        "tags": tags,
        "ages": ages,
        "exact": exact,
        "numbers": [q.number(i) for i in range(q.depth)],
        "first_number": q.first_number,
        "next_number": q.next_number,
        "boot": q.boot,
    }
    state.update(extra)
    print("J", json.dumps(state))


def ack(q, n, now_s=0):
    """ACK the n oldest events, as the ACK of a frame that carried them."""
    if q.depth:
        q.ack(q.first_number + min(n, q.depth), now_s)
    else:
        q.ack(q.next_number, now_s)  # an empty queue: nothing to remove, nothing skipped
