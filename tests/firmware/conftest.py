"""The firmware in the real MicroPython VM: deploy it with mpremote, run every call at once."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from boards import provisioning
from simulator.virtual_board import RadioMedium, VirtualBoard, VirtualBoardError, check_vm_installed
from tests.firmware.cases import all_calls, dump

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware"
RUNNER = Path(__file__).with_name("board_runner.py")
VM_RUN_TIMEOUT_S = 300  # every call in one run; typically a few seconds


def require_vm(what: str) -> None:
    """Skip, saying what to install, when Node or the MicroPython VM is missing."""
    try:
        check_vm_installed()
    except VirtualBoardError as error:
        pytest.skip(f"{what} need the virtual board: {error}")


def deploy(board: VirtualBoard, work: Path, *then: str) -> subprocess.CompletedProcess[str]:
    """Copy `firmware/borne` to the board with the real mpremote, compiled as an installer does.

    `then` continues the same mpremote command line (e.g. "+", "fs", "cp", FILE, ":").
    """
    stage = work / "stage"
    for board_path, source in provisioning.firmware_files(FIRMWARE).items():
        if board_path.startswith("borne/"):
            target = stage / provisioning.board_name(board_path)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(provisioning.compile_module(source, board_path))
    return _run_mpremote(board.port, "fs", "cp", "-r", str(stage / "borne"), ":", *then)


@pytest.fixture(scope="module")
def medium() -> Iterator[RadioMedium]:
    """A radio medium for a module's board, so that its radio chip hears and is heard."""
    with RadioMedium() as medium:
        yield medium


def deployed_radio_board(
    tmp_path_factory: pytest.TempPathFactory, what: str, radio: str, medium: RadioMedium, setup: str = ""
) -> Iterator[VirtualBoard]:
    """A module's board with its `radio` chip on `medium`, the firmware deployed by mpremote and
    `setup` run on it once."""
    require_vm(what)
    work = tmp_path_factory.mktemp(radio)
    with VirtualBoard(work / "tty", work / "flash", radio=radio, medium=medium) as board:
        done = deploy(board, work)
        assert done.returncode == 0, f"deploying the firmware failed:\n{done.stdout}{done.stderr}"
        if setup:
            board.exec(setup)
        yield board


def firmware_files() -> list[Path]:
    return sorted(path for path in FIRMWARE.rglob("*.py") if "__pycache__" not in path.parts)


def _run_mpremote(port: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "mpremote", "connect", str(port), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=VM_RUN_TIMEOUT_S)


@pytest.fixture(scope="session")
def board_answers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """The firmware's answer to every call of `cases.all_calls()`, by id, from one VM run."""
    require_vm("firmware tests")
    work = tmp_path_factory.mktemp("firmware_vm")
    (work / "calls.json").write_text(dump(all_calls()), encoding="utf-8")
    with VirtualBoard(work / "tty", work / "flash", mcu="none") as board:
        done = deploy(board, work, "+", "fs", "cp", str(work / "calls.json"), ":calls.json", "+", "run", str(RUNNER))
    if done.returncode != 0 or "\nDONE " not in "\n" + done.stdout:
        pytest.fail(f"the firmware run in the VM failed (exit {done.returncode}):\n{done.stdout[-3000:]}{done.stderr}")
    answers = {}
    for line in done.stdout.splitlines():
        if line.startswith("R "):
            _, call_id, answer = line.split(" ", 2)
            answers[call_id] = json.loads(answer)
    return answers


@pytest.fixture
def answer_of(board_answers: dict[str, dict]):
    """The firmware's answer to one call; fails with the VM's error if the call raised."""

    def lookup(call_id: str):
        answer = board_answers[call_id]
        assert "error" not in answer, f"{call_id} raised in the VM: {answer['error']}"
        return answer["ok"]

    return lookup


# Run on the board before a driver test's calls: a badge read as JSON, an OSError as its errno.
DRIVER_HELPERS = """
import json
from binascii import hexlify
def badge(reader):
    found = reader.read_badge()
    return found and [hexlify(found[0]).decode(), found[1]]
def attempt(call):
    try:
        return {"ok": call()}
    except OSError as e:
        return {"errno": e.errno, "message": str(e)}
"""


def board_with_firmware(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[VirtualBoard]:
    """One virtual board with `borne/` deployed by mpremote: a module's fixture."""
    require_vm(f"{name} tests")
    work = tmp_path_factory.mktemp(name)
    with VirtualBoard(work / "tty", work / "flash") as board:
        done = deploy(board, work)
        assert done.returncode == 0, f"deploying the firmware failed:\n{done.stdout}{done.stderr}"
        yield board


def run_on(board: VirtualBoard, expression: str) -> object:
    """Evaluate `expression` on the board and return its value, through JSON."""
    return json.loads(board.exec(f"print(json.dumps({expression}))").strip())
