"""Both roles supervised, on provisioned virtual boards booting main.py: a task that raises or ends is a
crash (its error in /crash.txt, then a reset), so is an error in a task nobody awaits, and three crashes
in a row still end in safe mode. The board's power (Vext) is switched on whatever its role.

The faults come from a `main.py` that changes one thing before the firmware starts: the SX127x
driver's receive fails as it does when the chip stops answering, or a task of its own raises.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from boards.profiles import load_profile
from boards.provisioning import NodeOptions, build_config, secrets_from_master, stage
from payload_codec.vectorgen import TEST_MASTER_KEY
from simulator.virtual_board import RadioMedium, VirtualBoard
from tests.firmware.conftest import require_vm
from tests.firmware.test_app import console_during, mpremote

VEXT = 21  # heltec_v2's Vext switch, active low

START = "import borne.app\n\nborne.app.start()\n"
RADIO_FAILS = """# The modem's receive fails at every call, as it does when the chip stops answering.
import borne.drivers.sx127x


async def _recv(self, timeout_ms=None):
    raise OSError(110)


borne.drivers.sx127x.SX127x.recv = _recv
"""
DETACHED_TASK_FAILS = """# A task that nobody awaits raises once the firmware runs (until a crash is recorded).
import asyncio
import os


async def _fails():
    await asyncio.sleep_ms(1500)
    raise OSError(5, "a detached task failed")


if "crash.txt" not in os.listdir("/"):
    asyncio.create_task(_fails())
"""


@pytest.fixture(autouse=True)
def _vm() -> None:
    require_vm("supervision tests")


def provision(flash: Path, role: str, main_prologue: str = "") -> None:
    profile = load_profile("heltec_v2")
    if role == "bridge":
        config = build_config(profile, "bridge", "test")
    else:
        options = NodeOptions(sensors=("bme280",), telemetry_s=60)
        config = build_config(
            profile, "node", "test", device_id=7, secrets=secrets_from_master(TEST_MASTER_KEY, 7), options=options
        )
    stage(config, flash)
    (flash / "main.py").write_text(main_prologue + START, encoding="utf-8")


def test_a_radio_error_that_ends_the_bridges_listener_is_a_crash_and_three_are_safe_mode(tmp_path):
    provision(tmp_path / "flash", "bridge", RADIO_FAILS)
    with RadioMedium() as medium, VirtualBoard(tmp_path / "tty", tmp_path / "flash", medium=medium) as bridge:
        first_boot = bridge.boots
        printed = console_during(bridge, bridge.reset, 90, "mpremote can reach")
        assert printed.count("borne: crashed; restarting") == 3
        assert "SAFE MODE: 3 crashes in a row" in printed
        assert bridge.boots == first_boot + 4  # the reset, then a reset per crash
        crash = mpremote(bridge, "fs", "cat", "crash.txt")
        assert "_listen" in crash
        assert "RuntimeError: the radio failed 10 times in a row" in crash


def test_an_error_in_a_task_nobody_awaits_is_a_crash(tmp_path):
    provision(tmp_path / "flash", "node", DETACHED_TASK_FAILS)
    with RadioMedium() as medium, VirtualBoard(tmp_path / "tty", tmp_path / "flash", medium=medium) as node:
        boots = node.boots
        printed = console_during(node, node.reset, 30, "restarting")
        assert "borne: crashed; restarting" in printed
        assert "a detached task failed" in printed
        deadline = time.monotonic() + 10
        while node.boots < boots + 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert node.boots == boots + 2  # the reset button, then the crash's reset
        assert "a detached task failed" in mpremote(node, "fs", "cat", "crash.txt")


@pytest.mark.parametrize("role", ["node", "bridge"])
def test_vext_is_switched_on_whatever_the_role(tmp_path, role):
    provision(tmp_path / "flash", role)
    with RadioMedium() as medium, VirtualBoard(tmp_path / "tty", tmp_path / "flash", medium=medium) as board:
        console_during(board, board.reset, 5, "\x00")
        assert board.pin_output(VEXT) == 0
