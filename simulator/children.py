"""Every process the rig starts, started one way: it dies with the process that started it.

mosquitto, the gateway daemon and the boards' Node processes must not outlive a rig killed by
SIGKILL (a CI timeout, `kill -9`), which runs no cleanup: on Linux each child asks the kernel for
SIGKILL when its parent dies (prctl PR_SET_PDEATHSIG), between fork and exec.

Elsewhere (macOS, BSD) there is no such signal: children start the same way, and only a clean stop
(`with`, stop(), SIGINT, SIGTERM) ends them.

Each child has a session of its own: a Ctrl-C at the terminal goes to the terminal's foreground
process group, and it must reach the owner alone, which stops its children in order (the gateway
before the broker it publishes to, a board by powering it off), instead of every one of them dying
at once under a soak or a demo still counting what they publish.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
# SIGKILL, not SIGTERM: the owner is gone and nobody else will stop them, so nothing may delay it.
_DEATH_SIGNAL = int(signal.SIGKILL)
_OWNER_GONE_EXIT = 125  # what a child exits with when its owner died before it could ask

_Spawn = tuple[Sequence[str], dict[str, Any], concurrent.futures.Future[subprocess.Popen[Any]]]


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)
    prctl.restype = ctypes.c_int
    return prctl


# Resolved here, not in the child: between fork and exec of a threaded process, do as little as can be.
_prctl = _load_prctl()


def start_child(command: Sequence[str], **popen: Any) -> subprocess.Popen[Any]:
    """Start `command` as `subprocess.Popen(command, **popen)` does, tied to this process's life.

    On Linux the child is killed when this process ends, however it ends; callers still stop
    their children themselves on a clean exit. The child has a session of its own (out of reach of
    the terminal's Ctrl-C) unless `start_new_session=False` is given. Any thread may call it."""
    popen.setdefault("start_new_session", True)
    if _prctl is None:
        return subprocess.Popen(command, **popen)
    if "preexec_fn" in popen:
        raise TypeError("start_child sets preexec_fn itself")
    spawned: concurrent.futures.Future[subprocess.Popen[Any]] = concurrent.futures.Future()
    _spawner().put((command, popen, spawned))
    return spawned.result()


def die_with(owner: int) -> Callable[[], None]:
    """What a child runs between fork and exec (Linux only): ask for SIGKILL at its parent's death,
    then make sure that parent is still `owner`: had it died before the request, no signal would come."""
    assert _prctl is not None

    def in_child() -> None:
        if _prctl(PR_SET_PDEATHSIG, _DEATH_SIGNAL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != owner:
            os._exit(_OWNER_GONE_EXIT)

    return in_child


# The kernel sends the death signal when the *thread* that forked the child ends, not its process;
# and the rig starts children from threads that end (asyncio.to_thread's workers, a board's pump,
# a caller's own). A check in the child cannot help, since the signal comes later; so every child
# is forked by one thread that lives as long as the process.
_requests: queue.SimpleQueue[_Spawn] | None = None
_requests_lock = threading.Lock()


def _spawner() -> queue.SimpleQueue[_Spawn]:
    global _requests
    with _requests_lock:
        if _requests is None:
            _requests = queue.SimpleQueue()
            threading.Thread(target=_spawn_forever, args=(_requests,), name="child spawner", daemon=True).start()
        return _requests


def _spawn_forever(requests: queue.SimpleQueue[_Spawn]) -> None:
    while True:
        command, popen, spawned = requests.get()
        try:
            spawned.set_result(subprocess.Popen(command, preexec_fn=die_with(os.getpid()), **popen))
        except BaseException as error:  # the caller's to handle, as if it had called Popen itself
            spawned.set_exception(error)


def _forget_spawner() -> None:
    """In a forked copy of this process the spawner thread does not exist: start another when needed."""
    global _requests, _requests_lock
    _requests = None
    _requests_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_spawner)
