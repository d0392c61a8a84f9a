"""`borne board check` and `borne badge enroll` with the real mpremote against virtual boards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from boards.installer import Installer, InstallError, Runner
from boards.profiles import load_profile
from boards.provisioning import FIRMWARE_DIR, NodeOptions, build_config, redacted, secrets_from_master
from payload_codec import badge_token, derive_badge_key, derive_device_keys
from simulator.provision import provision_virtual_board
from simulator.test_keys import TEST_MASTER_KEY
from simulator.virtual_board import VirtualBoard, VirtualBoardError, check_vm_installed
from tests.provisioning.conftest import MASTER_KEY, NODE_ID, READER_ID, SITE, Site
from tests.provisioning.test_end_to_end import COMMAND_TIMEOUT_S, borne

I2C = load_profile("heltec_v2")["i2c"]
BATTERY_PIN = load_profile("heltec_v2")["battery"]["pin"]
BADGE_KEY = derive_badge_key(TEST_MASTER_KEY)
BADGE = bytes.fromhex("04a1b2c3")
OTHER_BADGE = bytes.fromhex("04d5e6f7a8b9c0")


@pytest.fixture(autouse=True)
def virtual_board_tools() -> None:
    try:
        check_vm_installed()
    except VirtualBoardError as error:
        pytest.skip(str(error))


def provisioned(flash: Path, *, nfc: str | None = "pn532", sensors: tuple[str, ...] = ()) -> None:
    """The firmware and a heltec_v2 node's configuration (keys from the test master key) in `flash`."""
    provision_virtual_board(flash, board="heltec_v2", options=NodeOptions(nfc=nfc, sensors=sensors))


def wire(board: VirtualBoard, kind: str, address: int, **state: object) -> None:
    board.wire_i2c(kind, address, sda=I2C["sda"], scl=I2C["scl"], **state)


def uid_forms(uid: bytes) -> list[str]:
    """The ways a UID could be written out: hex either case, with separators, as Python bytes."""
    hexed = uid.hex()
    return [hexed, hexed.upper(), ":".join(f"{b:02x}" for b in uid), ":".join(f"{b:02X}" for b in uid), repr(uid)]


def table(done: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """The check's table: each check's name, and its result (pass or FAIL)."""
    rows = {}
    for line in done.stdout.splitlines():
        name, sep, rest = line.partition("  ")
        if sep and rest.strip().split(" ")[0] in ("pass", "FAIL"):
            rows[name.strip()] = rest.strip().split(" ")[0]
    return rows


# borne board check


def test_a_blank_board_flashed_then_checked_passes_every_check(site: Site, tmp_path: Path) -> None:
    with VirtualBoard(tmp_path / "ttyBORNE0", tmp_path / "flash", radio="sx1276") as board:
        wire(board, "pn532", 0x24)
        wire(board, "bme280", 0x76)
        done = borne(
            "board", "flash", "--port", str(board.port), "--board", "heltec_v2", "--role", "node",
            "--device", str(READER_ID), "--keys", str(site.keys), "--registry", str(site.registry),
            "--nfc", "pn532", "--direction", "in", "--sensors", "bme280",
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        boots = board.boots
        done = borne("board", "check", "--port", str(board.port), "--show-config")
        assert done.returncode == 0, done.stdout + done.stderr
        assert board.boots > boots  # the check ends with a reset: the firmware runs again

    assert table(done) == {
        "configuration": "pass",
        "radio": "pass",
        "reader pn532": "pass",
        "sensor bme280": "pass",
        "flash": "pass",
        "counters": "pass",
    }
    assert f"node {READER_ID} of site" in done.stdout and "keys not shown" in done.stdout
    assert "temperature_c 21" in done.stdout  # the virtual air's 21 °C
    assert "all 6 checks passed" in done.stdout
    shown = json.loads(done.stdout[done.stdout.index("{") :])  # the configuration read back, after the table
    assert shown["keys"] == {"mic": "(not shown)", "enc": "(not shown)", "badge": "(not shown)"}
    assert (shown["device_id"], shown["sensors"], shown["nfc"]["direction"]) == (READER_ID, ["bme280"], "in")
    keys = derive_device_keys(MASTER_KEY, READER_ID)
    for key in (keys.mic_key, keys.enc_key, derive_badge_key(MASTER_KEY)):
        assert key.hex() not in done.stdout + done.stderr


def test_a_board_without_its_sensor_fails_the_check_with_where_to_wire_it(tmp_path: Path) -> None:
    provisioned(tmp_path / "flash", sensors=("bme280",))
    with VirtualBoard(tmp_path / "ttyBORNE0", tmp_path / "flash", radio="sx1276") as board:
        wire(board, "pn532", 0x24)  # and no BME280
        done = borne("board", "check", "--port", str(board.port))

    assert done.returncode == 1, done.stdout + done.stderr
    assert [name for name, result in table(done).items() if result == "FAIL"] == ["sensor bme280"]
    assert (
        "-> BME280 at I2C address 0x76 did not answer: check its wiring to SDA=GPIO4/SCL=GPIO15, its 3.3 V and GND "
        "(see `borne board wiring heltec_v2`, and the installer's guide, section 4)"
    ) in done.stdout
    assert "1 of 6 checks failed" in done.stdout


def test_a_board_whose_radio_and_reader_do_not_answer_fails_both_with_the_advice(tmp_path: Path) -> None:
    provisioned(tmp_path / "flash", nfc="mfrc522")
    with VirtualBoard(tmp_path / "ttyBORNE0", tmp_path / "flash") as board:  # no radio chip, no reader wired
        done = borne("board", "check", "--port", str(board.port))

    assert done.returncode == 1, done.stdout + done.stderr
    assert table(done)["radio"] == "FAIL" and table(done)["reader mfrc522"] == "FAIL"
    assert (
        "-> the radio is on the board itself, and profile heltec_v2 expects an SX1276 on SCK=GPIO5, MOSI=GPIO27, "
        "MISO=GPIO19, CS=GPIO18: check that the board is that one"
    ) in done.stdout
    assert (
        "-> the MFRC522 did not answer: check its wiring to SCK=GPIO17, MOSI=GPIO23, MISO=GPIO22, CS=GPIO33, "
        "RESET=GPIO32 (the module's SDA pin is CS), its 3.3 V and GND"
    ) in done.stdout


def test_each_faulty_sensor_fails_with_the_advice_for_its_fault(tmp_path: Path) -> None:
    provisioned(tmp_path / "flash", sensors=("bme280", "scd4x", "battery"))
    with VirtualBoard(tmp_path / "ttyBORNE0", tmp_path / "flash", radio="sx1276") as board:
        wire(board, "pn532", 0x24)
        wire(board, "bme280", 0x76)
        wire(board, "scd4x", 0x62, interval_ms=60000)  # no sample within the self-test's patience
        board.set_air(temperature_c=95.0)  # beyond the BME280's -40..85 °C
        board.set_adc(BATTERY_PIN, 500_000)  # 1.6 V behind the ×3.2 divider: no cell
        done = borne("board", "check", "--port", str(board.port))

    assert done.returncode == 1, done.stdout + done.stderr
    failed = [name for name, result in table(done).items() if result == "FAIL"]
    assert failed == ["sensor bme280", "sensor scd4x", "sensor battery"], done.stdout + done.stderr
    advice = [line.strip()[3:] for line in done.stdout.splitlines() if line.strip().startswith("-> ")]
    assert advice == [
        "BME280 reads temperature_c 95 is outside -40..85, its datasheet's range: the sensor is damaged, or another "
        "chip answers at its address; replace it if a power cycle does not help",
        "SCD4x at I2C address 0x62 did not finish a measurement: power-cycle the board; replace the SCD4x if it "
        "stays so",
        f"battery_mv 1600 is outside 3000..4300 (a Li-ion cell): check that a cell is connected, and the divider "
        f"(×3.2) on GPIO{BATTERY_PIN}",
    ]


def test_a_flash_too_full_for_the_check_in_queue_is_told_to_remove_files(tmp_path: Path) -> None:
    provisioned(tmp_path / "flash")
    with VirtualBoard(tmp_path / "ttyBORNE0", tmp_path / "flash", radio="sx1276") as board:
        wire(board, "pn532", 0x24)
        free = int(board.exec("import os; print(os.statvfs('/')[3])").strip())
        (tmp_path / "flash" / "photos.bin").write_bytes(bytes((free - 2) * 4096))  # another program's files
        done = borne("board", "check", "--port", str(board.port))

    assert done.returncode == 1, done.stdout + done.stderr
    assert [name for name, result in table(done).items() if result == "FAIL"] == ["flash"]
    assert (
        f"the check-in queue needs 32 KiB: list the board's files (`mpremote connect {board.port} fs ls`) "
        "and remove those that are not Borne's"
    ) in done.stdout


def test_a_board_without_borne_is_told_to_be_flashed_first(tmp_path: Path) -> None:
    with VirtualBoard(tmp_path / "ttyBORNE0", tmp_path / "flash") as board:  # MicroPython, nothing on its flash
        checked = borne("board", "check", "--port", str(board.port))
        enrolled = borne("badge", "enroll", "--port", str(board.port), "--timeout", "5")

    for done in (checked, enrolled):
        assert done.returncode == 1, done.stdout + done.stderr
        assert (
            f"error: the board on {board.port} runs MicroPython without Borne's firmware (or with one older than this "
            f"command): install it with `borne board flash --port {board.port} …`, then run this again"
        ) in done.stderr


def test_a_board_whose_configuration_does_not_load_is_told_to_be_flashed_again(tmp_path: Path) -> None:
    flash = tmp_path / "flash"
    provisioned(flash)
    (flash / "config.json").write_text("{", encoding="utf-8")  # a copy cut short
    with VirtualBoard(tmp_path / "ttyBORNE0", flash, radio="sx1276") as board:
        checked = borne("board", "check", "--port", str(board.port))
        enrolled = borne("badge", "enroll", "--port", str(board.port), "--timeout", "5")

    assert checked.returncode == 1
    assert table(checked) == {"configuration": "FAIL"}
    assert (
        "-> flash the board again: /config.json is not valid JSON: provision the board again with `borne board flash`"
    ) in checked.stdout
    assert enrolled.returncode == 1
    assert (
        "error: the board's configuration does not load: /config.json is not valid JSON: provision the board again "
        "with `borne board flash`"
    ) in enrolled.stderr


def test_a_port_with_no_board_says_to_check_the_cable_and_the_port(tmp_path: Path) -> None:
    port = tmp_path / "ttyUSB9"
    checked = borne("board", "check", "--port", str(port))
    enrolled = borne("badge", "enroll", "--port", str(port), "--timeout", "5")

    for done in (checked, enrolled):
        assert done.returncode == 1
        assert f"failed to access {port}" in done.stderr
        assert "Check the cable and the port name (`mpremote connect list` lists the boards)" in done.stderr


# borne badge enroll


def start_enrolment(port: Path, *arguments: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "borne", "badge", "enroll", "--port", str(port), *arguments]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # each line as it is printed
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def lines_of(process: subprocess.Popen[str]) -> Iterator[str]:
    assert process.stdout is not None
    timer = threading.Timer(COMMAND_TIMEOUT_S, process.kill)  # a hung enrolment fails the test, not the run
    timer.start()
    try:
        yield from process.stdout
    finally:
        timer.cancel()


def test_enroll_prints_each_badge_token_once_and_never_its_uid(tmp_path: Path) -> None:
    provisioned(tmp_path / "flash")
    csv = tmp_path / "badges.csv"
    printed = []
    with VirtualBoard(tmp_path / "ttyBORNE0", tmp_path / "flash", radio="sx1276") as board:
        wire(board, "pn532", 0x24)
        with start_enrolment(board.port, "--count", "2", "--csv", str(csv)) as process:
            for line in lines_of(process):
                printed.append(line)
                if line.startswith("tap each badge"):
                    board.corrupt_next_answer(0x24)  # one misread first
                    board.present_badge(BADGE)  # held through many polls
                elif line.startswith("warning: the reader misread"):
                    pass
                elif badge_token(BADGE_KEY, BADGE).hex() in line:
                    board.remove_badge()
                    board.present_badge(OTHER_BADGE, "ntag")
            errors = process.stderr.read() if process.stderr else ""
    output = "".join(printed) + errors

    assert process.returncode == 0, output
    assert "warning: the reader misread a badge" in output and "hold it flat and still" in output
    first, second = badge_token(BADGE_KEY, BADGE).hex(), badge_token(BADGE_KEY, OTHER_BADGE).hex()
    assert [line.split() for line in printed if first in line or second in line] == [
        ["1/2", first, "mifare_classic"],
        ["2/2", second, "mifare_ultralight"],  # an NTAG answers as a Type 2 tag (SAK 0x00)
    ]
    assert csv.read_text().splitlines() == [
        "badge_token,tag_type",
        f"{first},mifare_classic",
        f"{second},mifare_ultralight",
    ]
    for uid in (BADGE, OTHER_BADGE):
        for form in uid_forms(uid):
            assert form not in output and form not in csv.read_text()


def test_a_badge_already_in_the_csv_is_said_so_and_not_written_twice(tmp_path: Path) -> None:
    provisioned(tmp_path / "flash")
    csv = tmp_path / "badges.csv"
    token = badge_token(BADGE_KEY, BADGE).hex()
    csv.write_text(f"badge_token,tag_type\n{token},mifare_classic\n", encoding="utf-8")
    with VirtualBoard(tmp_path / "ttyBORNE0", tmp_path / "flash", radio="sx1276") as board:
        wire(board, "pn532", 0x24)
        board.present_badge(BADGE)
        done = borne("badge", "enroll", "--port", str(board.port), "--count", "1", "--csv", str(csv))

    assert done.returncode == 0, done.stdout + done.stderr
    assert f"1/1  {token}  mifare_classic  (already in {csv})" in done.stdout
    assert csv.read_text().splitlines() == ["badge_token,tag_type", f"{token},mifare_classic"]


def test_enroll_with_no_badge_before_the_timeout_says_so(tmp_path: Path) -> None:
    provisioned(tmp_path / "flash")
    with VirtualBoard(tmp_path / "ttyBORNE0", tmp_path / "flash", radio="sx1276") as board:
        wire(board, "pn532", 0x24)
        done = borne("badge", "enroll", "--port", str(board.port), "--timeout", "2")

    assert done.returncode == 1
    assert "no badge read in 2 s: tap each badge flat on the reader, then run this again" in done.stdout


def test_enroll_on_a_board_without_a_working_reader_says_what_to_do(tmp_path: Path) -> None:
    provisioned(tmp_path / "flash", nfc=None, sensors=("bme280",))
    provisioned(tmp_path / "door", nfc="pn532")
    with (
        VirtualBoard(tmp_path / "ttyBORNE0", tmp_path / "flash", radio="sx1276") as sensor_board,
        VirtualBoard(tmp_path / "ttyBORNE1", tmp_path / "door", radio="sx1276") as door_board,  # its PN532 unplugged
    ):
        no_reader = borne("badge", "enroll", "--port", str(sensor_board.port), "--timeout", "5")
        silent = borne("badge", "enroll", "--port", str(door_board.port), "--timeout", "5")

    assert no_reader.returncode == 1
    assert (
        f"error: the board on {sensor_board.port} has no badge reader configured: enrol badges on a door board "
        "(one flashed with --nfc pn532 or --nfc mfrc522)"
    ) in no_reader.stderr
    assert silent.returncode == 1
    assert "error: the board's PN532 reader did not answer (" in silent.stderr
    assert f"`borne board check --port {door_board.port}` says what to check" in silent.stderr


def test_an_enrolment_the_board_fails_says_its_error(tmp_path: Path) -> None:
    provisioned(tmp_path / "flash")
    # The enrolment module damaged on the board's flash: a source copy of it cut short, which the
    # board imports before the .mpy beside it.
    source = (FIRMWARE_DIR / "borne" / "enrolment.py").read_text(encoding="utf-8")
    cut = source[: source.index("def poll")] + "def poll(\n"
    (tmp_path / "flash" / "borne" / "enrolment.py").write_text(cut, encoding="utf-8")
    with VirtualBoard(tmp_path / "ttyBORNE0", tmp_path / "flash", radio="sx1276") as board:
        wire(board, "pn532", 0x24)
        done = borne("badge", "enroll", "--port", str(board.port), "--timeout", "5")

    assert done.returncode == 1
    assert "error: the board failed during the enrolment: SyntaxError" in done.stderr, done.stderr
    assert "Run this again; if it fails the same way, press the board's reset button first." in done.stderr


# Faults the virtual board cannot make (a corruption asked for before mpremote's soft reset is served
# by then): the self-test's lines as the firmware prints them, from a stand-in for mpremote.


def self_test_printing(*records: dict[str, Any]) -> Runner:
    config = build_config(
        load_profile("heltec_v2"),
        "node",
        SITE,
        device_id=NODE_ID,
        secrets=secrets_from_master(MASTER_KEY, NODE_ID),
        options=NodeOptions(nfc="pn532", sensors=("sht4x",)),
        radio={},
    )
    lines = [{"check": "config", "ok": True, "config": redacted(config)}, *records]
    stdout = "".join(f"BORNE-CHECK {json.dumps(record)}\n" for record in lines)

    def run(arguments: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(list(arguments), 0, stdout, "")

    return run


def test_a_damaged_answer_is_told_to_shorten_the_wires_or_add_pull_ups() -> None:
    reader = {"check": "reader", "reader": "pn532", "address": 0x24, "ok": False, "errno": 5, "error": "OSError: 5"}
    sensor = {"check": "sensor", "name": "sht4x", "address": 0x44, "ok": False, "errno": 5, "error": "OSError: 5"}
    checked = Installer("/dev/ttyUSB0", runner=self_test_printing(reader, sensor)).check()

    assert not checked.passed
    assert [result.advice for result in checked.results if not result.ok] == [
        "PN532 at I2C address 0x24 answered with damaged data: shorten the wires to SDA=GPIO4/SCL=GPIO15, or add "
        "4.7 kΩ pull-ups from SDA and SCL to 3.3 V, then check again",
        "SHT4x at I2C address 0x44 answered with damaged data: shorten the wires to SDA=GPIO4/SCL=GPIO15, or add "
        "4.7 kΩ pull-ups from SDA and SCL to 3.3 V, then check again",
    ]


def test_a_self_test_that_prints_no_result_is_told_to_flash_again() -> None:
    def run(arguments: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(list(arguments), 0, "MemoryError\n", "")

    with pytest.raises(InstallError) as raised:
        Installer("/dev/ttyUSB0", runner=run).check()
    assert str(raised.value) == (
        "the board on /dev/ttyUSB0 ran the self-test but printed no result; it printed:\nMemoryError\n\n"
        "Flash it again with `borne board flash --port /dev/ttyUSB0 …`, then check it again."
    )


def test_a_board_that_resets_during_the_enrolment_says_how_many_badges_were_read(tmp_path: Path) -> None:
    provisioned(tmp_path / "flash")
    printed = []
    with VirtualBoard(tmp_path / "ttyBORNE0", tmp_path / "flash", radio="sx1276") as board:
        wire(board, "pn532", 0x24)
        with start_enrolment(board.port, "--count", "3") as process:
            for line in lines_of(process):
                printed.append(line)
                if line.startswith("tap each badge"):
                    board.present_badge(BADGE)
                elif badge_token(BADGE_KEY, BADGE).hex() in line:
                    board.reset()  # the EN button, mid-session
            errors = process.stderr.read() if process.stderr else ""

    assert process.returncode == 1, "".join(printed) + errors
    assert f"error: the board on {board.port} stopped answering during the enrolment (" in errors
    assert "did it reset? Badges read before: 1; run this again for the others" in errors


def test_a_count_of_no_badge_is_refused() -> None:
    done = borne("badge", "enroll", "--port", "/dev/ttyUSB0", "--count", "0")

    assert done.returncode == 2
    assert "argument --count: 0: give a number above 0" in done.stderr
