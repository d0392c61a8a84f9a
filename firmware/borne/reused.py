"""An operation done at every frame and awaited without allocating anything.

A coroutine makes its frame on the heap at each call, on an ESP32 as in the VM: a send that went
through three of them (the Radio's, the driver's, the DIO line's wait) allocated about 300 bytes per
frame. A `Reused` runs its operation in one generator, made once and resumed for every operation:
`steps`, a generator function, loops forever, reading the operation's arguments from attributes its
owner set before calling the Reused. It waits with `yield from sleep_ms(ms)` (asyncio's sleep, which
allocates nothing either) or `yield from` another Reused, and ends each operation with `yield
RETURN_TRUE`, `RETURN_FALSE` or `RETURN_NONE`: what the `await` gives. A result of another kind goes
through an attribute.

An operation that raised, or whose task was cancelled, leaves the generator half-way: the next call
makes a new one. An operation that another task's newer operation replaced ends at its next step,
with None.
"""

import asyncio

# What an operation gives, made once: raising StopIteration ends an `await`, as asyncio's own sleep does.
RETURN_TRUE = StopIteration(True)
RETURN_FALSE = StopIteration(False)
RETURN_NONE = StopIteration(None)


def sleep_ms(ms):
    """asyncio's sleep, for `yield from` in an operation's generator: in MicroPython it is no coroutine
    but a generator made once, which allocates nothing, whatever the type stubs say."""
    return asyncio.sleep_ms(ms)


class Reused:
    def __init__(self, steps):
        self._steps = steps
        self._run = steps()
        self._under_way = False  # the last operation did not end: the next makes a new generator
        self._task = None  # the task whose operation is under way

    def __call__(self):
        """Start an operation: await what this returns."""
        if self._under_way:
            self._run = self._steps()
        self._under_way = True
        self._task = asyncio.current_task()
        return self

    def __iter__(self):
        return self

    def __next__(self):
        if asyncio.current_task() is not self._task:
            end = RETURN_NONE  # another task's operation replaced this one
        else:
            end = next(self._run)
            if end is None:
                return None  # asleep: asyncio wakes the task
            self._under_way = False
        end.__traceback__ = None  # raised again and again: its traceback would grow each time
        raise end
