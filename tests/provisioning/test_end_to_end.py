"""Provisioning a virtual board as an installer does: `borne board flash` with the real mpremote; `borne sim board`."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from boards.profiles import load_profile
from boards.provisioning import board_name, compile_module, firmware_files
from boards.registry import Registry
from payload_codec import CodecError, derive_badge_key, derive_device_keys, open_envelope, read_envelope
from simulator.test_keys import TEST_MASTER_KEY
from simulator.virtual_board import RadioMedium, VirtualBoard, VirtualBoardError, check_vm_installed
from tests.provisioning.conftest import MASTER_KEY, NODE_ID, READER_ID, SITE, Site
from tests.virtual_board.conftest import run_mpremote, wait_for

COMMAND_TIMEOUT_S = 120  # a flash takes about ten seconds on the virtual board
READ_BACK_TIMEOUT_S = 60  # the firmware may be starting, or crashing its way into safe mode, meanwhile


@pytest.fixture(autouse=True)
def virtual_board_tools() -> None:
    try:
        check_vm_installed()
    except VirtualBoardError as error:
        pytest.skip(str(error))


def borne(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "borne", *arguments], capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S
    )


def read_config(port: Path) -> dict:
    """config.json as the board serves it, read with mpremote once the board lets it in."""
    answers: list[subprocess.CompletedProcess[str]] = []

    def answered() -> bool:
        answers.append(run_mpremote(port, "fs", "cat", ":config.json"))
        return answers[-1].returncode == 0

    wait_for(answered, READ_BACK_TIMEOUT_S)
    return json.loads(answers[-1].stdout)


def firmware_on(flash: Path) -> dict[str, bytes]:
    """The firmware's files on the flash, as they lie there (modules compiled, boot.py and main.py as source)."""
    names = [board_name(path) for path in firmware_files()]
    return {name: (flash / name).read_bytes() for name in names if (flash / name).is_file()}


def firmware_compiled() -> dict[str, bytes]:
    """What the firmware's files should be on a board."""
    return {
        board_name(path): source.read_bytes() if board_name(path) == path else compile_module(source, path)
        for path, source in firmware_files().items()
    }


def test_flash_leaves_the_firmware_and_its_configuration_on_the_board(site: Site, tmp_path: Path) -> None:
    flash = tmp_path / "flash"
    (flash / "borne").mkdir(parents=True)
    (flash / "borne" / "removed_since.py").write_text("# a module of an older firmware\n")
    with VirtualBoard(tmp_path / "ttyBORNE0", flash) as board:
        done = borne(
            "board", "flash", "--port", str(board.port), "--board", "heltec_v2", "--role", "node",
            "--device", str(READER_ID), "--keys", str(site.keys), "--registry", str(site.registry),
            "--nfc", "pn532", "--direction", "in", "--sensors", "bme280,battery",
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        config = read_config(board.port)

    keys = derive_device_keys(MASTER_KEY, READER_ID)
    assert config["keys"] == {
        "mic": keys.mic_key.hex(),
        "enc": keys.enc_key.hex(),
        "badge": derive_badge_key(MASTER_KEY).hex(),
    }
    assert (config["role"], config["site"], config["device_id"]) == ("node", SITE, READER_ID)
    assert config["board"]["name"] == "heltec_v2"
    assert config["nfc"] == {"reader": "pn532", "retap_s": 10, "direction": "in", "retry_max_s": 600}
    assert config["sensors"] == ["bme280", "battery"]
    assert firmware_on(flash) == firmware_compiled()
    assert not (flash / "borne" / "removed_since.py").exists()
    assert sorted(path.name for path in flash.rglob("*.py")) == ["boot.py", "main.py"]
    steps = [line.split()[0] for line in done.stdout.splitlines() if line.startswith("[")]
    assert steps == [f"[{n}/4]" for n in range(1, 5)]
    assert not any(key in done.stdout + done.stderr for key in config["keys"].values())


def test_a_flashed_board_runs_the_compiled_firmware_and_a_second_flash_copies_nothing(
    site: Site, tmp_path: Path
) -> None:
    flash = tmp_path / "flash"
    command = ("--board", "heltec_v2", "--role", "node", "--device", str(NODE_ID))
    command += ("--keys", str(site.keys), "--registry", str(site.registry))
    with RadioMedium() as medium, VirtualBoard(tmp_path / "ttyBORNE0", flash, medium=medium) as board:
        done = borne("board", "flash", "--port", str(board.port), *command)
        assert done.returncode == 0, done.stdout + done.stderr
        # What boot.py and main.py imported as the board started: an exec keeps it (no soft reset).
        modules = board.exec(
            "import sys\nprint([m.__file__ for m in sys.modules.values() if hasattr(m, '__file__')])",
            READ_BACK_TIMEOUT_S,
        )
        done = borne("board", "flash", "--port", str(board.port), *command)
        assert done.returncode == 0, done.stdout + done.stderr
    assert "borne/watchdog.mpy" in modules and "borne/app.mpy" in modules  # boot.py's and main.py's imports
    (step,) = [line for line in done.stdout.splitlines() if line.startswith("[2/4]")]
    assert f"0 files copied, {len(firmware_files())} unchanged" in step


def test_sim_board_without_blank_boots_provisioned_with_the_test_configuration(tmp_path: Path) -> None:
    port, flash = tmp_path / "ttyBORNE0", tmp_path / "flash"
    command = [sys.executable, "-m", "borne", "sim", "board", "--pty", str(port), "--flash", str(flash)]
    command += ["--board", "heltec_v3", "--device", "7", "--nfc", "pn532"]
    with subprocess.Popen(command, stderr=subprocess.PIPE, text=True) as process:
        try:
            wait_for(port.exists)  # the board is powered on once its flash holds what was installed
        finally:
            process.send_signal(signal.SIGTERM)
            _, printed = process.communicate(timeout=10)
    assert process.returncode == 0, printed

    config = json.loads((flash / "config.json").read_text(encoding="utf-8"))
    keys = derive_device_keys(TEST_MASTER_KEY, 7)
    assert (config["role"], config["device_id"], config["board"]["name"]) == ("node", 7, "heltec_v3")
    assert config["keys"] == {
        "mic": keys.mic_key.hex(),
        "enc": keys.enc_key.hex(),
        "badge": derive_badge_key(TEST_MASTER_KEY).hex(),
    }
    assert firmware_on(flash) == firmware_compiled()
    assert "installed in" in printed and "node 7" in printed


@pytest.mark.parametrize(("board", "reader"), [("heltec_v2", "pn532"), ("heltec_v3", "mfrc522")])
def test_sim_board_wires_the_reader_and_sensors_it_is_given_and_the_self_test_passes(
    tmp_path: Path, board: str, reader: str
) -> None:
    port, flash = tmp_path / "ttyBORNE0", tmp_path / "flash"
    command = [sys.executable, "-m", "borne", "sim", "board", "--pty", str(port), "--flash", str(flash)]
    command += ["--board", board, "--device", "7", "--nfc", reader, "--sensors", "bme280,scd4x"]
    with subprocess.Popen(command, stderr=subprocess.PIPE, text=True) as process:
        try:
            wait_for(port.exists)
            done = borne("board", "check", "--port", str(port))
        finally:
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=10)
    assert done.returncode == 0, done.stdout + done.stderr
    passed = {line.split("  ")[0].strip() for line in done.stdout.splitlines() if "  pass  " in line}
    assert {f"reader {reader}", "sensor bme280", "sensor scd4x"} <= passed, done.stdout


def test_a_blank_board_with_its_reader_wired_is_flashed_and_passes_its_check(site: Site, tmp_path: Path) -> None:
    # What a newcomer practises on before a real board: an erased board, its chips wired, then flash and check.
    port, flash = tmp_path / "ttyBORNE0", tmp_path / "flash"
    command = [sys.executable, "-m", "borne", "sim", "board", "--pty", str(port), "--flash", str(flash), "--blank"]
    command += ["--board", "heltec_v3", "--nfc", "pn532"]
    with subprocess.Popen(command, stderr=subprocess.PIPE, text=True) as process:
        try:
            wait_for(port.exists)
            assert not (flash / "main.py").exists()
            flashed = borne(
                "board", "flash", "--port", str(port), "--board", "heltec_v3", "--role", "node",
                "--device", str(READER_ID), "--keys", str(site.keys), "--registry", str(site.registry),
                "--nfc", "pn532",
            )  # fmt: skip
            checked = borne("board", "check", "--port", str(port))
        finally:
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=10)
    assert flashed.returncode == 0, flashed.stdout + flashed.stderr
    assert checked.returncode == 0, checked.stdout + checked.stderr
    passed = {line.split("  ")[0].strip() for line in checked.stdout.splitlines() if "  pass  " in line}
    assert "reader pn532" in passed, checked.stdout


def test_a_site_from_nothing_one_command_takes_a_board_to_registered_and_installed(tmp_path: Path) -> None:
    site = tmp_path / "site"
    done = borne("site", "init", "town-hall", "--dir", str(site))
    assert done.returncode == 0, done.stderr
    keys, registry = site / "site-keys.toml", site / "devices.toml"
    with VirtualBoard(tmp_path / "ttyBORNE0", tmp_path / "flash") as board:
        done = borne(
            "board", "flash", "--port", str(board.port), "--board", "heltec_v2", "--role", "node", "--device", "101",
            "--keys", str(keys), "--registry", str(registry), "--register", "--name", "entrance", "--site", "town-hall",
            "--nfc", "pn532", "--direction", "in", "--sensors", "bme280",
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        config = read_config(board.port)

    device = Registry.load(registry).get(101)
    assert device is not None and (device.site, device.name, device.nfc) == ("town-hall", "entrance", True)
    assert device.sensors == ("temperature_c", "humidity_pct", "pressure_hpa")
    assert config["keys"]["mic"] == device.keys.mic_key.hex()
    assert (config["device_id"], config["site"], config["sensors"]) == (101, "town-hall", ["bme280"])


def queued_records(flash: Path) -> list[bytes]:
    """The kinds of the check-in journal's records on the board's flash (24 bytes each, kind first)."""
    journal = flash / "checkins.log"
    data = journal.read_bytes() if journal.exists() else b""
    return [data[i : i + 1] for i in range(0, len(data) - len(data) % 24, 24)]


def counter_bound(board: VirtualBoard) -> int | None:
    """The uplink counter's bound the board committed to NVS (a 4-byte little-endian blob), if any."""
    nvs = board.state / "nvs.json"
    item = json.loads(nvs.read_text()).get("borne", {}).get("up_bound") if nvs.exists() else None
    return None if item is None else int.from_bytes(bytes.fromhex(item[1]), "little")


SET_BOUND = "import esp32\nn = esp32.NVS('borne')\nn.set_blob('up_bound', (100000).to_bytes(4, 'little'))\nn.commit()"


def test_a_board_flashed_as_another_device_keeps_nothing_of_the_old_one(site: Site, tmp_path: Path) -> None:
    i2c = load_profile("heltec_v2")["i2c"]
    flash = tmp_path / "flash"
    common = ("--board", "heltec_v2", "--role", "node", "--keys", str(site.keys), "--registry", str(site.registry))
    reader = ("--device", str(READER_ID), "--nfc", "pn532", "--direction", "in")
    with RadioMedium() as medium, VirtualBoard(tmp_path / "ttyBORNE0", flash, medium=medium) as board:
        board.wire_i2c("pn532", 0x24, sda=i2c["sda"], scl=i2c["scl"])
        done = borne("board", "flash", "--port", str(board.port), *common, *reader)
        assert done.returncode == 0, done.stdout + done.stderr
        board.present_badge(bytes.fromhex("04a1b2c3"))  # no gateway: the check-in stays queued
        wait_for(lambda: b"P" in queued_records(flash), READ_BACK_TIMEOUT_S)
        board.remove_badge()
        done = run_mpremote(board.port, "exec", SET_BOUND)  # the old device's counter, far along
        assert done.returncode == 0, done.stdout + done.stderr

        done = borne("board", "flash", "--port", str(board.port), *common, *reader)  # the same device again
        assert done.returncode == 0, done.stdout + done.stderr
        assert "erased" not in done.stdout
        assert b"P" in queued_records(flash)
        assert (counter_bound(board) or 0) >= 100000

        done = borne("board", "flash", "--port", str(board.port), *common, "--device", str(NODE_ID))
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"the board was node {READER_ID} of site {SITE}: its queued check-ins" in done.stdout
        assert b"P" not in queued_records(flash)
        assert (counter_bound(board) or 0) <= 64  # a fresh counter (its first bound, if it booted already)


def nonces(frames: list[bytes], device_id: int, epochs: range) -> list[tuple[int, int]]:
    """The (key epoch, counter) of each distinct frame of `device_id`: the epoch whose keys verify it.

    Every frame here is a status frame, which carries its whole counter."""
    keys = {epoch: derive_device_keys(MASTER_KEY, device_id, epoch) for epoch in epochs}
    used = []
    for raw in dict.fromkeys(frames):  # a frame resent byte for byte reuses nothing new
        envelope = read_envelope(raw)
        assert not isinstance(envelope, CodecError) and envelope.device_id == device_id, envelope
        assert envelope.full_counter is not None, f"a {envelope.msg_type.name} frame: expected status frames only"
        verified = [e for e, k in keys.items() if not isinstance(open_envelope(envelope, k, None), CodecError)]
        assert len(verified) == 1, f"frame {raw.hex()} verifies under key epochs {verified}"
        used.append((verified[0], envelope.full_counter))
    return used


def test_a_device_flashed_onto_another_board_or_an_erased_one_never_reuses_a_nonce(site: Site, tmp_path: Path) -> None:
    heard: list[bytes] = []
    flash_node = ("board", "flash", "--board", "heltec_v2", "--role", "node", "--device", str(NODE_ID))
    flash_node += ("--keys", str(site.keys), "--registry", str(site.registry))
    first, second = b"\x24\x0a\xc4\x00\x00\x01", b"\x24\x0a\xc4\x00\x00\x02"

    def flash_and_hear_it(board: VirtualBoard) -> str:
        before = len(heard)
        done = borne(*flash_node[:2], "--port", str(board.port), *flash_node[2:])
        assert done.returncode == 0, done.stdout + done.stderr
        wait_for(lambda: len(heard) > before, READ_BACK_TIMEOUT_S)  # its status frame at boot
        return done.stdout

    with RadioMedium() as medium:
        medium.add_listener(lambda payload, *_: heard.append(payload))
        with VirtualBoard(tmp_path / "ttyA", tmp_path / "flash-a", unique_id=first, medium=medium) as board:
            assert "key epoch" not in flash_and_hear_it(board)  # its first board: epoch 0's counters were unused
        with VirtualBoard(tmp_path / "ttyB", tmp_path / "flash-b", unique_id=second, medium=medium) as board:
            said = flash_and_hear_it(board)
            assert f"device {NODE_ID} moves to key epoch 1 (it was flashed onto board {first.hex()}" in said
            assert "key epoch" not in flash_and_hear_it(board)  # the same board again: it goes on counting
        erased = tmp_path / "flash-b-erased"  # the same board, its flash and NVS erased
        with VirtualBoard(tmp_path / "ttyB", erased, unique_id=second, medium=medium) as board:
            assert "moves to key epoch 2 (this board does not hold its counters" in flash_and_hear_it(board)

    device = Registry.load(site.registry).get(NODE_ID)
    assert device is not None and (device.key_epoch, device.flashed_on) == (2, second.hex())
    used = nonces(heard, NODE_ID, range(4))
    assert {epoch for epoch, _ in used} == {0, 1, 2}
    assert len(set(used)) == len(used), f"a (key, counter) pair was used twice: {sorted(used)}"
