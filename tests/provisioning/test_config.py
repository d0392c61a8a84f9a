"""config.json as provisioning builds it: what the firmware accepts, and every mistake refused with what to do."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import stat
import sys
import types
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock

import pytest

from boards import provisioning
from boards.profiles import load_profile
from boards.provisioning import (
    NodeOptions,
    NodeSecrets,
    ProvisioningError,
    build_config,
    registered_node,
    secrets_from_master,
    settle_with_registry,
    stage,
)
from boards.registry import Registry
from payload_codec import derive_badge_key, derive_device_keys
from payload_codec.schema import DIRECTIONS
from tests.provisioning.conftest import MASTER_KEY, NODE_ID, READER_ID, SITE, Site, register

SECRETS = secrets_from_master(MASTER_KEY, NODE_ID)


def firmware_module(name: str) -> ModuleType:
    """A module of firmware/borne/, run by CPython with a stand-in for MicroPython's `micropython`.

    It is imported as `borne.<name>` of the firmware's own `borne` package, there for this import
    only, so that what it imports from the firmware (`borne.contract`) comes from the firmware too.
    """
    stand_in = types.ModuleType("micropython")
    stand_in.const = lambda value: value  # type: ignore[attr-defined]
    package = types.ModuleType("borne")
    package.__path__ = [str(provisioning.FIRMWARE_DIR / "borne")]
    with mock.patch.dict(sys.modules, {"micropython": stand_in, "borne": package}):
        for loaded in [module for module in sys.modules if module.startswith("borne.")]:
            del sys.modules[loaded]  # the CLI's modules: patch.dict puts them back
        return importlib.import_module(f"borne.{name}")


def node_config(board: str = "heltec_v2", **options: Any) -> dict[str, Any]:
    return build_config(
        load_profile(board), "node", SITE, device_id=NODE_ID, secrets=SECRETS, options=NodeOptions(**options)
    )


def test_a_node_configuration_is_one_the_firmware_accepts_as_it_is() -> None:
    config = node_config(nfc="pn532", direction="in", sensors=("bme280", "scd4x", "battery", "pulse"))
    checked = firmware_module("config").check(copy.deepcopy(config))
    assert checked == config


def test_a_bridge_configuration_is_one_the_firmware_accepts_as_it_is() -> None:
    config = build_config(load_profile("heltec_v3"), "bridge", SITE)
    assert "device_id" not in config and "keys" not in config
    assert config["nfc"] is None and config["sensors"] == []
    assert firmware_module("config").check(copy.deepcopy(config)) == config


def test_the_defaults_are_those_the_firmware_fills_in() -> None:
    firmware = firmware_module("config")
    assert provisioning.RADIO_DEFAULTS == firmware.RADIO_DEFAULTS
    assert provisioning.INTERVAL_DEFAULTS == firmware.INTERVAL_DEFAULTS
    assert firmware.NFC_DEFAULTS == {
        "reader": "pn532",
        "retap_s": provisioning.NFC_RETAP_S,
        "direction": "none",
        "retry_max_s": provisioning.NFC_RETRY_MAX_S,
    }
    assert provisioning.SENSORS == firmware.SENSORS
    assert provisioning.CONFIG_VERSION == firmware.VERSION
    assert DIRECTIONS == firmware.DIRECTIONS


def test_the_eu868_sub_bands_are_those_the_firmware_budgets() -> None:
    firmware_bands = firmware_module("airtime").SUB_BANDS
    assert [(low // 1000, high // 1000) for low, high, _ in firmware_bands] == list(provisioning.EU868_SUB_BANDS_KHZ)


def test_a_node_carries_the_keys_derived_for_its_device_id_and_the_badge_key_only_with_a_reader() -> None:
    keys = derive_device_keys(MASTER_KEY, NODE_ID)
    assert node_config()["keys"] == {"mic": keys.mic_key.hex(), "enc": keys.enc_key.hex()}
    assert node_config(nfc="pn532")["keys"]["badge"] == derive_badge_key(MASTER_KEY).hex()


def test_the_site_master_key_never_goes_onto_a_board() -> None:
    assert MASTER_KEY.hex() not in provisioning.config_json(node_config(nfc="mfrc522"))


def test_the_board_gets_its_profile_without_the_notes_meant_for_people() -> None:
    profile = load_profile("tbeam_sx1262")
    board = node_config("tbeam_sx1262")["board"]
    assert "sources" not in board
    assert board == {key: value for key, value in profile.items() if key != "sources"}


def test_the_installer_chooses_sensors_interval_and_radio_settings() -> None:
    config = build_config(
        load_profile("heltec_v2"),
        "node",
        SITE,
        device_id=NODE_ID,
        secrets=SECRETS,
        options=NodeOptions(sensors=("sht4x", "sht4x"), telemetry_s=600, deep_sleep=True),
        radio={"sf": 7, "freq_khz": 868300},
    )
    assert config["sensors"] == ["sht4x"]
    assert config["intervals"] == {"telemetry_s": 600, "status_s": 3600}
    assert config["deep_sleep"] is True
    assert (config["radio"]["sf"], config["radio"]["freq_khz"], config["radio"]["bw"]) == (7, 868300, "125")


@pytest.mark.parametrize(
    ("options", "radio", "message"),
    [
        ({"nfc": "pn532", "deep_sleep": True}, {}, "deep sleep is for battery nodes without a badge reader"),
        ({"direction": "in"}, {}, "a check-in direction needs a badge reader"),
        ({"sensors": ("bme680",)}, {}, "unknown sensor bme680"),
        ({"telemetry_s": 5}, {}, "telemetry_s 5: use 10 to 65535 seconds"),
        ({}, {"sf": 13}, "spreading factor 13: use 7 to 12"),
        ({}, {"freq_khz": 915000}, "freq_khz 915000: use a frequency inside an EU868 sub-band"),
        ({}, {"freq_khz": 869300}, "freq_khz 869300: use a frequency inside an EU868 sub-band"),
        ({}, {"bandwidth": "250"}, "unknown radio setting bandwidth"),
    ],
)
def test_a_node_setting_out_of_bounds_is_refused(options: dict[str, Any], radio: dict[str, Any], message: str) -> None:
    with pytest.raises(ProvisioningError, match=message):
        build_config(
            load_profile("heltec_v2"),
            "node",
            SITE,
            device_id=NODE_ID,
            secrets=SECRETS,
            options=NodeOptions(**options),
            radio=radio,
        )


def test_a_reader_on_a_board_without_its_pins_is_refused() -> None:
    profile = {**load_profile("heltec_v2"), "i2c": None}
    with pytest.raises(ProvisioningError, match="board heltec_v2 has no i2c pins for a pn532: use --nfc mfrc522"):
        build_config(profile, "node", SITE, device_id=NODE_ID, secrets=SECRETS, options=NodeOptions(nfc="pn532"))


def test_a_sensor_on_a_board_without_its_pin_is_refused() -> None:
    with pytest.raises(ProvisioningError, match="board heltec_v3 has no battery pin for the battery sensor"):
        node_config("heltec_v3", sensors=("battery",))


def test_a_node_without_its_device_id_is_refused() -> None:
    with pytest.raises(ProvisioningError, match="a node needs its device id"):
        build_config(load_profile("heltec_v2"), "node", SITE, secrets=SECRETS)


def test_a_badge_reader_without_the_sites_badge_key_is_refused() -> None:
    secrets = NodeSecrets(SECRETS.keys, badge_key=None)
    with pytest.raises(ProvisioningError, match="a badge reader needs the site's badge key"):
        build_config(
            load_profile("heltec_v2"),
            "node",
            SITE,
            device_id=NODE_ID,
            secrets=secrets,
            options=NodeOptions(nfc="pn532"),
        )


def test_a_bridge_given_what_only_a_node_has_is_refused() -> None:
    with pytest.raises(ProvisioningError, match=r"a bridge only relays frames.*device id, badge reader"):
        build_config(load_profile("heltec_v2"), "bridge", SITE, device_id=1, options=NodeOptions(nfc="pn532"))


def test_a_registered_node_gets_the_registrys_site_and_the_key_files_keys(site: Site) -> None:
    device, secrets = registered_node(NODE_ID, site.keys, site.registry)
    assert device.site == SITE
    assert secrets == SECRETS


def test_a_device_missing_from_the_registry_is_refused_with_the_command_that_registers_it(site: Site) -> None:
    with pytest.raises(
        ProvisioningError, match=r"device 300 is not in .*: register it first with `borne device add 300"
    ):
        registered_node(300, site.keys, site.registry)


def test_a_key_file_others_may_read_is_refused(site: Site) -> None:
    os.chmod(site.keys, 0o644)
    with pytest.raises(ProvisioningError, match="readable by others: `chmod 600"):
        registered_node(NODE_ID, site.keys, site.registry)


def test_a_key_file_other_than_the_one_the_device_was_registered_with_is_refused(site: Site, tmp_path: Path) -> None:
    other = tmp_path / "other-keys.toml"
    other.write_text(f'master_key = "{bytes(16).hex()}"\n', encoding="utf-8")
    os.chmod(other, 0o600)
    with pytest.raises(ProvisioningError, match="the gateway would refuse its frames"):
        registered_node(NODE_ID, other, site.registry)


def test_a_badge_reader_the_registry_does_not_know_is_refused(site: Site) -> None:
    device, _ = registered_node(NODE_ID, site.keys, site.registry)
    with pytest.raises(ProvisioningError, match="has no badge reader in the registry: drop --nfc"):
        settle_with_registry(device, NodeOptions(nfc="pn532"))


def test_a_registered_badge_reader_must_be_given(site: Site) -> None:
    device, _ = registered_node(READER_ID, site.keys, site.registry)
    with pytest.raises(ProvisioningError, match="has a badge reader in the registry: add --nfc"):
        settle_with_registry(device, NodeOptions())


def test_the_telemetry_interval_is_the_registrys_unless_it_contradicts_it(site: Site) -> None:
    register(site.registry, 260, nfc=False, report_interval_s=900)
    device, _ = registered_node(260, site.keys, site.registry)
    options, _ = settle_with_registry(device, NodeOptions())
    assert options.telemetry_s == 900
    with pytest.raises(ProvisioningError, match="reports every 900 s in the registry"):
        settle_with_registry(device, replace(options, telemetry_s=300))


def test_the_status_interval_is_the_registrys(site: Site) -> None:
    register(site.registry, 261, nfc=False, status_interval_s=120)
    device, secrets = registered_node(261, site.keys, site.registry)
    options, _ = settle_with_registry(device, NodeOptions())
    config = build_config(load_profile("heltec_v2"), "node", SITE, device_id=261, secrets=secrets, options=options)
    assert config["intervals"]["status_s"] == 120  # Home Assistant's status entity expires at 3 of them


def test_a_registry_field_no_chosen_sensor_measures_and_the_reverse_are_warnings(site: Site) -> None:
    device, _ = registered_node(NODE_ID, site.keys, site.registry)  # registered with temperature_c, co2_ppm
    _, warnings = settle_with_registry(device, NodeOptions(sensors=("bme280",)))
    assert warnings[0] == (
        f"the registry lists co2_ppm for device {NODE_ID}, which none of its sensors measures "
        "(add scd4x to --sensors; else Home Assistant shows it unknown)"
    )
    assert settle_with_registry(device, NodeOptions(sensors=("scd4x",)))[1] == [
        f"--sensors measures humidity_pct for device {NODE_ID}, which the registry does not list: published on "
        "MQTT, but Home Assistant gets no sensor for it (register the device again with these --sensors to have one)"
    ]


def test_staging_writes_the_firmware_and_a_config_only_its_owner_may_read(tmp_path: Path) -> None:
    firmware = tmp_path / "firmware"
    for path in ("boot.py", "main.py", "borne/__init__.py", "borne/drivers/pn532.py", "README.md"):
        (firmware / path).parent.mkdir(parents=True, exist_ok=True)
        (firmware / path).write_text(f"# {path}\n")
    (firmware / "borne" / "__pycache__").mkdir()
    (firmware / "borne" / "__pycache__" / "cached.py").write_text("")
    (firmware / ".cache").mkdir()
    (firmware / ".cache" / "hidden.py").write_text("")
    root = tmp_path / "flash"
    (root / "borne").mkdir(parents=True)
    (root / "borne" / "removed_since.py").write_text("an older firmware's module")
    (root / "checkins.log").write_text("the firmware's own data")
    config = node_config()

    files = stage(config, root, firmware)

    # Modules compiled (a board compiles nothing at boot), boot.py and main.py as source.
    assert files == ["boot.py", "borne/__init__.mpy", "borne/drivers/pn532.mpy", "main.py", "config.json"]
    assert sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file()) == [
        "boot.py",
        "borne/__init__.mpy",
        "borne/drivers/pn532.mpy",
        "checkins.log",
        "config.json",
        "main.py",
    ]
    assert (root / "borne" / "__init__.mpy").read_bytes()[:2] == b"M\x06"  # .mpy version 6
    assert json.loads((root / "config.json").read_text()) == config
    assert stat.S_IMODE((root / "config.json").stat().st_mode) == 0o600


BOARD, OTHER_BOARD = "240ac4000001", "240ac4000002"


@pytest.mark.parametrize(
    ("flashed_on", "board", "holds_its_counters", "moves"),
    [
        (None, BOARD, False, False),  # never flashed: no counter of its keys was used
        (BOARD, BOARD, True, False),  # the same board again, counters and all
        (BOARD, OTHER_BOARD, True, True),  # another board
        (BOARD, BOARD, False, True),  # its board, erased
        (provisioning.UNRECORDED_BOARD, BOARD, True, False),  # from before epochs, its counters on the board
        (provisioning.UNRECORDED_BOARD, BOARD, False, True),
    ],
)
def test_a_new_key_epoch_whenever_the_counters_could_start_over(
    site: Site, flashed_on: str | None, board: str, holds_its_counters: bool, moves: bool
) -> None:
    device = replace(Registry.load(site.registry).devices[NODE_ID], flashed_on=flashed_on)
    assert (provisioning.key_epoch_move(device, board, holds_its_counters) is not None) == moves


def test_flashing_onto_another_board_saves_the_new_epoch_and_its_keys(site: Site) -> None:
    device = Registry.load(site.registry).devices[NODE_ID]
    first, _, reason = provisioning.flash_onto(device, site.keys, site.registry, BOARD, holds_its_counters=False)
    assert (reason, first.key_epoch, first.flashed_on) == (None, 0, BOARD)
    moved, secrets, reason = provisioning.flash_onto(first, site.keys, site.registry, OTHER_BOARD, True)
    assert reason is not None and OTHER_BOARD in reason
    assert secrets.keys == moved.keys == derive_device_keys(MASTER_KEY, NODE_ID, 1)
    assert Registry.load(site.registry).devices[NODE_ID] == moved
    # and the next flash checks the key file against the new epoch's keys
    again, _ = provisioning.registered_node(NODE_ID, site.keys, site.registry)
    assert again.key_epoch == 1


def test_a_new_epoch_needs_the_master_key(site: Site, tmp_path: Path) -> None:
    keys = derive_device_keys(MASTER_KEY, NODE_ID)
    own = tmp_path / "own-keys.toml"
    own.write_text(f'[devices.{NODE_ID}]\nmic_key = "{keys.mic_key.hex()}"\nenc_key = "{keys.enc_key.hex()}"\n')
    os.chmod(own, 0o600)
    device = replace(Registry.load(site.registry).devices[NODE_ID], flashed_on=BOARD)
    with pytest.raises(ProvisioningError, match="no master_key to derive them from"):
        provisioning.flash_onto(device, own, site.registry, OTHER_BOARD, holds_its_counters=True)
