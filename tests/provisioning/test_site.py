"""A site from nothing: `borne site init`, then boards registered and flashed with one vocabulary, the chips."""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path

import pytest

from boards.keyfile import load_site_keys
from boards.registry import Registry
from borne.cli import main
from gateway_daemon.config import load_config
from tests.provisioning.conftest import Site

NO_BOARD = "/nonexistent/ttyUSB9"


def init_site(folder: Path, name: str = "town-hall") -> int:
    return main(["site", "init", name, "--dir", str(folder)])


def test_site_init_writes_an_owner_only_key_file_an_empty_registry_and_a_gateway_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert init_site(tmp_path) == 0
    printed = capsys.readouterr().out
    keys = load_site_keys(tmp_path / "site-keys.toml")
    assert keys.master_key is not None and len(keys.master_key) == 16
    for name in ("site-keys.toml", "devices.toml", "gateway.toml"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o600, name
    assert Registry.load(tmp_path / "devices.toml").devices == {}
    config = load_config(tmp_path / "gateway.toml")
    assert config.gateway.name == "town-hall-gateway"
    assert Path(config.gateway.registry_file) == tmp_path / "devices.toml"
    assert Path(config.gateway.state_file) == tmp_path / "state.db"
    assert f"borne device add 1 --name entrance --site town-hall --keys {tmp_path / 'site-keys.toml'}" in printed
    assert keys.master_key.hex() not in printed


def test_two_sites_get_different_master_keys(tmp_path: Path) -> None:
    assert init_site(tmp_path / "a") == 0 and init_site(tmp_path / "b") == 0
    assert load_site_keys(tmp_path / "a" / "site-keys.toml") != load_site_keys(tmp_path / "b" / "site-keys.toml")


def test_site_init_never_overwrites_a_site(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert init_site(tmp_path) == 0
    before = {name: (tmp_path / name).read_bytes() for name in ("site-keys.toml", "devices.toml", "gateway.toml")}
    capsys.readouterr()
    assert init_site(tmp_path) == 2
    assert "never overwrites a site's files" in capsys.readouterr().err
    assert before == {name: (tmp_path / name).read_bytes() for name in before}


def test_site_init_refuses_a_name_that_cannot_be_a_topic_level(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert init_site(tmp_path, "Town Hall") == 2
    assert "use 1-63 of a-z, 0-9, - and _" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def add_device(folder: Path, device_id: int, *options: str) -> int:
    keys, registry = folder / "site-keys.toml", folder / "devices.toml"
    command = ["device", "add", str(device_id), "--site", "town-hall", "--keys", str(keys), "--registry", str(registry)]
    return main([*command, *options])


def test_a_device_is_registered_with_its_chips_and_gets_their_fields(tmp_path: Path) -> None:
    init_site(tmp_path)
    assert add_device(tmp_path, 201, "--name", "meeting-room", "--sensors", "bme280,scd4x,battery") == 0
    device = Registry.load(tmp_path / "devices.toml").get(201)
    assert device is not None
    assert device.sensors == ("temperature_c", "humidity_pct", "pressure_hpa", "co2_ppm", "battery_mv")


def test_a_device_is_registered_with_its_report_and_status_intervals(tmp_path: Path) -> None:
    init_site(tmp_path)
    assert add_device(tmp_path, 101, "--name", "entrance", "--report-interval", "600", "--status-interval", "60") == 0
    assert add_device(tmp_path, 102, "--name", "side-door") == 0
    devices = Registry.load(tmp_path / "devices.toml").devices
    assert (devices[101].report_interval_s, devices[101].status_interval_s) == (600, 60)
    assert (devices[102].report_interval_s, devices[102].status_interval_s) == (300, 3600)


def test_a_field_name_for_a_sensor_is_refused_with_the_chips_that_measure_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    init_site(tmp_path)
    assert add_device(tmp_path, 201, "--name", "meeting-room", "--sensors", "co2_ppm") == 2
    assert "unknown sensor 'co2_ppm': name the chips wired to the board" in capsys.readouterr().err
    assert Registry.load(tmp_path / "devices.toml").devices == {}


def test_a_key_file_others_can_read_registers_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    init_site(tmp_path)
    os.chmod(tmp_path / "site-keys.toml", 0o644)
    assert add_device(tmp_path, 101, "--name", "entrance", "--nfc") == 2
    assert "is readable by others: `chmod 600" in capsys.readouterr().err
    assert Registry.load(tmp_path / "devices.toml").devices == {}


def flash_and_register(folder: Path, *options: str) -> int:
    keys, registry = folder / "site-keys.toml", folder / "devices.toml"
    command = ["board", "flash", "--port", NO_BOARD, "--board", "heltec_v2", "--role", "node", "--device", "101"]
    command += ["--keys", str(keys), "--registry", str(registry), "--register", "--site", "town-hall"]
    return main([*command, *options])


def test_a_dry_run_with_register_registers_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    init_site(tmp_path)
    options = ("--name", "entrance", "--nfc", "pn532", "--direction", "in", "--dry-run")
    assert flash_and_register(tmp_path, *options) == 0
    printed = capsys.readouterr().out
    assert "dry run: would register device 101 as town-hall/entrance" in printed
    assert "dry run: would install on" in printed
    assert Registry.load(tmp_path / "devices.toml").devices == {}


def test_register_needs_a_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    init_site(tmp_path)
    assert flash_and_register(tmp_path, "--dry-run") == 2
    assert "--register needs the node's --name and --site" in capsys.readouterr().err


def test_register_refuses_a_device_already_registered(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    command = ["board", "flash", "--port", NO_BOARD, "--board", "heltec_v2", "--role", "node", "--device", "258"]
    command += ["--keys", str(site.keys), "--registry", str(site.registry), "--register", "--site", "ecole-jaures"]
    assert main([*command, "--name", "again", "--dry-run"]) == 2
    assert "device 258 is already registered" in capsys.readouterr().err


def test_the_registry_written_by_site_init_is_valid_toml(tmp_path: Path) -> None:
    init_site(tmp_path)
    assert tomllib.loads((tmp_path / "devices.toml").read_text(encoding="utf-8")) == {}
