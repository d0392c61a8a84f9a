"""The bench path, tested as a bench runs it: a rig file whose boards are virtual boards behind plain
ptys (a bench site, `simulator/bench_site.py`), whose badges are presented and power switched by
commands, and whose gateway the suite starts from its configuration. The suite then reaches the
boards only through those commands and the gateway only through its CLI and MQTT, as on a bench."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from pathlib import Path

import pytest

from hil_tests.conftest import require_site_tools
from hil_tests.rig import SIMULATOR
from hil_tests.test_virtual_site import DOOR, ROOM, SIDE_DOOR
from simulator.bench_site import READY_FILE
from simulator.children import start_child

pytestmark = pytest.mark.rig(needs=[SIMULATOR])  # it serves virtual boards as a bench
HIL_TESTS = Path(__file__).resolve().parent
SITE_START_S = 180
SCENARIOS = ("test_virtual_site.py", "test_two_paths.py", "test_battery_node.py")
BORNE = f"{sys.executable} -m borne"


@pytest.fixture(scope="module")
def bench_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A bench site with the doors and the room the scenarios ask for, and a concentrator: its bench.json."""
    require_site_tools()
    work = tmp_path_factory.mktemp("bench")
    nodes = work / "nodes.json"
    nodes.write_text(json.dumps([dataclasses.asdict(spec) for spec in (DOOR, SIDE_DOOR, ROOM)]))
    command = [sys.executable, "-m", "simulator.bench_site", "--work", str(work / "site"), "--nodes", str(nodes)]
    command += ["--concentrator", "--sf", "7"]
    with (work / "site.log").open("wb") as output:
        site = start_child(command, stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + SITE_START_S
        while not (work / "site" / READY_FILE).exists():
            assert site.poll() is None, (work / "site.log").read_text()
            assert time.monotonic() < deadline, f"the bench site did not start: {(work / 'site.log').read_text()}"
            time.sleep(0.5)
        yield json.loads((work / "site" / READY_FILE).read_text())
    finally:
        site.terminate()
        site.wait(timeout=30)


def rig_file(path: Path, ready: dict, *, power_switch: bool = True) -> Path:
    """The bench.toml of a bench site, as its owner would write it."""
    control = ready["control"]
    lines = [
        'name = "virtual boards on ptys"',
        f'[broker]\nhost = "127.0.0.1"\nport = {ready["broker_port"]}',
        f'[gateway]\nstart = "suite"\nconfig = "{ready["gateway_config"]}"',
        f"[concentrator]\nudp_port = {ready['udp_port']}",
        "[badge]",
        'presenter = "command"',
        f'command = "{BORNE} sim badge --control {control} --board {{board}} --uid {{uid}} --held {{held_s}}"',
        f'[[boards]]\nname = "bridge"\nport = "{ready["boards"]["bridge"]}"\nprofile = "heltec_v2"\nrole = "bridge"',
    ]
    for spec in (DOOR, SIDE_DOOR, ROOM):
        lines += [
            "[[boards]]",
            f'name = "{spec.name}"\nport = "{ready["boards"][spec.name]}"\nprofile = "{spec.board}"\nrole = "node"',
            f"device_id = {spec.device_id}",
            *([f'nfc = "{spec.nfc}"', f'direction = "{spec.direction}"'] if spec.nfc else []),
            f"sensors = {json.dumps(list(spec.sensors))}",
            *([f"telemetry_s = {spec.telemetry_s}"] if spec.telemetry_s else []),
            *([f"status_s = {spec.status_s}"] if spec.status_s else []),
        ]
        if power_switch and spec.name == "entrance":
            switch = f"{BORNE} sim power --control {control} --board {spec.name}"
            lines += [f'power_off = "{switch} off"', f'power_on = "{switch} on"']
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_scenarios_pass_on_a_bench_of_virtual_boards_and_its_report_says_so(bench_site, tmp_path):
    bench = rig_file(tmp_path / "bench.toml", bench_site)
    report = tmp_path / "report"
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs", "--rig", str(bench)]
    command += ["--report", str(report), *(str(HIL_TESTS / name) for name in SCENARIOS)]
    # Under CI, where a skip fails: a bench's skips for what it lacks must not.
    done = subprocess.run(command, capture_output=True, text=True, timeout=1500, env={**os.environ, "CI": "true"})
    assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-2000:]

    suites = ElementTree.parse(report / "junit.xml").getroot()
    cases = {case.get("name"): case for case in suites.iter("testcase")}
    assert cases["test_checkins_queued_when_a_doors_power_is_cut_arrive_once_after_it_is_back"].find("skipped") is None
    assert cases["test_a_frame_heard_by_both_paths_is_published_once_with_both_receptions"].find("skipped") is None
    air = cases["test_the_rooms_air_is_published_as_telemetry"].find("skipped")
    assert air is not None and "the simulator's world" in air.get("message", "")

    summary = (report / "summary.md").read_text()
    assert "rig: bench virtual boards on ptys" in summary
    assert "| entrance | node | heltec_v2 | 101 |" in summary
    assert "| scenarios passed |" in summary and "| messages published: checkin |" in summary
    assert "| check-ins published twice (same event id) | 0 |" in summary
    assert "firmware reported by the boards: 0." in summary  # the version the nodes and the bridge reported


def test_bench_check_lists_the_power_cut_scenarios_as_skipped_without_a_power_switch(bench_site, tmp_path):
    bench = rig_file(tmp_path / "bench.toml", bench_site, power_switch=False)
    done = subprocess.run([*BORNE.split(), "bench", "check", "--rig", str(bench)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    said = done.stdout
    will_run, will_skip = said.split("will skip:")
    power_cut = "test_checkins_queued_when_a_doors_power_is_cut_arrive_once_after_it_is_back"
    assert power_cut in will_skip and power_cut not in will_run
    assert "a power switch (power_off and power_on commands) on entrance" in will_skip
    assert "test_checkins_made_while_the_gateway_is_down_arrive_when_it_is_back" in will_run


def test_borne_bench_run_runs_the_scenarios_asked_for_and_writes_their_report(bench_site, tmp_path):
    bench = rig_file(tmp_path / "bench.toml", bench_site)
    command = [*BORNE.split(), "bench", "run", "--rig", str(bench), "--report", str(tmp_path / "report")]
    done = subprocess.run([*command, "-k", "heartbeat"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert "test_the_bridge_boards_heartbeat_reaches_the_gateways_stats | passed |" in summary
    assert "test_a_retap" not in summary  # deselected
