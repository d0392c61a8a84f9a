"""The rig's children (mosquitto, the gateway, the boards' Node processes) die with the process that
started them, and only then: not when the thread that asked for them ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from simulator.children import die_with, start_child

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")

GONE_WITHIN_S = 5
# An owner that starts a child from a worker thread, lets the thread end, says the child's pid, and waits.
OWNER = """
import sys, threading, time
from simulator.children import start_child
children = []
worker = threading.Thread(target=lambda: children.append(start_child(["sleep", "60"])))
worker.start()
worker.join()
print(children[0].pid, flush=True)
time.sleep(60)
"""


def running(pid: int) -> bool:
    """Whether `pid` runs (a zombie has ended: nobody may have reaped it yet)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_a_child_started_from_a_thread_that_has_ended_lives_while_its_owner_lives() -> None:
    children: list[subprocess.Popen] = []
    worker = threading.Thread(target=lambda: children.append(start_child(["sleep", "60"])))
    worker.start()
    worker.join()
    try:
        time.sleep(0.5)  # the death signal, were it tied to the thread, is sent as the thread ends
        assert children[0].poll() is None, f"the child ended with {children[0].returncode} when its thread did"
    finally:
        children[0].kill()
        children[0].wait()


def test_a_child_dies_when_its_owner_is_killed_by_sigkill() -> None:
    with start_child([sys.executable, "-c", OWNER], stdout=subprocess.PIPE, text=True) as owner:
        assert owner.stdout is not None
        child = int(owner.stdout.readline())
        try:
            assert running(child)
            owner.send_signal(signal.SIGKILL)
            owner.wait(timeout=10)
            deadline = time.monotonic() + GONE_WITHIN_S
            while running(child) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not running(child), f"the child still runs {GONE_WITHIN_S} s after its owner was killed"
        finally:
            owner.kill()
            if running(child):
                os.kill(child, signal.SIGKILL)  # this test's own, left by a failure


def test_a_child_whose_owner_died_before_it_asked_for_the_signal_does_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    # The recorded owner is not the child's parent: as when the owner died between fork and the request.
    owner_that_died = os.getppid()
    child = subprocess.Popen(["touch", str(marker)], preexec_fn=die_with(owner_that_died))
    assert child.wait(timeout=10) != 0
    assert not marker.exists()


def test_a_command_that_cannot_start_raises_as_popen_does(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        start_child([str(tmp_path / "no-such-program")])
