"""The firmware's start on a provisioned virtual board: safe mode, crash loops, the watchdog and
mpremote. Each board is provisioned as `borne board flash` does it (boot.py, main.py, borne/,
config.json) and boots main.py as a real one does.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial

from boards.profiles import load_profile
from boards.provisioning import NodeOptions, build_config, secrets_from_master, stage
from payload_codec import Config, config_digest, derive_device_keys, encode_body
from payload_codec.frame import build_frame
from payload_codec.vectorgen import TEST_MASTER_KEY
from simulator.virtual_board import RadioMedium, VirtualBoard
from simulator.virtual_board.board import DEEPSLEEP_RESET, HARD_RESET
from tests.firmware.conftest import require_vm

BUTTON = 0  # heltec_v2's PRG button
WATCHDOG_S = 30  # borne.watchdog.TIMEOUT_MS


@pytest.fixture(autouse=True)
def _vm() -> None:
    require_vm("firmware start tests")


def provision(flash: Path, *, with_config: bool = True) -> None:
    options = NodeOptions(sensors=("bme280",), telemetry_s=60)
    config = build_config(
        load_profile("heltec_v2"),
        "node",
        "test",
        device_id=7,
        secrets=secrets_from_master(TEST_MASTER_KEY, 7),
        options=options,
    )
    stage(config, flash)
    if not with_config:
        (flash / "config.json").unlink()


def console_during(board: VirtualBoard, action, seconds: float, until: str) -> str:
    """What the board prints on its console from `action()` on, until `until` shows or `seconds` pass."""
    output = b""
    with serial.Serial(str(board.port), 115200, timeout=0.2) as console:
        action()
        deadline = time.monotonic() + seconds
        while until.encode() not in output and time.monotonic() < deadline:
            output += console.read(4096)
    return output.decode(errors="replace")


# The node's modules, imported by an `exec` of their own before the one that builds a Node: this VM
# collects garbage only as a call into it returns (an ESP32 collects when its heap is full), and the
# imports' garbage and a Node made in the same call would outgrow the ESP32's heap.
NODE_IMPORTS = ("exec", "from borne import config\nfrom borne.node import Node", "+")


def mpremote(board: VirtualBoard, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "mpremote", "connect", str(board.port), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture
def radioless(tmp_path: Path) -> Iterator[VirtualBoard]:
    """A node whose radio does not answer: its firmware crashes at every start."""
    provision(tmp_path / "flash")
    with VirtualBoard(tmp_path / "tty", tmp_path / "flash", radio=None) as board:
        yield board


@pytest.fixture
def node(tmp_path: Path) -> Iterator[VirtualBoard]:
    provision(tmp_path / "flash")
    with RadioMedium() as medium, VirtualBoard(tmp_path / "tty", tmp_path / "flash", medium=medium) as board:
        yield board


# A door's check-in journal as it is after 250 check-ins, half of them ACKed: 375 records, more than
# the COMPACT_AFTER // 2 at which a boot rewrites it (borne/checkin_queue.py).
LONG_JOURNAL = """
from borne.checkin_queue import CheckinQueue
queue = CheckinQueue()
for i in range(250):
    queue.push(0x45, bytes(8), i)
    if i % 2:
        queue.ack(queue.first_number + 1, i)
"""


def test_a_door_whose_journal_is_long_starts(tmp_path):
    # Its boot replays every record before anything is collected in this VM (an ESP32 collects when its
    # heap is full): a replay that allocated per record outgrew the ESP32's heap, and the door never
    # started again after a power cut.
    flash = tmp_path / "flash"
    profile = load_profile("heltec_v2")
    options = NodeOptions(nfc="pn532", direction="in")
    stage(
        build_config(
            profile, "node", "test", device_id=7, secrets=secrets_from_master(TEST_MASTER_KEY, 7), options=options
        ),
        flash,
    )
    main = flash / "main.py"
    boot_code = main.read_bytes()
    main.unlink()
    with VirtualBoard(tmp_path / "tty-journal", flash, mcu="none") as board:
        board.exec(LONG_JOURNAL, timeout=120)
    journal = flash / "checkins.log"
    long_size = journal.stat().st_size
    main.write_bytes(boot_code)
    with RadioMedium() as medium, VirtualBoard(tmp_path / "tty", flash, medium=medium) as board:
        deadline = time.monotonic() + 60
        while journal.stat().st_size >= long_size:  # the boot rewrites it once it replayed it
            assert time.monotonic() < deadline, "the door did not get through its journal at boot"
            time.sleep(0.2)
        files = mpremote(board, "exec", "import os; print(sorted(os.listdir()))")
        assert "crash.txt" not in files
        assert mpremote(board, "exec", "import borne.retained; print(borne.retained.load()['crashes'])").strip() == "0"


def test_a_board_without_its_configuration_starts_in_safe_mode_and_says_why(tmp_path):
    provision(tmp_path / "flash", with_config=False)
    with VirtualBoard(tmp_path / "tty", tmp_path / "flash") as board:
        printed = console_during(board, board.reset, 20, "mpremote can reach")
        assert "SAFE MODE: the configuration is wrong: /config.json is missing" in printed
        assert mpremote(board, "exec", "print(6 * 7)").strip() == "42"


def test_a_crash_loop_ends_in_safe_mode_with_the_error_kept(radioless):
    first_boot = radioless.boots
    printed = console_during(radioless, radioless.reset, 60, "mpremote can reach")
    assert "SAFE MODE: 3 crashes in a row" in printed
    assert printed.count("borne: crashed; restarting") == 3
    assert radioless.boots == first_boot + 4  # the reset, then three crashes
    assert "OSError: [Errno 19] ENODEV" in mpremote(radioless, "fs", "cat", "crash.txt")  # the radio driver's


def test_a_power_cycle_leaves_safe_mode(radioless):
    console_during(radioless, radioless.reset, 60, "mpremote can reach")
    printed = console_during(radioless, radioless.power_cycle, 20, "restarting")
    assert "borne: crashed; restarting" in printed  # it tries again


def test_holding_the_button_at_reset_gives_safe_mode(node):
    node.set_pin(BUTTON, 0)
    printed = console_during(node, node.reset, 20, "mpremote can reach")
    assert "SAFE MODE: the button was held at reset" in printed


def test_mpremote_stops_a_running_node_and_the_watchdog_spares_its_session(node):
    console_during(node, node.reset, 10, "\x00")  # let it start: the firmware arms the watchdog
    assert "'wdt': 30000" in mpremote(node, "exec", "import borne.retained; print(borne.retained.load())")
    boots = node.boots
    time.sleep(WATCHDOG_S + 5)  # longer than the watchdog's timeout: only its timer feeds it now
    assert node.boots == boots
    assert mpremote(node, "exec", "print('still here')").strip() == "still here"


def test_installer_sessions_in_a_row_never_leave_a_healthy_board_in_safe_mode(node):
    # Each mpremote session (flash, check, enrol) stops the firmware soon after a reset: not a crash.
    # MAX_CRASHES sessions in a row: were each counted, the next boot would be safe mode.
    for _ in range(3):
        console_during(node, node.reset, 10, "\x00")
        assert mpremote(node, "exec", "import borne.retained; print(borne.retained.load()['crashes'])").strip() == "0"


def test_a_config_downlink_is_applied_at_once_and_kept_for_the_next_boots(node):
    keys = derive_device_keys(TEST_MASTER_KEY, 7)
    change = Config(report_interval_s=120, spreading_factor=8, tx_power_dbm=10)
    frame = build_frame(change, 7, 1, keys)
    code = f"""
node = Node(config.load())
acked = node._take_downlink(bytes.fromhex("{frame.hex()}"), 0)
kept = config.load()
print(acked, node.radio.sf, node.radio.power_dbm, kept["intervals"]["telemetry_s"], kept["radio"]["sf"])
print(kept["config_digest"], node.configured)
"""
    console_during(node, node.reset, 5, "\x00")
    digest = config_digest(encode_body(change))  # what its next status shows the gateway
    assert mpremote(node, *NODE_IMPORTS, "exec", code).split() == ["False", "8", "10", "120", "8", str(digest), "True"]


def take_downlinks(node: VirtualBoard, *frames: bytes) -> list[str]:
    """Hand `frames` to a fresh Node, as its radio would in a receive window; what it made of them:
    the number of downlinks it refused, the telemetry interval it keeps in its configuration, and the
    lowest downlink counter it accepts next (which its status frames report).
    A frame that rebooted the node would leave nothing printed (and mpremote would fail)."""
    code = f"""
node = Node(config.load())
for frame in {[frame.hex() for frame in frames]!r}:
    node._take_downlink(bytes.fromhex(frame), 0)
print(node.rejected_downlinks, config.load()["intervals"]["telemetry_s"], node.counter.next_downlink)
"""
    return mpremote(node, *NODE_IMPORTS, "exec", code).split()


def restarted_by(node: VirtualBoard, code: str, *before: str) -> None:
    """Run `code` (after the mpremote commands `before`), which ends the VM (a reset, a deep sleep), and
    wait until the board boots again."""
    boots = node.boots
    with contextlib.suppress(subprocess.TimeoutExpired):  # mpremote may wait on a board that went away
        subprocess.run(
            [sys.executable, "-m", "mpremote", "connect", str(node.port), *before, "exec", code],
            capture_output=True,
            text=True,
            timeout=20,
        )
    deadline = time.monotonic() + 30
    while node.boots == boots or node.asleep:
        assert time.monotonic() < deadline, "the board did not start again"
        time.sleep(0.05)
    console_during(node, lambda: None, 5, "\x00")  # let it start


def test_recorded_config_and_reboot_downlinks_are_refused_after_a_reboot_and_after_deep_sleep(node):
    keys = derive_device_keys(TEST_MASTER_KEY, 7)
    recorded_config = build_frame(Config(report_interval_s=120), 7, 1, keys)
    newer_config = build_frame(Config(report_interval_s=600), 7, 2, keys)
    recorded_reboot = build_frame(Config(reboot=True), 7, 3, keys)
    console_during(node, node.reset, 5, "\x00")
    assert take_downlinks(node, recorded_config, newer_config) == ["0", "600", "3"]
    take_reboot = f"Node(config.load())._take_downlink(bytes.fromhex('{recorded_reboot.hex()}'), 0)"
    restarted_by(node, take_reboot, *NODE_IMPORTS)
    assert node.reset_cause == HARD_RESET  # machine.reset(), as the reboot downlink asked

    # Its counters in NVS: the recorded frames are older than the last downlink accepted.
    assert take_downlinks(node, recorded_config, recorded_reboot) == ["2", "600", "4"]

    restarted_by(node, "import machine\nmachine.deepsleep(500)")
    assert node.reset_cause == DEEPSLEEP_RESET
    assert take_downlinks(node, recorded_config, recorded_reboot) == ["2", "600", "4"]


def test_mpremote_reaches_a_running_bridge_whose_console_carries_the_serial_link(tmp_path):
    # The bridge reads its console itself, with Ctrl-C turned off; mpremote's "\r\x03" still stops it.
    stage(build_config(load_profile("heltec_v2"), "bridge", "test"), tmp_path / "flash")
    with RadioMedium() as medium, VirtualBoard(tmp_path / "tty", tmp_path / "flash", medium=medium) as bridge:
        console_during(bridge, bridge.reset, 5, "\x00")  # its heartbeat records, meanwhile
        assert mpremote(bridge, "exec", "print('reached')").strip() == "reached"
