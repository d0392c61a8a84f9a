"""The bench path, tested as a bench runs it: a rig file whose boards are virtual boards behind plain
ptys (a bench site, `simulator/bench_site.py`), one of them blank for the suite to flash, whose badges
are presented, power switched and broker restarted by commands, and whose gateway the suite starts
from its configuration; or a gateway already running, stopped, started and reloaded by commands, and
a person at a terminal (a pty) who presents the badges the suite asks for. The suite then reaches
the boards only through those commands and their serial ports (the real mpremote), and the gateway
only through its CLI, its process or commands, and MQTT, as on a bench."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import select
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from hil_tests.conftest import require_site_tools
from hil_tests.rig import SIMULATOR
from hil_tests.test_flashing import SPARE
from hil_tests.test_virtual_site import DOOR, ROOM, SIDE_DOOR
from simulator.bench_site import BOOT_S, READY_FILE, present_badge
from simulator.children import start_child
from simulator.virtual_site import GATEWAY_NAME, NodeSpec

pytestmark = pytest.mark.rig(needs=[SIMULATOR])  # it serves virtual boards as a bench
HIL_TESTS = Path(__file__).resolve().parent
BRIDGE_BOARD = NodeSpec(0, "bridge")  # the bridge's entry in the rig file, written as the nodes' are
SITE_START_S = 180
BENCH_UP_S = 60 + BOOT_S  # its VMs start, then its nodes boot
# The gateway starts with the first module's site, after the boards' boot statuses went unheard: with the
# door module last, their next ones (every 60 s) are out before its status scenario looks for them.
SCENARIOS = ("test_flashing.py", "test_two_paths.py", "test_battery_node.py", "test_virtual_site.py")
NODES = (DOOR, SIDE_DOOR, ROOM, SPARE)
BORNE = f"{sys.executable} -m borne"


@contextlib.contextmanager
def running_bench_site(work: Path, nodes: Sequence[NodeSpec], *options: str) -> Iterator[dict]:
    """A bench site (`python -m simulator.bench_site` with `options`) serving `nodes` and a bridge, up and
    its nodes booted: its bench.json. Its output goes to `work/site.log`."""
    require_site_tools()
    (work / "nodes.json").write_text(json.dumps([dataclasses.asdict(spec) for spec in nodes]))
    command = [sys.executable, "-m", "simulator.bench_site", "--work", str(work / "site")]
    command += ["--nodes", str(work / "nodes.json"), *options]
    with (work / "site.log").open("wb") as output:
        site = start_child(command, stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + BENCH_UP_S
        while not (work / "site" / READY_FILE).exists():
            assert site.poll() is None, (work / "site.log").read_text()
            assert time.monotonic() < deadline, f"the bench site did not start: {(work / 'site.log').read_text()}"
            time.sleep(0.5)
        yield json.loads((work / "site" / READY_FILE).read_text())
    finally:
        site.terminate()
        site.wait(timeout=30)


@pytest.fixture(scope="module")
def bench_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A bench site with the doors, the room and the blank board the scenarios ask for, and a concentrator:
    its bench.json."""
    with running_bench_site(tmp_path_factory.mktemp("bench"), NODES, "--concentrator", "--sf", "7") as ready:
        yield ready


def rig_file(
    path: Path,
    ready: dict,
    *,
    nodes: Sequence[NodeSpec] = NODES,
    lean: bool = False,
    gateway: list[str] | None = None,
    person: bool = False,
) -> Path:
    """The bench.toml of a bench site serving `nodes`, as its owner would write it: its radio settings, and
    its concentrator if it has one. `gateway`: the [gateway] table's lines, if not a gateway the suite
    starts; `lean`: no power switch (else the entrance and the bridge have one), no broker commands, and
    the spare is not for the suite to flash; `person`: a person at the terminal presents the badges."""
    control = ready["control"]
    broker = f"{BORNE} sim broker --control {control}"
    lines = [
        'name = "virtual boards on ptys"',
        f'[broker]\nhost = "127.0.0.1"\nport = {ready["broker_port"]}',
        *([] if lean else [f'stop_command = "{broker} stop"\nstart_command = "{broker} start"']),
        "[gateway]",
        *(gateway or ['start = "suite"', f'config = "{ready["gateway_config"]}"']),
        f'[site]\nkeys = "{ready["site_keys"]}"\nregistry = "{ready["registry"]}"',
        *(f"{key} = {value}" for key, value in ready["radio"].items()),
        *([f"[concentrator]\nudp_port = {ready['udp_port']}"] if ready["udp_port"] is not None else []),
        "[badge]",
        *(
            ['presenter = "prompt"', "timeout_s = 120"]
            if person
            else [
                'presenter = "command"',
                f'command = "{BORNE} sim badge --control {control} --board {{board}} --uid {{uid}} --held {{held_s}}"',
            ]
        ),
    ]
    for spec in (BRIDGE_BOARD, *nodes):
        lines += [
            "[[boards]]",
            f'name = "{spec.name}"\nport = "{ready["boards"][spec.name]}"\nprofile = "{spec.board}"',
            'role = "bridge"' if spec is BRIDGE_BOARD else f'role = "node"\ndevice_id = {spec.device_id}',
            *([f'nfc = "{spec.nfc}"', f'direction = "{spec.direction}"'] if spec.nfc else []),
            f"sensors = {json.dumps(list(spec.sensors))}",
            *([f"telemetry_s = {spec.telemetry_s}"] if spec.telemetry_s else []),
            *([f"status_s = {spec.status_s}"] if spec.status_s else []),
            *(["flashable = true"] if spec.blank and not lean else []),
        ]
        if not lean and spec.name in ("entrance", "bridge"):
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
    ran = (
        "test_a_blank_board_flashed_over_its_serial_port_sends_frames_the_gateway_verifies",
        "test_a_board_flashed_with_another_sites_key_is_refused_and_reported",
        "test_checkins_made_while_the_broker_is_down_arrive_once_when_it_is_back",
        "test_checkins_around_a_sigkill_of_the_gateway_arrive_once",
        "test_the_gateway_takes_the_bridge_back_after_it_is_unplugged",
        "test_the_rooms_telemetry_carries_each_of_its_sensors_values_within_a_plausible_range",
    )
    assert [name for name in ran if cases[name].find("skipped") is not None] == []
    for virtual_only in (
        "test_the_rooms_air_is_published_as_telemetry",
        "test_a_frame_recorded_off_the_air_and_replayed_is_refused_as_a_replay",
    ):
        skipped = cases[virtual_only].find("skipped")
        assert skipped is not None and "the simulator's world" in skipped.get("message", "")

    summary = (report / "summary.md").read_text()
    assert "rig: bench virtual boards on ptys" in summary
    assert "| entrance | node | heltec_v2 | 101 |" in summary
    assert "| scenarios passed |" in summary and "| messages published: checkin |" in summary
    assert "| check-ins published twice (same event id) | 0 |" in summary
    assert "firmware reported by the boards: 0." in summary  # the version the nodes and the bridge reported


def running_gateway(pid: Path, log: Path, config: str) -> tuple[str, str, list[str]]:
    """A gateway run as a service manager runs it: its start and stop commands, and the rig file's
    [gateway] lines for it, with a reload command."""
    start = f"{BORNE} gateway run --config {config} >> {log} 2>&1 < /dev/null & echo $! > {pid}"
    stop = f"kill $(cat {pid}); while kill -0 $(cat {pid}) 2>/dev/null; do sleep 0.2; done"
    lines = ['start = "running"', f'name = "{GATEWAY_NAME}"', f'stop_command = "{stop}"']
    return start, stop, [*lines, f'start_command = "{start}"', f'reload_command = "kill -HUP $(cat {pid})"']


def test_bench_check_names_what_each_skipped_scenario_lacks(bench_site, tmp_path):
    _, _, service = running_gateway(tmp_path / "pid", tmp_path / "log", bench_site["gateway_config"])
    bench = rig_file(tmp_path / "bench.toml", bench_site, lean=True, gateway=service)
    done = subprocess.run([*BORNE.split(), "bench", "check", "--rig", str(bench)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    will_run, will_skip = done.stdout.split("will skip:")
    lacks = dict(re.findall(r"::(\w+)\n\s+lacks (.*)", will_skip))
    assert lacks["test_checkins_queued_when_a_doors_power_is_cut_arrive_once_after_it_is_back"] == (
        "a power switch (power_off and power_on commands) on entrance"
    )
    assert lacks["test_the_gateway_takes_the_bridge_back_after_it_is_unplugged"] == (
        "a power switch (power_off and power_on commands) on bridge"
    )
    assert (
        "[broker] stop_command and start_command"
        in lacks["test_checkins_made_while_the_broker_is_down_arrive_once_when_it_is_back"]
    )
    assert '[gateway] start = "suite"' in lacks["test_checkins_around_a_sigkill_of_the_gateway_arrive_once"]
    for flashing in (
        "test_a_blank_board_flashed_over_its_serial_port_sends_frames_the_gateway_verifies",
        "test_a_board_flashed_with_another_sites_key_is_refused_and_reported",
    ):
        needs = "a node like 'spare' (status every 60 s or less; that the suite may erase and flash (flashable = true))"
        assert needs in lacks[flashing]
    assert "test_checkins_made_while_the_gateway_is_down_arrive_when_it_is_back" in will_run
    # Its entrance stands for one of the six doors presented at once; the other five it lacks.
    at_once = lacks["test_badges_presented_at_every_door_at_once_are_each_published_once_with_their_door_and_time"]
    assert "a node like 'door-2' (pn532 reader; direction out)" in at_once
    assert "a node like 'door-1'" not in at_once


PROMPT = re.compile(r"Hold the badge ([0-9A-F]+) at the reader of (\S+) \(.*?press Enter.*?: ", re.DOTALL)


def as_the_person_at_the_terminal(command: list[str], control: Path, output: Path, timeout: float) -> tuple[int, int]:
    """Run `command` with a pty as its terminal, and there do as a person at the bench: hold each badge the
    suite asks for at the reader it names (through the bench site), then press Enter. Its exit code, and
    how many badges the person presented; its output goes to `output`."""
    terminal, person_side = os.openpty()

    def take_the_terminal() -> None:  # in the child, a session of its own: the pty becomes its /dev/tty
        import fcntl
        import termios

        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    with output.open("wb") as out:
        process = subprocess.Popen(
            command, stdin=person_side, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=take_the_terminal,
        )  # fmt: skip
    os.close(person_side)
    said, answered, deadline = "", 0, time.monotonic() + timeout
    try:
        while process.poll() is None and time.monotonic() < deadline:
            if not select.select([terminal], [], [], 0.5)[0]:
                continue
            try:
                said += os.read(terminal, 4096).decode(errors="replace")
            except OSError:  # the suite closed its terminal: it is ending
                time.sleep(0.2)
                continue
            while asked := PROMPT.search(said):
                present_badge(control, asked.group(2), bytes.fromhex(asked.group(1)))
                os.write(terminal, b"\n")
                answered += 1
                said = said[asked.end() :]
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        os.close(terminal)
    return process.returncode, answered


def test_borne_bench_run_with_a_running_gateway_and_a_person_presenting_the_badges(bench_site, tmp_path):
    # The gateway runs as a service manager runs it: before the suite and after it, stopped, started and
    # reloaded by the bench owner's commands.
    log = tmp_path / "gateway.log"
    start, stop, service = running_gateway(tmp_path / "gateway.pid", log, bench_site["gateway_config"])
    bench = rig_file(tmp_path / "bench.toml", bench_site, gateway=service, person=True)
    log.touch()  # the start command's shell opens it in the background: it may not exist yet when read
    subprocess.run(start, shell=True, check=True)
    try:
        deadline = time.monotonic() + SITE_START_S
        while "bridge board connected" not in log.read_text():
            assert time.monotonic() < deadline, f"the gateway did not start: {log.read_text()}"
            time.sleep(0.2)
        scenarios = "mfrc522 or gateway_is_down or blank_board"
        command = [*BORNE.split(), "bench", "run", "--rig", str(bench), "--report", str(tmp_path / "report")]
        code, presented = as_the_person_at_the_terminal(
            [*command, "-k", scenarios], Path(bench_site["control"]), tmp_path / "run.log", timeout=900
        )
    finally:
        subprocess.run(stop, shell=True, check=False)
    assert code == 0, (tmp_path / "run.log").read_text()[-6000:]

    summary = (tmp_path / "report" / "summary.md").read_text()
    for passed in (
        "test_an_mfrc522_door_checks_out_a_ten_byte_uid",
        "test_checkins_made_while_the_gateway_is_down_arrive_when_it_is_back",
        "test_a_blank_board_flashed_over_its_serial_port_sends_frames_the_gateway_verifies",
    ):
        assert f"{passed} | passed |" in summary, summary
    assert "test_a_retap" not in summary  # deselected
    assert presented == 4  # the side door's badge, and the three of the gateway's outage
    said = log.read_text()
    assert said.count("bridge board connected") == 2  # started by its command once more after the outage
    assert "registry reloaded" in said  # by its reload command, after the flash
