"""Radio faults on an SX1262 board, seen by the firmware's `Radio` in the real MicroPython VM: the chip
model (frozen/sx126x_chip.py) hangs with BUSY high, refuses to transmit (its oscillator does not start:
OpError), loses its power, or has its send cut short. `Radio` counts each in `errors`, resets the
modem and sets it up again (`resets`), and carries on; ten failures in a row raise (the board
resets), a chip that never answers at start is a crash, and three of them safe mode.

A DIO line that never reaches the board (`dio1_dead` on an SX1262, `dio0_dead` on an SX1276: a cold
solder joint, a wrong pin in a profile) is no failure: the chip answers on SPI, and its IRQ flags
say what the line does not. The driver reads them, polls them from then on, and `Radio` counts the
dead line once in `errors`; frames go and come, and nothing resets.
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
from simulator.virtual_board.board import SX1262_WIRING, radio_wiring
from tests.firmware.conftest import deployed_radio_board, require_vm
from tests.firmware.conftest import run_on as run
from tests.virtual_board.conftest import wait_for

CS = SX1262_WIRING["cs"]
# A board profile per chip, and the fault that keeps its DIO line from the board.
PROFILES = {"sx1262": "heltec_v3", "sx1276": "heltec_v2"}
DEAD_DIO = {"sx1262": "dio1_dead", "sx1276": "dio0_dead"}


def node_config(chip: str) -> dict:
    profile = load_profile(PROFILES[chip])
    return build_config(profile, "node", "test", device_id=7, secrets=secrets_from_master(TEST_MASTER_KEY, 7))


def setup(chip: str) -> str:
    """A fresh `Radio` on the board's `chip`, as the node's configuration has it."""
    config = node_config(chip)
    wanted = json.dumps({"board": config["board"]["radio"], "radio": config["radio"]})
    return f"""
import asyncio, json
from borne.radio import Radio
config = json.loads({json.dumps(wanted)})
radio = Radio(config["board"], config["radio"])
results = []
received = []
async def send(payload):
    results.append(radio.sent_ms if await radio.send(payload) else None)  # TX-done's time
async def receive(timeout_ms):
    heard = await radio.receive(config["radio"]["freq_khz"], timeout_ms)
    received.append(heard and bytes(radio.packet).hex())
async def send_until_it_raises(n):
    try:
        for _ in range(n):
            results.append(radio.sent_ms if await radio.send(b"frame") else None)
    except RuntimeError as error:
        results.append(str(error))
def counts():
    return [radio.errors, radio.resets]
"""


CONFIG = node_config("sx1262")
SETUP = setup("sx1262")


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


def test_a_failed_send_is_counted_and_the_modem_reset_and_set_up_again(board) -> None:
    # SetTx refused (ExecError), XOSC_START in the device errors: an OpError on send.
    board.break_radio("xosc_fails")
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


# A chip that answers on SPI whose DIO line never reaches the board; and one that does not answer at all.


@pytest.fixture(scope="module", params=sorted(DEAD_DIO))
def chip_vm(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, medium: RadioMedium):
    """A board of each chip on the module's medium (the SX1262's is the module's `vm`), and its chip."""
    if request.param == "sx1262":
        yield request.getfixturevalue("vm"), "sx1262"
        return
    for board in deployed_radio_board(tmp_path_factory, "radio fault tests", request.param, medium):
        yield board, request.param


@pytest.fixture
def chip_board(chip_vm: tuple[VirtualBoard, str]) -> tuple[VirtualBoard, str]:
    """The board's chip sound and powered, and a fresh Radio on it."""
    board, chip = chip_vm
    board.silence_spi(radio_wiring(load_profile(PROFILES[chip])["radio"])["cs"], False)
    board.break_radio()
    board.exec(setup(chip))
    return board, chip


def heard_on_air(medium: RadioMedium, name: str) -> list[bytes]:
    """The frames a host-side radio named `name` hears from now on."""
    heard: list[bytes] = []
    medium.add_listener(lambda payload, *_radio: heard.append(payload), name=name)
    return heard


def send_to(board: VirtualBoard, medium: RadioMedium, chip: str, payload: bytes) -> None:
    """Send `payload` from a host-side radio, once the board's modem listens on the node's channel."""
    wait_for(lambda: medium.listening(board) is not None, 10)
    radio = node_config(chip)["radio"]
    medium.transmit(payload, radio["freq_khz"] * 1000, radio["sf"], int(float(radio["bw"]) * 1000))


def test_a_dead_dio_line_is_polled_over_spi_and_frames_go_and_come_without_a_reset(chip_board, medium) -> None:
    board, chip = chip_board
    heard = heard_on_air(medium, f"listener beside the {chip}")
    frames = [f"{chip} frame {i}".encode() for i in range(5)]
    boots = board.boots
    board.break_radio(DEAD_DIO[chip])
    for i, frame in enumerate(frames):  # one at a time, as the node's tasks take the radio's lock
        send(board, frame)
        assert isinstance(sent(board, i + 1)[i], int)  # TX-done's time, read from the chip's IRQ flags
    wait_for(lambda: all(frame in heard for frame in frames), 15)
    # The dead line counted once, as the status frame's radio_errors shows it; no modem reset.
    assert run(board, "counts() + [radio.dio_dead, radio.modem.dio_dead]") == [1, 0, True, True]

    board.exec("asyncio.create_task(receive(3000))")  # a receive window, as for an ACK
    send_to(board, medium, chip, b"the ack")
    wait_for(lambda: run(board, "received") == [b"the ack".hex()], 15)
    assert run(board, "counts()") == [1, 0]
    assert board.boots == boots


def test_a_dead_dio_line_found_while_listening_without_deadline_gives_the_frame(chip_board, medium) -> None:
    # A bridge listens with no deadline: the driver asks the chip once a second whether a frame came.
    board, chip = chip_board
    board.break_radio(DEAD_DIO[chip])
    board.exec("asyncio.create_task(receive(None))")
    send_to(board, medium, chip, b"first")
    wait_for(lambda: run(board, "received") == [b"first".hex()], 15)
    assert run(board, "counts() + [radio.dio_dead]") == [1, 0, True]
    board.exec("asyncio.create_task(receive(None))")  # polled now
    send_to(board, medium, chip, b"second")
    wait_for(lambda: run(board, "received") == [b"first".hex(), b"second".hex()], 15)
    send(board, f"{chip} after".encode())
    assert isinstance(sent(board, 1)[0], int)
    assert run(board, "counts()") == [1, 0]


def test_a_chip_that_does_not_answer_at_all_is_set_up_again_each_time_then_raises(chip_board) -> None:
    board, chip = chip_board
    board.silence_spi(radio_wiring(load_profile(PROFILES[chip])["radio"])["cs"])
    board.exec("asyncio.create_task(send_until_it_raises(10))")
    results = sent(board, 10)
    assert results[:9] == [None] * 9  # each failure counted, and the chip set up again in vain
    assert "the radio failed 10 times in a row" in results[9]
    assert run(board, "counts() + [radio.dio_dead]") == [10, 0, False]  # its silence is no dead line
