"""Radio faults on an SX1262 board, seen by the firmware's `Radio` in the real MicroPython VM: the chip
model (frozen/sx126x_chip.py) hangs with BUSY high, refuses to transmit (its oscillator does not start:
OpError), loses its IRQ, loses its power, or has its send cut short. `Radio` counts each in `errors`,
resets the modem and sets it up again (`resets`), and carries on; a chip that never answers at start
is a crash, and three of them safe mode.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial

from boards.profiles import load_profile
from boards.provisioning import build_config, secrets_from_master, stage
from payload_codec.vectorgen import TEST_MASTER_KEY
from simulator.virtual_board import RadioMedium, VirtualBoard
from simulator.virtual_board.board import SX1262_WIRING
from tests.firmware.conftest import deployed_radio_board, require_vm
from tests.firmware.conftest import run_on as run
from tests.virtual_board.conftest import wait_for

CS = SX1262_WIRING["cs"]
CONFIG = build_config(
    load_profile("heltec_v3"), "node", "test", device_id=7, secrets=secrets_from_master(TEST_MASTER_KEY, 7)
)
SETUP = f"""
import asyncio, json
from borne.radio import Radio
config = json.loads({json.dumps(json.dumps({"board": CONFIG["board"]["radio"], "radio": CONFIG["radio"]}))})
radio = Radio(config["board"], config["radio"])
results = []
async def send(payload):
    results.append(await radio.send(payload))
def counts():
    return [radio.errors, radio.resets]
"""


@pytest.fixture(scope="module")
def vm(tmp_path_factory: pytest.TempPathFactory, medium: RadioMedium) -> Iterator[VirtualBoard]:
    yield from deployed_radio_board(tmp_path_factory, "radio fault tests", "sx1262", medium)


@pytest.fixture
def board(vm: VirtualBoard) -> VirtualBoard:
    """A Heltec V3's SX1262, sound and powered, and a fresh Radio on it."""
    vm.silence_spi(CS, False)
    vm.break_radio()
    vm.exec(SETUP)
    return vm


def sent(board: VirtualBoard, count: int) -> list:
    wait_for(lambda: len(run(board, "results")) >= count, 15)
    return run(board, "results")


def send(board: VirtualBoard, payload: bytes = b"frame") -> None:
    board.exec(f"asyncio.create_task(send({payload!r}))")


@pytest.mark.parametrize(
    "fault",
    [
        "dio1_dead",  # the TX-done IRQ never comes: the send times out
        "xosc_fails",  # SetTx refused (ExecError), XOSC_START in the device errors: an OpError on send
    ],
)
def test_a_failed_send_is_counted_and_the_modem_reset_and_set_up_again(board, fault: str) -> None:
    board.break_radio(fault)
    send(board)
    assert sent(board, 1) == [None]
    assert run(board, "counts()") == [1, 1]
    board.break_radio()  # the fault passes: the modem set up again sends
    send(board)
    assert isinstance(sent(board, 2)[1], int)
    assert run(board, "counts()") == [1, 1]


def test_a_chip_stuck_busy_is_counted_and_works_again_once_it_lets_go(board) -> None:
    board.break_radio("busy_stuck")
    send(board)
    assert sent(board, 1) == [None]
    assert run(board, "counts()") == [1, 0]  # setting it up again timed out too
    board.break_radio()
    send(board)  # the modem is set up again first: its reset attempt lost the chip's settings
    assert isinstance(sent(board, 2)[1], int)
    assert run(board, "counts()") == [1, 1]


def test_a_send_cut_short_by_standby_is_counted_and_the_next_one_goes(board) -> None:
    board.exec("radio.set_sf(12)")  # a frame on air for a second: time to interrupt it
    send(board, bytes(20))
    time.sleep(0.3)
    board.exec("radio.modem.standby()")
    assert sent(board, 1) == [None]
    assert run(board, "counts()") == [1, 1]
    send(board)
    assert isinstance(sent(board, 2)[1], int)


def test_a_chip_that_lost_its_power_is_set_up_again_once_it_answers(board) -> None:
    board.silence_spi(CS)
    send(board)
    assert sent(board, 1) == [None]  # nothing answers: no TX-done, and no chip to set up again
    assert run(board, "counts()") == [1, 0]
    board.silence_spi(CS, False)  # back, in its reset state: no packet type, the TCXO off
    send(board)
    assert isinstance(sent(board, 2)[1], int)
    assert run(board, "counts()") == [1, 1]


def test_a_radio_that_never_answers_at_start_leads_to_safe_mode(tmp_path: Path) -> None:
    require_vm("radio fault tests")
    stage(CONFIG, tmp_path / "flash")
    wiring = {**SX1262_WIRING, "faults": ["busy_stuck"]}
    with VirtualBoard(tmp_path / "tty", tmp_path / "flash", radio="sx1262", radio_wiring=wiring) as board:
        output = b""
        with serial.Serial(str(board.port), 115200, timeout=0.2) as console:
            board.reset()
            deadline = time.monotonic() + 60
            while b"mpremote can reach" not in output and time.monotonic() < deadline:
                output += console.read(4096)
        printed = output.decode(errors="replace")
        assert "SAFE MODE: 3 crashes in a row" in printed
        assert "BUSY line stays high" in printed
