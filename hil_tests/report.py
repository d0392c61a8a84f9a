"""The report of a run (`--report DIR`): pytest's JUnit XML, and `summary.md`, a table a bench
engineer can file: the rig, the firmware's version and hash, the boards, each scenario's result with
its reason, and figures from what was published."""

from __future__ import annotations

import datetime
import hashlib
from collections import Counter
from pathlib import Path

import pytest

from boards.provisioning import firmware_files
from hil_tests.rig import Rig

SUMMARY = "summary.md"


def firmware_hash() -> str:
    """SHA-256 over the firmware's files as they go onto a board (path and content): what was flashed."""
    digest = hashlib.sha256()
    for board_path, path in firmware_files().items():
        digest.update(board_path.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def firmware_versions(messages: list[tuple[str, object]]) -> list[str]:
    """The firmware versions the boards reported (nodes' status, the bridge's heartbeat in the stats)."""
    found = set()

    def version(record: dict) -> str | None:
        parts = [record.get(f"firmware_{part}") for part in ("major", "minor", "patch")]
        return ".".join(map(str, parts)) if None not in parts else None

    for topic, payload in messages:
        if not isinstance(payload, dict):
            continue
        if topic.endswith("/status"):
            found.add(version(payload))
        elif topic.endswith("/stats"):
            for source in payload.get("sources", {}).values():
                found.add(version(source.get("heartbeat", {})))
    return sorted(v for v in found if v)


def pipeline_figures(messages: list[tuple[str, object]]) -> list[tuple[str, object]]:
    """Check-ins published twice (by event id: should be none), and the gateway's last counters."""
    events = Counter(
        str(payload.get("event_id"))
        for topic, payload in messages
        if topic.endswith("/checkin") and isinstance(payload, dict)
    )
    figures: list[tuple[str, object]] = [
        ("check-ins published twice (same event id)", sum(n > 1 for n in events.values()))
    ]
    stats = [payload for topic, payload in messages if topic.endswith("/stats") and isinstance(payload, dict)]
    if stats:
        counters = stats[-1].get("pipeline", {})
        figures += [(f"gateway's last count: {name}", value) for name, value in sorted(counters.items())]
    return figures


class RunReport:
    """A pytest plugin: gathers each scenario's result, and writes the summary at the end."""

    def __init__(self, rig: Rig, directory: Path) -> None:
        self.rig = rig
        self.directory = directory
        self.results: dict[str, tuple[str, str, float]] = {}  # node id: outcome, reason, seconds
        self.started = datetime.datetime.now(datetime.UTC)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        outcome, reason, seconds = self.results.get(report.nodeid, ("passed", "", 0.0))
        seconds += report.duration
        if report.skipped:
            outcome = "skipped"
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        elif report.failed:
            outcome = "failed" if report.when == "call" else f"error at {report.when}"
            reason = _first_line(report.longreprtext)
        self.results[report.nodeid] = (outcome, reason, seconds)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        (self.directory / SUMMARY).write_text(self.summary(), encoding="utf-8")

    def summary(self) -> str:
        messages = self.rig.messages()
        kinds = Counter(topic.rsplit("/", 1)[-1] for topic, _ in messages)
        outcomes = Counter(outcome.split()[0] for outcome, _, _ in self.results.values())
        lines = [
            "# Borne HIL run",
            "",
            f"- rig: {self.rig.name}",
            f"- started: {self.started:%Y-%m-%d %H:%M:%S} UTC",
            f"- firmware reported by the boards: {', '.join(firmware_versions(messages)) or 'none heard'}",
            f"- firmware files of this checkout (what `borne board flash` installs): sha256 {firmware_hash()}",
            "",
            "## Boards",
            "",
            "| name | role | profile | device | port |",
            "|---|---|---|---|---|",
        ]
        for board in self.rig.boards():
            cells = (board.get(key, "") for key in ("name", "role", "profile", "device", "port"))
            lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
        lines += ["", "## Scenarios", "", "| scenario | result | seconds | reason |", "|---|---|---|---|"]
        for nodeid, (outcome, reason, seconds) in self.results.items():
            lines.append(f"| {_cell(nodeid)} | {outcome} | {seconds:.1f} | {_cell(reason)} |")
        lines += ["", "## Figures", "", "| figure | value |", "|---|---|"]
        lines += [f"| scenarios {outcome} | {count} |" for outcome, count in sorted(outcomes.items())]
        lines += [f"| messages published: {kind} | {count} |" for kind, count in sorted(kinds.items())]
        lines += [f"| {figure} | {value} |" for figure, value in pipeline_figures(messages)]
        return "\n".join(lines) + "\n"


def _first_line(text: str) -> str:
    errors = [line for line in text.splitlines() if line.startswith("E ")]
    return (errors[0][1:].strip() if errors else text.strip().splitlines()[-1] if text.strip() else "")[:200]


def _cell(value: object) -> str:
    return str(value if value is not None else "").replace("|", "\\|").replace("\n", " ")
