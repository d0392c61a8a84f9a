from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from simulator.virtual_board import VirtualBoard, VirtualBoardError, check_vm_installed

MPREMOTE_TIMEOUT_S = 30


@pytest.fixture
def board_tools() -> None:
    """Skip, saying what to install, when Node or the MicroPython VM is missing."""
    try:
        check_vm_installed()
    except VirtualBoardError as error:
        pytest.skip(str(error))


@pytest.fixture
def board(board_tools: None, tmp_path: Path) -> Iterator[VirtualBoard]:
    with VirtualBoard(tmp_path / "ttyBORNE0", tmp_path / "flash") as board:
        yield board


def run_mpremote(port: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real mpremote against a port, as an installer does."""
    command = [sys.executable, "-m", "mpremote", "connect", str(port), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=MPREMOTE_TIMEOUT_S)


@pytest.fixture
def mpremote(board: VirtualBoard) -> Callable[..., str]:
    """Run mpremote against the board, expecting success; return what it printed."""

    def run(*args: str) -> str:
        done = run_mpremote(board.port, *args)
        assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}{done.stderr}"
        return done.stdout

    return run


def wait_for(condition: Callable[[], bool], timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def read_when_written(path: Path) -> bytes:
    """What a board's program wrote to `path`: open() creates the file before its write() fills it."""
    wait_for(lambda: path.exists() and path.stat().st_size > 0)
    return path.read_bytes()
