"""The rig of this run (`--rig FILE`, else the virtual one), each module's site on it, and the report.

    pytest hil_tests                                # the virtual rig
    pytest hil_tests --rig bench.toml --report out  # a bench; JUnit XML and a summary in out/

A module names its nodes once, `pytestmark = pytest.mark.rig(nodes=[...])`, and a scenario what
else it needs, `@pytest.mark.rig(needs=[...])` (see `rig.NEEDS`). Before a scenario starts, the rig
says what it lacks; the scenario then skips, naming it. On a bench such a skip is the bench's
shape, not a missing tool, so it is marked `may_skip` (the root conftest fails other skips under
CI); the virtual rig lacks nothing, so a skip there still fails under CI.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hil_tests.report import RunReport
from hil_tests.rig import BenchRig, Rig, Site, VirtualRig
from hil_tests.rig_file import RigFileError, load_rig_file
from payload_codec import badge_token, derive_badge_key
from simulator.broker import BrokerMissing, mosquitto_binary
from simulator.test_keys import TEST_MASTER_KEY
from simulator.virtual_board import VirtualBoardError, check_vm_installed
from simulator.virtual_site import NodeSpec

BADGE_KEY = derive_badge_key(TEST_MASTER_KEY)
RIG = pytest.StashKey[Rig]()
SCRATCH = pytest.StashKey[Path]()  # the bench's work folder when no --report names one


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("borne rig")
    group.addoption("--rig", type=Path, metavar="FILE", help="a bench rig file (bench.toml); default: the virtual rig")
    group.addoption("--report", type=Path, metavar="DIR", help="write junit.xml and summary.md into DIR")


@pytest.hookimpl(tryfirst=True)  # before the junitxml plugin reads its path
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "rig(nodes=[...], needs=[...]): the nodes and rig parts a scenario needs")
    report_dir = config.getoption("--report")
    config.stash[RIG] = make_rig(config, report_dir)
    if report_dir is not None:
        report_dir.mkdir(parents=True, exist_ok=True)
        config.option.xmlpath = str(report_dir / "junit.xml")
        config.pluginmanager.register(RunReport(config.stash[RIG], report_dir), "borne run report")


def make_rig(config: pytest.Config, report_dir: Path | None) -> Rig:
    """The rig of `--rig`; a bench's own files (the gateway's log) go beside the report, if any."""
    rig_file = config.getoption("--rig")
    if rig_file is None:
        return VirtualRig()
    try:
        loaded = load_rig_file(rig_file)
    except RigFileError as error:
        raise pytest.UsageError(str(error)) from error
    capture = config.pluginmanager.getplugin("capturemanager")
    terminal = capture.global_and_fixture_disabled if capture is not None else None
    if report_dir is not None:
        work = report_dir / "bench"
    else:
        work = config.stash[SCRATCH] = Path(tempfile.mkdtemp(prefix="borne-bench-"))
    return BenchRig(loaded, work, terminal)


def pytest_unconfigure(config: pytest.Config) -> None:
    rig = config.stash.get(RIG, None)
    if rig is not None:
        rig.close()
    scratch = config.stash.get(SCRATCH, None)
    if scratch is not None:
        with contextlib.suppress(OSError):
            scratch.rmdir()  # left empty (`borne bench check` runs nothing); a run's gateway log stays


def scenario_needs(item: pytest.Item) -> tuple[list[str], list[NodeSpec]]:
    """What the scenario `item` needs: its module's nodes, and the rig parts its markers name."""
    markers = list(item.iter_markers("rig"))
    needs = [need for marker in markers for need in marker.kwargs.get("needs", ())]
    nodes = [spec for marker in markers for spec in marker.kwargs.get("nodes", ())]
    return needs, nodes


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip, naming what is missing, a scenario the rig cannot run: before its site is started."""
    rig = item.config.stash[RIG]
    missing = rig.lacks(*scenario_needs(item))
    if missing:
        item.add_marker(pytest.mark.may_skip)
        pytest.skip(f"the rig lacks {'; '.join(missing)}")


def require_site_tools() -> None:
    """Skip, saying what is missing, without Node, the MicroPython VM or mosquitto."""
    try:
        check_vm_installed()
        mosquitto_binary()
    except (VirtualBoardError, BrokerMissing) as error:
        pytest.skip(f"the virtual site needs the virtual board and mosquitto: {error}")


def rig_site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, **virtual: Any
) -> Iterator[Site]:
    """The module's site on the run's rig, with the nodes of its `rig` marker, for a module's fixture.
    `virtual`: VirtualSite's options (the radio, a concentrator) on the virtual rig."""
    rig = request.config.stash[RIG]
    if isinstance(rig, VirtualRig):
        require_site_tools()
    nodes = [spec for marker in request.node.iter_markers("rig") for spec in marker.kwargs.get("nodes", ())]
    with rig.site(tmp_path_factory.mktemp(request.node.name.removesuffix(".py")), nodes, **virtual) as site:
        yield site


def checkins_of(site: Site, uid: bytes, door: str = "entrance") -> list[dict]:
    """The check-ins published for the badge `uid` at `door`: found by its token, as a consumer does."""
    token = badge_token(BADGE_KEY, uid).hex()
    return [c for c in site.mqtt.on(f"/{site.topic_name(door)}/checkin") if c["badge_token"] == token]


def present(site: Site, uid: bytes, held_s: float = 0.8, door: str = "entrance") -> None:
    """Hold the badge `uid` at the reader of `door` for `held_s`, then take it away."""
    site.present_badge(door, uid, held_s)
