"""`borne bench check` and `borne bench run`: what a bench can run, and running it.

`check` collects the suite with the rig file, as a run would, and asks the rig, for each scenario,
what it lacks: the scenarios it will run, and those it will skip with the reason. Nothing is
started: no gateway, no MQTT connection, no board touched.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from types import ModuleType
from typing import Any

from hil_tests.rig_file import load_rig_file

HIL_TESTS = Path(__file__).resolve().parent
EXAMPLE = HIL_TESTS / "bench.example.toml"  # `borne bench example` prints it; the wheel carries it


class BenchError(RuntimeError):
    """The suite cannot be collected or run here."""


def _pytest() -> ModuleType:
    """pytest runs the suite; `borne` itself does not need it, so it is imported only here."""
    try:
        import pytest
    except ImportError as error:
        raise BenchError("the suite runs under pytest, which is not installed: pip install 'pytest>=8'") from error
    return pytest


class _Plan:
    """A pytest plugin: each collected scenario and what the rig lacks for it."""

    def __init__(self) -> None:
        self.scenarios: list[tuple[str, list[str]]] = []

    def pytest_collection_modifyitems(self, config: Any, items: list[Any]) -> None:
        from hil_tests.conftest import RIG, scenario_needs  # pytest loaded it as this folder's conftest

        rig = config.stash[RIG]
        # A scenario has a rig marker; the tests of the suite's own parts (the rig file's reader) have none.
        scenarios = [item for item in items if item.get_closest_marker("rig") is not None]
        self.scenarios = [(item.nodeid, rig.lacks(*scenario_needs(item))) for item in scenarios]


def plan(rig_file: Path) -> list[tuple[str, list[str]]]:
    """Each scenario of the suite, with what the bench of `rig_file` lacks for it (empty: it runs)."""
    load_rig_file(rig_file)  # RigFileError here, with what to fix, rather than inside pytest's output
    plugin = _Plan()
    arguments = ["--collect-only", "-q", "-p", "no:cacheprovider", "--rig", str(rig_file), str(HIL_TESTS)]
    output = io.StringIO()
    pytest = _pytest()
    with contextlib.redirect_stdout(output):
        code = pytest.main(arguments, plugins=[plugin])
    if code != pytest.ExitCode.OK:
        raise BenchError(f"collecting the scenarios failed (pytest exit {int(code)}):\n{output.getvalue()}")
    return plugin.scenarios


def check(rig_file: Path) -> str:
    """What `borne bench check` prints."""
    scenarios = plan(rig_file)
    runs = [nodeid for nodeid, missing in scenarios if not missing]
    skips = [(nodeid, missing) for nodeid, missing in scenarios if missing]
    lines = [f"{rig_file}: {len(runs)} scenarios will run, {len(skips)} will skip.", "", "boards:"]
    for board in load_rig_file(rig_file).boards:
        found = "found" if Path(board.port).exists() else "NOT FOUND: plug it in before the run"
        lines.append(f"  {board.name:<16} {board.role:<7} {board.port} ({found})")
    lines += ["", "will run:"]
    lines += [f"  {nodeid}" for nodeid in runs] or ["  none"]
    lines += ["", "will skip:"]
    lines += [f"  {nodeid}\n      lacks {'; '.join(missing)}" for nodeid, missing in skips] or ["  none"]
    return "\n".join(lines)


def run(rig_file: Path, report: Path | None, extra: list[str]) -> int:
    """`borne bench run`: the suite on the bench, its report in `report`."""
    arguments = [str(HIL_TESTS), "--rig", str(rig_file), *(["--report", str(report)] if report else []), *extra]
    return int(_pytest().main(arguments))
