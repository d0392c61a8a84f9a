"""Many doors at once on the bench path: the six doors of `test_many_nodes.py`, on its one channel and
SF, served as a bench (`simulator/bench_site.py`, a bridge and no concentrator), with `borne sim badge`
as the rig file's badge presenter, so that the suite holds a badge at every door at once through six
presenter commands run together, as a bench with a command presenter does. The many-doors module
then runs in a pytest of its own with `--rig` and `--report`: its check-ins are published once each,
with their door and true time, on the bench as on the virtual rig; its collisions and duty cycle,
which only the simulator's radio medium tells, skip there, saying so."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator

import pytest

from hil_tests.rig import SIMULATOR
from hil_tests.test_bench_rig import HIL_TESTS, rig_file, running_bench_site
from hil_tests.test_many_nodes import DOORS, RADIO

pytestmark = pytest.mark.rig(needs=[SIMULATOR])  # it serves virtual boards as a bench
# The gateway's start, the burst, its check-ins (PUBLISHED_S at most) and the window the module waits out.
RUN_S = 600


@pytest.fixture(scope="module")
def bench_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A bench site of the six doors and a bridge, on the many-doors module's radio: its bench.json."""
    radio = [arg for key, value in RADIO.items() for arg in (f"--{key.replace('_', '-')}", str(value))]
    with running_bench_site(tmp_path_factory.mktemp("bench"), DOORS, *radio) as ready:
        yield ready


def test_badges_presented_at_six_doors_at_once_on_a_bench_are_each_published_once(bench_site, tmp_path):
    bench = rig_file(tmp_path / "bench.toml", bench_site, nodes=DOORS)
    assert "[concentrator]" not in bench.read_text()  # the bridge is the one path, as on the virtual rig
    report = tmp_path / "report"
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs", "--rig", str(bench)]
    command += ["--report", str(report), str(HIL_TESTS / "test_many_nodes.py")]
    # Under CI, where a skip fails: a bench's skips for what it lacks must not.
    done = subprocess.run(command, capture_output=True, text=True, timeout=RUN_S, env={**os.environ, "CI": "true"})
    assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-2000:]

    cases = {case.get("name"): case for case in ElementTree.parse(report / "junit.xml").getroot().iter("testcase")}
    published = cases["test_badges_presented_at_every_door_at_once_are_each_published_once_with_their_door_and_time"]
    assert [outcome for outcome in ("skipped", "failure", "error") if published.find(outcome) is not None] == []
    skipped = cases["test_the_doors_frames_collided_and_each_door_kept_within_its_sub_bands_duty_cycle"].find("skipped")
    assert skipped is not None and "the simulator's world" in skipped.get("message", "")

    summary = (report / "summary.md").read_text()
    assert "| door-6 | node | heltec_v2 | 606 |" in summary
    assert "| check-ins published twice (same event id) | 0 |" in summary
