"""`borne demo` ended by SIGKILL (a CI timeout, `kill -9`), which runs no cleanup, leaves no process behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hil_tests.conftest import require_site_tools
from hil_tests.rig import SIMULATOR
from simulator.children import start_child

pytestmark = pytest.mark.rig(needs=[SIMULATOR])  # `borne demo` runs its own virtual site

SITE_START_S = 180  # a loaded 2-core machine boots four VMs and the gateway slowly
GONE_WITHIN_S = 5
BOARDS = 4  # the demo's bridge, two doors and the meeting room


def processes_mentioning(text: str) -> dict[int, str]:
    """The live processes (zombies are dead) whose command line contains `text`: pid to command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command_line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue  # ended meanwhile
        if text in command_line and state not in ("Z", "X"):
            found[int(entry.name)] = command_line
    return found


def kill_all(pids: dict[int, str]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_a_demo_killed_by_sigkill_leaves_no_mosquitto_gateway_or_board_running(tmp_path: Path) -> None:
    require_site_tools()
    work = tmp_path / "work"
    command = [sys.executable, "-m", "borne", "demo", "--duration", "600", "--work", str(work)]
    with (tmp_path / "demo.out").open("wb") as output:
        demo = start_child(command, stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + SITE_START_S
        while True:
            started = processes_mentioning(str(work))
            started.pop(demo.pid, None)
            lines = started.values()
            if (
                sum("mosquitto" in line for line in lines) == 1
                and sum("gateway run" in line for line in lines) == 1
                and sum("mcu.mjs" in line for line in lines) >= BOARDS
            ):
                break
            assert demo.poll() is None, (tmp_path / "demo.out").read_text()
            assert time.monotonic() < deadline, f"the demo's site did not start: {sorted(lines)}"
            time.sleep(0.5)

        demo.send_signal(signal.SIGKILL)
        demo.wait(timeout=10)
        deadline = time.monotonic() + GONE_WITHIN_S
        while (left := processes_mentioning(str(work))) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not left, f"still running {GONE_WITHIN_S} s after the demo was killed: {sorted(left.values())}"
    finally:
        demo.kill()
        demo.wait(timeout=10)
        kill_all(processes_mentioning(str(work)))  # only this test's: their command lines name its directory
