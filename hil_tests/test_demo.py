"""`borne demo` (what `make demo` runs): the virtual site live, every badge presented published."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from hil_tests.conftest import require_site_tools
from hil_tests.rig import SIMULATOR

pytestmark = pytest.mark.rig(needs=[SIMULATOR])  # `borne demo` runs its own virtual site

DURATION_S = 40


def test_the_demo_shows_checkins_telemetry_and_status_and_loses_no_checkin(tmp_path):
    require_site_tools()
    command = [sys.executable, "-m", "borne", "demo", "--duration", str(DURATION_S), "--work", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=DURATION_S + 120)
    assert done.returncode == 0, done.stdout + done.stderr
    for kind in ("CHECK-IN", "TELEMETRY", "STATUS"):
        assert kind in done.stdout, done.stdout
    presented, published = map(
        int, re.search(r"badges presented: (\d+); published: (\d+) checkin", done.stdout).groups()
    )
    assert presented >= 3 and published == presented, done.stdout
