"""Rules for every test folder (tests/ and hil_tests/).

Under CI (the `CI` variable set), a test that skips fails instead: a suite that skips because Node,
the MicroPython VM, mosquitto or mpy-cross is missing would otherwise pass having tested nothing. A
scenario that may rightly skip on some rig says so with `@pytest.mark.may_skip`.

`make test` runs the tests on two workers (pytest-xdist's `--dist loadscope`): the scenarios of
hil_tests/ one after another on one of them, from the start (they are collected first), since they
mostly wait on timers and radio turns and would disturb each other's timing; the modules of tests/
on both, each module on one worker so that its module-scoped fixtures (VMs, sites) start once.
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "may_skip: this test may skip under CI (what it needs is optional there)")


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist, which bench runs do without
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class HilTestsAsOneScope(LoadScopeScheduling):
        """--dist loadscope, with the whole of hil_tests/ as one scope: one worker runs it all."""

        def _split_scope(self, nodeid: str) -> str:
            return "hil_tests" if nodeid.startswith("hil_tests/") else super()._split_scope(nodeid)

    return HilTestsAsOneScope(config, log)


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def _fail_if_skipped_in_ci(report: pytest.TestReport | pytest.CollectReport, may_skip: bool) -> None:
    if _in_ci() and report.skipped and not may_skip:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI, where every tool the tests need must be installed: {reason}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    _fail_if_skipped_in_ci(report, item.get_closest_marker("may_skip") is not None)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    report = yield
    _fail_if_skipped_in_ci(report, False)
    return report
