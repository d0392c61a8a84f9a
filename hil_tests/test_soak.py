"""The short soak of `make test`: a few hundred check-ins through every fault, none lost or duplicated;
a soak stopped by Ctrl-C says what it saw until then, and leaves nothing running.

`make soak` runs the long one (10,000 check-ins) and prints its table."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hil_tests.conftest import require_site_tools
from hil_tests.rig import SIMULATOR
from hil_tests.test_nothing_left_behind import kill_all, processes_mentioning
from simulator.children import start_child
from simulator.soak import FAULTS, Presentation, SoakOptions, SoakReport, run_soak
from simulator.virtual_board.medium import Transmission

pytestmark = pytest.mark.rig(needs=[SIMULATOR])  # the faults are the simulator's


def test_a_short_soak_loses_and_duplicates_no_check_in_through_every_fault(tmp_path: Path) -> None:
    require_site_tools()
    said: list[str] = []
    # Each fault is also a scenario of its own, on both rigs (test_virtual_site.py): this one is short.
    report = run_soak(
        tmp_path, SoakOptions(checkins=300, doors=3, faults_per_kind=1, outage_s=10, visitor_every_s=1), say=said.append
    )
    print(report.table())
    assert report.faults == {kind: 1 for kind in FAULTS}
    assert report.presented == 300, report.table()  # every badge read: no door stayed off or stuck
    assert not report.lost, report.table()
    assert report.duplicates == 0, report.table()
    assert report.bounds_broken == 0, report.table()
    assert report.published == 300
    assert any("presented, " in line for line in said)  # progress is shown on the way


def test_the_table_shows_what_became_of_the_frames_of_a_door_that_lost_check_ins() -> None:
    # The soak that lost 6 check-ins at one door could not tell a door that did not send from frames
    # that did not get through: the table now shows them, with each receiver's fate for each.
    read_at = time.mktime((2026, 12, 4, 5, 37, 28, 0, 0, -1))
    lost = [Presentation("door-12", "00aa", read_at), Presentation("door-12", "00bb", read_at + 20)]
    frames = [
        Transmission(read_at + 5, 0.297, {"bridge": "collided", "concentrator": "collided"}),
        Transmission(read_at + 400, 0.297, {"bridge": None, "concentrator": "delivered"}),
    ]
    report = SoakReport(
        presented=10,
        unread=[],
        published=8,
        unpublished=lost,
        duplicates=0,
        copies=0,
        time_errors_s=[0.1] * 8,
        bound_times=0,
        bounds_broken=0,
        medium={"sent": 12, "collided": 2},
        lost_doors_frames={"door-12": frames},
    )
    lines = report.table().splitlines()
    assert (
        "door-12 sent 2 frames in the 60 min after its first lost check-in was read (05:37:28); receptions:"
        " 2 collided, 1 receiver sending, 1 delivered" in lines
    )
    assert "  05:37:33   297 ms  bridge collided, concentrator collided" in lines
    assert "  05:44:08   297 ms  bridge sending, concentrator delivered" in lines


STARTED_WITHIN_S = 300  # a loaded 2-core machine boots the site's VMs and the gateway slowly
STOPPED_WITHIN_S = 60  # a bound for the test, not a speed: the site shuts down in seconds
PROGRESS = re.compile(r"(\d+)/\d+ presented, (\d+) published")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="looks for what is left behind in /proc")
def test_a_soak_stopped_by_ctrl_c_reports_what_it_saw_and_leaves_nothing_running(tmp_path: Path) -> None:
    require_site_tools()
    work = tmp_path / "work"
    command = [sys.executable, "-m", "borne", "sim", "soak", "--checkins", "300", "--doors", "2", "--every", "1"]
    output = tmp_path / "soak.out"
    with output.open("wb") as out:
        soak = start_child([*command, "--work", str(work)], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + STARTED_WITHIN_S
        while not any(int(published) for _, published in PROGRESS.findall(output.read_text())):
            assert soak.poll() is None, output.read_text()
            assert time.monotonic() < deadline, (
                f"no check-in published within {STARTED_WITHIN_S} s: {output.read_text()}"
            )
            time.sleep(0.5)

        os.killpg(soak.pid, signal.SIGINT)  # as Ctrl-C at its terminal: to its process group
        try:
            soak.wait(timeout=STOPPED_WITHIN_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {STOPPED_WITHIN_S} s after Ctrl-C: {output.read_text()}")
        said = output.read_text()
        left = processes_mentioning(str(work))
        assert not left, f"left running by the soak stopped with Ctrl-C: {sorted(left.values())}"
        assert soak.returncode == 130, said
        assert "interrupted by SIGINT: what it saw until then" in said, said
        header, values = said.split("interrupted by SIGINT: what it saw until then\n")[1].splitlines()[:2]
        table = dict(zip(re.split(r"\s{2,}", header.strip()), re.split(r"\s{2,}", values.strip()), strict=True))
        assert "lost" not in table, said  # a check-in on its way when the soak stopped is not known lost
        assert int(table["presented"]) >= 1 and int(table["published"]) >= 1, said
        assert int(table["published"]) + int(table["not yet published"]) == int(table["presented"]), said
    finally:
        soak.kill()
        soak.wait(timeout=10)
        kill_all(processes_mentioning(str(work)))  # only this test's: their command lines name its directory
