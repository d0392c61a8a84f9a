"""`borne board flash` and `borne sim board` refuse what cannot work before touching a board."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from borne.cli import main
from tests.provisioning.conftest import NODE_ID, READER_ID, Site

NO_BOARD = "/nonexistent/ttyUSB9"  # a dry run or a refused command never opens it


def flash(site: Site, *options: str) -> list[str]:
    common = ["board", "flash", "--port", NO_BOARD, "--keys", str(site.keys), "--registry", str(site.registry)]
    return [*common, *options]


def test_a_dry_run_shows_the_configuration_without_its_keys(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    node = ["--board", "ttgo_lora32_v21", "--role", "node", "--device", str(READER_ID), "--nfc", "pn532"]
    status = main(flash(site, *node, "--dry-run"))
    printed = capsys.readouterr()
    assert status == 0, printed.err
    assert f"dry run: would install on {NO_BOARD}: node {READER_ID} of site" in printed.out
    assert '"mic": "(not shown)"' in printed.out and '"badge": "(not shown)"' in printed.out


def test_flashing_an_mfrc522_on_a_strapping_pin_warns_what_to_check(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    node = ["--board", "ttgo_lora32_v21", "--role", "node", "--device", str(READER_ID), "--nfc", "mfrc522"]
    assert main(flash(site, *node, "--dry-run")) == 0
    printed = capsys.readouterr().out
    assert "warning: nfc_spi.reset on GPIO12, a strapping pin (MTDI, the flash voltage" in printed
    assert "use a reader module with no pull-up on RST" in printed


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--board", "heltec_v9", "--role", "node", "--device", str(NODE_ID)], "unknown board 'heltec_v9'"),
        (["--board", "heltec_v2", "--role", "node"], "a node needs its device id"),
        (["--board", "heltec_v2", "--role", "node", "--device", "300"], "device 300 is not in"),
        (["--board", "heltec_v2", "--role", "node", "--device", str(NODE_ID), "--nfc", "pn532"], "drop --nfc"),
        (["--board", "heltec_v2", "--role", "bridge"], "a bridge carries no keys"),
    ],
)
def test_a_flash_that_cannot_work_is_refused_with_what_to_do(
    site: Site, arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(flash(site, *arguments)) == 2
    assert message in capsys.readouterr().err


def test_a_bridge_needs_its_site(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["board", "flash", "--port", NO_BOARD, "--board", "heltec_v2", "--role", "bridge", "--dry-run"]) == 2
    assert "the site's name is missing" in capsys.readouterr().err


def test_a_node_needs_the_site_key_file(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    command = ["board", "flash", "--port", NO_BOARD, "--board", "heltec_v2", "--role", "node", "--device", "258"]
    assert main(command) == 2
    assert "a node needs the site key file (--keys FILE)" in capsys.readouterr().err


def test_a_registry_that_does_not_exist_is_an_error_not_an_empty_list(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for command in (["device", "list"], ["device", "remove", "258"]):
        assert main([*command, "--registry", str(tmp_path / "devices.toml")]) == 2
        assert "devices.toml: no such registry; give the site's device registry with --registry" in (
            capsys.readouterr().err
        )
    assert not (tmp_path / "devices.toml").exists()


def test_a_reader_that_stops_early_ends_the_command_without_a_traceback() -> None:
    # `borne board profiles | head -1`: head may close the pipe before the command writes.
    command = subprocess.Popen(
        [sys.executable, "-m", "borne", "board", "profiles"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert command.stdout is not None and command.stderr is not None
    command.stdout.close()  # before the interpreter has even started
    errors = command.stderr.read().decode()
    assert command.wait(timeout=60) == 1
    assert errors == ""


def test_sim_board_blank_refuses_what_it_would_not_install(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    command = ["sim", "board", "--pty", str(tmp_path / "tty"), "--flash", str(tmp_path / "flash"), "--blank"]
    assert main([*command, "--board", "heltec_v3", "--nfc", "pn532", "--device", "7", "--sf", "9"]) == 2
    assert "--blank leaves the board erased, with nothing installed: drop --device, --sf" in capsys.readouterr().err
    assert not (tmp_path / "flash").exists()


def test_sim_board_refuses_a_bridge_with_a_device_id(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    command = ["sim", "board", "--pty", str(tmp_path / "tty"), "--flash", str(tmp_path / "flash")]
    assert main([*command, "--role", "bridge", "--device", "3"]) == 2
    assert "a bridge only relays frames to the gateway, so it takes none of these: device id" in capsys.readouterr().err
    assert not (tmp_path / "tty").exists()
