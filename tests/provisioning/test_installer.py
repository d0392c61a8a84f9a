"""`borne board flash` step by step against a stand-in for mpremote: what it runs, what it says when a step fails."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from boards import installer
from boards.installer import Installer, InstallError
from boards.profiles import load_profile
from boards.provisioning import CONFIG_FILE, NodeOptions, build_config, secrets_from_master, stage
from tests.provisioning.conftest import MASTER_KEY, NODE_ID, SITE

PORT = "/dev/ttyUSB0"
S3 = "LILYGO T3-S3 with ESP32S3"
ESP32_MPY = 6 | 3 << 8 | 10 << 10  # sys.implementation._mpy of MicroPython 1.27 on an ESP32: v6.3, xtensawin


class FakeMpremote:
    """Answers as mpremote would for a board described by `board`; records every command line."""

    def __init__(self, *, machine: str = "Heltec WiFi LoRa 32 with ESP32") -> None:
        self.board: dict[str, Any] = {
            "version": "1.27.0",
            "machine": machine,
            "files": {},  # path: SHA-256
            "mpy": ESP32_MPY,
            "identity": None,  # a blank board: no config.json
        }
        self.calls: list[list[str]] = []
        self.failures: dict[str, subprocess.CompletedProcess[str]] = {}  # by the command's first word

    def __call__(self, arguments: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
        arguments = list(arguments)
        self.calls.append(arguments)
        command = arguments[2]
        if command in self.failures:
            return self.failures[command]
        stdout = ""
        if command == "exec" and "BORNE-PROBE" in arguments[3]:
            stdout = "BORNE-PROBE " + json.dumps(self.board) + "\n"
        elif command == "exec" and "borne.identity.forget()" in arguments[3]:
            stdout = "BORNE-FORGOT 2\n"
        return subprocess.CompletedProcess(arguments, 0, stdout, "")

    def commands(self) -> list[str]:
        return [call[2] for call in self.calls]


def node_config(board: str = "heltec_v2") -> dict[str, Any]:
    return build_config(
        load_profile(board),
        "node",
        SITE,
        device_id=NODE_ID,
        secrets=secrets_from_master(MASTER_KEY, NODE_ID),
        options=NodeOptions(nfc="pn532"),
    )


def install(mpremote: FakeMpremote, config: dict[str, Any] | None = None, **options: Any) -> list[str]:
    lines: list[str] = []
    Installer(PORT, report=lines.append, runner=mpremote, **options).install(config or node_config())
    return lines


def test_the_steps_run_in_order_each_with_one_line_of_progress() -> None:
    mpremote = FakeMpremote()
    lines = install(mpremote)
    # probe; the firmware (folders made, then copied); a blank board's leftovers forgotten; config.json; reset
    assert mpremote.commands() == ["exec", "exec", "exec", "fs", "reset"]
    assert [line.split("]")[0] + "]" for line in lines] == [f"[{n}/4]" for n in range(1, 5)]
    assert "MicroPython 1.27.0 on Heltec WiFi LoRa 32 with ESP32" in lines[0]
    assert all(call[:2] == ["connect", PORT] for call in mpremote.calls)


def test_flashing_needs_no_network_the_radio_drivers_are_among_the_firmwares_files() -> None:
    mpremote = FakeMpremote(machine=S3)
    lines = install(mpremote, node_config("heltec_v3"))
    assert "mip" not in mpremote.commands()
    assert not any("import lora" in " ".join(call) for call in mpremote.calls)
    copy = next(call for call in mpremote.calls if "cp" in call)
    assert ":borne/drivers/sx126x.mpy" in copy  # the SX1262's driver goes with the firmware
    assert "firmware:" in lines[1]


def test_a_board_that_does_not_answer_says_what_to_check() -> None:
    mpremote = FakeMpremote()
    mpremote.failures["exec"] = subprocess.CompletedProcess(
        [], 1, "", f"mpremote: failed to access {PORT} (it may be in use by another program)"
    )
    with pytest.raises(InstallError, match=r"(?s)failed to access.*mpremote connect list"):
        install(mpremote)


def test_a_board_that_does_not_answer_as_micropython_is_told_to_get_it() -> None:
    mpremote = FakeMpremote()
    mpremote.failures["exec"] = subprocess.CompletedProcess([], 0, "ets Jun  8 2016 00:22:57\nrst:0x10\n", "")
    with pytest.raises(InstallError, match=r"(?s)answered, but not as MicroPython does; .*\nFlash MicroPython onto it"):
        install(mpremote)


def test_a_failure_mpremote_does_not_explain_is_told_to_try_again() -> None:
    mpremote = FakeMpremote()
    mpremote.failures["exec"] = subprocess.CompletedProcess([], 1, "", "mpremote: unexpected reply\n")
    with pytest.raises(InstallError, match="unexpected reply\nRun this again; if it fails the same way, press"):
        install(mpremote)


def test_a_board_that_stops_answering_is_told_to_reset() -> None:
    def silent(arguments: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
        raise subprocess.TimeoutExpired(list(arguments), timeout)

    with pytest.raises(InstallError, match=r"stopped answering for \d+ s\. Press its reset button"):
        Installer(PORT, report=lambda line: None, runner=silent).install(node_config())


def test_a_board_of_another_microcontroller_than_the_profiles_is_refused() -> None:
    mpremote = FakeMpremote()
    mpremote.board["machine"] = "Generic ESP32S3 module with ESP32S3"
    with pytest.raises(
        InstallError, match=r"is an ESP32S3 \(.*\), and the chosen board profile is for an ESP32: choose the right"
    ):
        install(mpremote)
    assert mpremote.commands() == ["exec"]


def test_modules_an_older_firmware_left_are_removed_before_the_copy() -> None:
    mpremote = FakeMpremote()
    mpremote.board["files"] = dict.fromkeys(["boot.py", "borne/app.py", "borne/removed_since.py"], "0" * 64)
    lines = install(mpremote)
    copy = next(call for call in mpremote.calls if "cp" in call)
    assert copy[2] == "exec" and copy[4:7] == ["+", "fs", "cp"]
    # The source of a module now installed as .mpy goes too: a .py beside a .mpy is the one imported.
    assert "'borne/app.py', 'borne/removed_since.py'" in copy[3] and "boot.py" not in copy[3]
    assert "2 files of an older firmware removed" in lines[1]


def staged_digests(config: dict[str, Any], tmp_path: Path) -> dict[str, str]:
    files = stage(config, tmp_path)
    return {path: hashlib.sha256((tmp_path / path).read_bytes()).hexdigest() for path in files if path != CONFIG_FILE}


def test_the_modules_go_compiled_and_boot_and_main_as_source() -> None:
    mpremote = FakeMpremote()
    lines = install(mpremote)
    copy = next(call for call in mpremote.calls if "cp" in call)
    targets = copy[4:][4::5]
    assert ":boot.py" in targets and ":main.py" in targets and ":borne/node.mpy" in targets
    assert not any(target.endswith(".py") for target in targets if target not in (":boot.py", ":main.py"))
    assert "as .mpy v6" in lines[1]


def test_a_second_flash_copies_only_what_changed(tmp_path: Path) -> None:
    mpremote = FakeMpremote()
    mpremote.board["files"] = staged_digests(node_config(), tmp_path)
    mpremote.board["files"]["borne/node.mpy"] = "0" * 64  # an older node module
    lines = install(mpremote)
    copy = next(call for call in mpremote.calls if "cp" in call)
    assert copy[4:] == ["+", "fs", "cp", copy[7], ":borne/node.mpy"]
    assert "1 files copied" in lines[1]


def test_a_flash_of_the_same_firmware_copies_nothing(tmp_path: Path) -> None:
    mpremote = FakeMpremote()
    mpremote.board["files"] = staged_digests(node_config(), tmp_path)
    lines = install(mpremote)
    (copy,) = [call for call in mpremote.calls if "cp" in call]
    assert copy[-2].endswith(CONFIG_FILE)  # config.json alone
    assert "0 files copied" in lines[1]


def test_a_micropython_that_reads_another_mpy_version_is_refused_with_what_to_do() -> None:
    mpremote = FakeMpremote()
    mpremote.board["mpy"] = 5  # MicroPython 1.12 to 1.18
    with pytest.raises(InstallError, match=r"cannot load the firmware, .*: flash MicroPython 1\.19 or later"):
        install(mpremote)


def test_no_key_is_ever_printed_or_passed_on_a_command_line() -> None:
    mpremote = FakeMpremote()
    config = node_config()
    lines = install(mpremote, config)
    shown = "\n".join(lines) + "\n".join(" ".join(call) for call in mpremote.calls)
    assert all(key not in shown for key in config["keys"].values())


def test_a_failed_reset_says_the_board_is_installed() -> None:
    mpremote = FakeMpremote()
    mpremote.failures["reset"] = subprocess.CompletedProcess([], 1, "", "mpremote: device disconnected")
    with pytest.raises(InstallError, match="Everything is installed: press the board's reset button"):
        install(mpremote)


def test_a_board_that_is_restarting_is_asked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(installer, "PROBE_PAUSE_S", 0)
    mpremote = FakeMpremote()
    refused = subprocess.CompletedProcess([], 1, "", "mpremote.transport.TransportError: could not enter raw repl")
    answers = iter([refused])
    real = mpremote.__call__

    def first_refuses(arguments: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
        return next(answers, None) or real(arguments, timeout)

    lines: list[str] = []
    Installer(PORT, report=lines.append, runner=first_refuses).install(node_config())
    assert "does not let mpremote in yet" in lines[0]
    assert lines[1].startswith("[1/4] the board answers")


def forgets(mpremote: FakeMpremote) -> bool:
    return any(call[2] == "exec" and "borne.identity.forget()" in call[3] for call in mpremote.calls)


def test_a_second_flash_as_the_same_device_keeps_its_queue_and_counters() -> None:
    mpremote = FakeMpremote()
    mpremote.board["identity"] = ["node", SITE, NODE_ID, 0]
    lines = install(mpremote)
    assert not forgets(mpremote)
    assert not any("erased" in line for line in lines)


def test_the_same_device_in_a_new_key_epoch_keeps_its_queue_and_loses_its_counters() -> None:
    mpremote = FakeMpremote()
    mpremote.board["identity"] = ["node", SITE, NODE_ID, 0]
    lines = install(mpremote, {**node_config(), "key_epoch": 1})
    assert not forgets(mpremote)
    assert any(call[2] == "exec" and "forget_counters()" in call[3] for call in mpremote.calls)
    (step,) = [line for line in lines if line.startswith("[2/4]")]
    assert "its counters of key epoch 0 are erased: it counts from 0 under epoch 1" in step


@pytest.mark.parametrize(
    ("identity", "was"),
    [
        (["node", SITE, NODE_ID + 1, 0], f"the board was node {NODE_ID + 1} of site {SITE}"),
        (["node", "another-site", NODE_ID, 0], f"the board was node {NODE_ID} of site another-site"),
        (["bridge", SITE, None, 0], f"the board was bridge of site {SITE}"),
    ],
)
def test_a_board_that_becomes_another_device_forgets_the_old_ones_queue_and_counters(
    identity: list[Any], was: str
) -> None:
    mpremote = FakeMpremote()
    mpremote.board["identity"] = identity
    lines = install(mpremote)
    assert forgets(mpremote)
    (step,) = [line for line in lines if line.startswith("[2/4]")]
    assert f"; {was}: its queued check-ins (2 files) and counters are erased" in step
    assert mpremote.commands().index("exec", 1) < mpremote.commands().index("reset")
