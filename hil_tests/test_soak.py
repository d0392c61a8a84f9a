"""The short soak of `make test`: a few hundred check-ins through every fault, none lost or duplicated.

`make soak` runs the long one (10,000 check-ins) and prints its table."""

from __future__ import annotations

from pathlib import Path

import pytest

from hil_tests.conftest import require_site_tools
from hil_tests.rig import SIMULATOR
from simulator.soak import FAULTS, SoakOptions, run_soak

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
