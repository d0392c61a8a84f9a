"""`borne` installed from its wheel alone, away from the checkout: it flashes a board and runs the demo.

The wheel is built from this tree and installed into a fresh virtual environment; every command runs
in an empty folder, so nothing of the checkout can be imported by accident. The firmware and the board
profiles come from the wheel's package data; the MicroPython VM, which the wheel does not carry, is
installed by `borne sim board` into the user's cache (here, a temporary one) with npm.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from simulator.broker import BrokerMissing, mosquitto_binary

ROOT = Path(__file__).resolve().parents[1]
BUILD_TIMEOUT_S = 600
COMMAND_TIMEOUT_S = 180
DEMO_S = 30


class Installed:
    """A virtual environment holding only the built wheel and its dependencies."""

    def __init__(self, venv: Path, home: Path) -> None:
        self.venv = venv
        self.home = home  # the current folder of every command: empty, not the checkout
        self.environment = {
            **os.environ,
            "XDG_CACHE_HOME": str(home / "cache"),
            "XDG_STATE_HOME": str(home / "state"),
            "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
        }
        self.environment.pop("PYTHONPATH", None)

    def command(self, *arguments: str) -> list[str]:
        return [str(self.venv / "bin" / "borne"), *arguments]

    def run(self, *arguments: str, timeout: float = COMMAND_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*arguments),
            cwd=self.home,
            env=self.environment,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def _built(command: list[str], cwd: Path) -> None:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    _built([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), str(ROOT)], out)
    (found,) = out.glob("borne-*.whl")
    return found


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    base = tmp_path_factory.mktemp("installed")
    venv, home = base / "venv", base / "home"
    home.mkdir()
    _built([sys.executable, "-m", "venv", str(venv)], base)
    _built([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)], base)
    yield Installed(venv, home)


def test_the_wheel_carries_the_firmware_the_profiles_and_the_virtual_board(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in (
        "firmware/main.py",
        "firmware/borne/app.py",
        "boards/heltec_v2.json",
        "boards/profile.schema.json",
        "simulator/virtual_board/mcu.mjs",
        "simulator/virtual_board/package-lock.json",
        "simulator/virtual_board/frozen/machine.py",
        "gateway_daemon/borne-gateway.service",
        "hil_tests/bench.example.toml",
    ):
        assert expected in names, f"{expected} is not in the wheel"
    assert not any(name.startswith("tests/") for name in names)


def test_an_installed_borne_shows_a_board_configuration_without_touching_a_board(installed: Installed) -> None:
    done = installed.run(
        "board", "flash", "--dry-run", "--port", "/dev/ttyUSB0", "--board", "heltec_v2", "--role", "bridge",
        "--site", "ecole-jaures",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "dry run: would install on /dev/ttyUSB0" in done.stdout
    assert '"role": "bridge"' in done.stdout


def test_an_installed_borne_prints_the_example_rig_file_its_bench_commands_point_to(installed: Installed) -> None:
    done = installed.run("bench", "example")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == (ROOT / "hil_tests" / "bench.example.toml").read_text(encoding="utf-8")


def test_an_installed_borne_flashes_a_virtual_board_with_mpremote(installed: Installed) -> None:
    port, flash = installed.home / "ttyBORNE0", installed.home / "flash"
    board = subprocess.Popen(
        installed.command("sim", "board", "--blank", "--pty", str(port), "--flash", str(flash)),
        cwd=installed.home,
        env=installed.environment,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + COMMAND_TIMEOUT_S  # the first run installs the VM with npm
        while not port.exists():
            assert board.poll() is None, board.communicate()[1]
            assert time.monotonic() < deadline, "the virtual board never opened its port"
            time.sleep(0.1)
        done = installed.run(
            "board", "flash", "--port", str(port), "--board", "heltec_v2", "--role", "bridge", "--site", "ecole-jaures"
        )
        assert done.returncode == 0, done.stdout + done.stderr
    finally:
        board.send_signal(signal.SIGTERM)
        board.communicate(timeout=30)
    assert (flash / "main.py").is_file() and (flash / "borne" / "bridge.mpy").is_file()
    assert (flash / "borne" / "drivers" / "sx126x.mpy").is_file()  # the radio drivers come with it: no mip
    assert "mip" not in done.stdout
    config = json.loads((flash / "config.json").read_text(encoding="utf-8"))
    assert (config["role"], config["site"]) == ("bridge", "ecole-jaures")


def test_an_installed_borne_runs_the_demo(installed: Installed) -> None:
    try:
        mosquitto_binary()
    except BrokerMissing as error:
        pytest.skip(f"the demo needs mosquitto: {error}")
    done = installed.run("demo", "--duration", str(DEMO_S), timeout=DEMO_S + COMMAND_TIMEOUT_S)
    assert done.returncode == 0, done.stdout + done.stderr
    presented, published = map(
        int, re.search(r"badges presented: (\d+); published: (\d+) checkin", done.stdout).groups()
    )
    assert presented >= 1 and published == presented, done.stdout
