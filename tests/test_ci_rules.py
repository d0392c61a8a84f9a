"""Under CI a test that skips fails: a suite missing Node, the VM, mosquitto or mpy-cross cannot pass by skipping."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBE = """
import pytest

def test_that_needs_mosquitto():
    pytest.skip("mosquitto is not installed")

@pytest.mark.may_skip
def test_that_may_skip_on_some_rig():
    pytest.skip("this rig has no power switch")
"""


def run_probe(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_probe.py").write_text(PROBE)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    environment = {key: value for key, value in os.environ.items() if key != "CI"}
    if ci is not None:
        environment["CI"] = ci
    # The repository's conftest.py, loaded as a plugin, is the rule under test.
    command = [sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "-rA"]
    command += ["--rootdir", str(tmp_path), str(tmp_path / "test_probe.py")]
    return subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120)


def test_a_skip_passes_outside_ci(tmp_path: Path) -> None:
    done = run_probe(tmp_path, None)
    assert done.returncode == 0, done.stdout
    assert "2 skipped" in done.stdout


def test_under_ci_a_test_that_skips_for_a_missing_tool_fails(tmp_path: Path) -> None:
    done = run_probe(tmp_path, "true")
    assert done.returncode == 1, done.stdout
    assert "1 failed, 1 skipped" in done.stdout
    assert "skipped under CI" in done.stdout and "mosquitto is not installed" in done.stdout
