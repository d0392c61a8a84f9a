"""Every board profile is valid: the schema, and GPIOs that exist, can do their job and are not shared."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from boards import profiles as boards
from boards.profiles import (
    BoardError,
    for_board,
    gpio_uses,
    load_profile,
    pin_problems,
    profile_names,
    strapping_warnings,
)
from borne.cli import main

SCHEMA = json.loads(boards.SCHEMA_FILE.read_text(encoding="utf-8"))
EXPECTED_BOARDS = {"heltec_v2", "heltec_v3", "ttgo_lora32_v21", "tbeam_sx1276", "tbeam_sx1262", "lilygo_t3s3"}


def raw_profile(name: str) -> dict[str, Any]:
    return json.loads((boards.BOARDS_DIR / f"{name}.json").read_text(encoding="utf-8"))


def test_the_supported_boards_have_a_profile() -> None:
    assert set(profile_names()) >= EXPECTED_BOARDS


def test_the_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("name", profile_names())
def test_the_profile_validates_against_the_schema(name: str) -> None:
    jsonschema.Draft202012Validator(SCHEMA).validate(raw_profile(name))


@pytest.mark.parametrize("name", profile_names())
def test_the_profile_is_named_after_its_file(name: str) -> None:
    assert raw_profile(name)["name"] == name


@pytest.mark.parametrize("name", profile_names())
def test_no_two_functions_share_a_gpio_unless_the_profile_says_why(name: str) -> None:
    profile = raw_profile(name)
    documented = {int(pin) for pin in profile.get("shared_gpio", {})}
    shared = {pin: uses for pin, uses in gpio_uses(profile).items() if len(uses) > 1 and pin not in documented}
    assert shared == {}


@pytest.mark.parametrize("name", profile_names())
def test_every_gpio_exists_on_the_mcu_and_can_do_its_job(name: str) -> None:
    assert pin_problems(raw_profile(name)) == []


@pytest.mark.parametrize("name", profile_names())
def test_every_fact_of_the_profile_names_its_source(name: str) -> None:
    profile = raw_profile(name)
    facts = {"mcu", "console", "radio", "i2c", "nfc_spi", "led", "button", "battery", "pulse", "vext", "pmu"}
    assert facts <= set(profile["sources"]), f"no source for {sorted(facts - set(profile['sources']))}"


def test_the_schema_refuses_an_sx1262_without_its_busy_pin() -> None:
    profile = raw_profile("heltec_v3")
    profile["radio"]["busy"] = None
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(SCHEMA).validate(profile)


def test_the_schema_refuses_a_native_usb_console_on_an_esp32_which_has_no_usb() -> None:
    profile = raw_profile("heltec_v2")
    profile["console"] = "usb"
    with pytest.raises(jsonschema.ValidationError, match="'uart' was expected"):
        jsonschema.Draft202012Validator(SCHEMA).validate(profile)
    profile["mcu"], profile["console"] = "esp32s3", "usb"  # pins aside, the schema takes it on an ESP32-S3
    jsonschema.Draft202012Validator(SCHEMA).validate(profile)


def test_the_schema_refuses_a_key_the_firmware_does_not_know() -> None:
    profile = raw_profile("heltec_v2")
    profile["radio"]["dio2"] = 34
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(SCHEMA).validate(profile)


def test_a_gpio_used_twice_is_a_problem_until_the_profile_says_why() -> None:
    profile = raw_profile("heltec_v2")
    profile["pulse"] = profile["led"]["pin"]
    assert any("GPIO25 is used by" in problem for problem in pin_problems(profile))
    profile["shared_gpio"] = {"25": "the LED shows the pulses"}
    assert pin_problems(profile) == []


def test_an_output_on_an_input_only_gpio_is_a_problem() -> None:
    profile = raw_profile("heltec_v2")
    profile["led"]["pin"] = 36
    assert pin_problems(profile) == ["led: GPIO36 of an esp32 is input only"]


def test_a_flash_gpio_is_a_problem() -> None:
    profile = raw_profile("heltec_v3")
    profile["pulse"] = 30
    assert pin_problems(profile) == ["pulse: GPIO30 is not a usable GPIO of an esp32s3"]


def test_an_unknown_board_is_refused_with_the_known_ones() -> None:
    with pytest.raises(BoardError, match=r"unknown board 'heltec_v9'.*heltec_v2"):
        load_profile("heltec_v9")


def test_borne_board_profiles_lists_every_profile_with_its_description(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["board", "profiles"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed] == profile_names()
    assert all(load_profile(line.split()[0])["description"] in line for line in listed)


def _wiring(profile: dict[str, Any]) -> list[str]:
    """A row of boards/README.md's wiring table, as the profile says it."""
    i2c, nfc, battery, led = profile["i2c"], profile["nfc_spi"], profile["battery"], profile["led"]
    return [
        f"`{profile['name']}`",
        f"{i2c['sda']}/{i2c['scl']}" if i2c else "—",
        "/".join(str(nfc[key]) for key in ("sck", "mosi", "miso", "cs", "reset")) if nfc else "—",
        "—" if profile["pulse"] is None else str(profile["pulse"]),
        f"{battery['pin']} ×{battery['ratio']:g}" if battery else "—",
        (f"{led['pin']}" + ("" if led["active_high"] else " (active low)")) if led else "—",
        "—" if profile["button"] is None else str(profile["button"]),
    ]


def test_the_wiring_table_of_the_readme_is_the_profiles() -> None:
    readme = (boards.BOARDS_DIR / "README.md").read_text(encoding="utf-8")
    table = readme.split("## What to wire where")[1].split("\n\n")[2]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines()[2:]]
    assert sorted(rows) == sorted(_wiring(raw_profile(name)) for name in profile_names())


def test_the_t_beams_switch_on_their_radios_rail_whichever_power_chip_they_carry() -> None:
    for name in ("tbeam_sx1276", "tbeam_sx1262"):
        assert raw_profile(name)["pmu"] == {"axp192": {"ldo2": 3300}, "axp2101": {"aldo2": 3300}}


@pytest.mark.parametrize(
    "pmu",
    [
        {"axp192": {"aldo2": 3300}},  # an AXP2101 rail on an AXP192
        {"axp192": {"ldo2": 3400}},  # above what LDO2 gives
        {"axp2101": {}},  # no rail
        {"axp202": {"ldo2": 3300}},  # a chip the firmware does not know
    ],
)
def test_the_schema_refuses_a_power_chip_the_firmware_cannot_set_up(pmu: dict[str, Any]) -> None:
    profile = raw_profile("tbeam_sx1276")
    profile["pmu"] = pmu
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(SCHEMA).validate(profile)


def test_the_schema_refuses_a_power_chip_without_the_i2c_bus_it_sits_on() -> None:
    profile = raw_profile("tbeam_sx1276")
    profile["i2c"] = None
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(SCHEMA).validate(profile)


def test_the_ttgos_reader_reset_on_a_strapping_pin_is_a_warning_and_a_note() -> None:
    profile = load_profile("ttgo_lora32_v21")
    assert profile["nfc_spi"]["reset"] == 12
    warnings = strapping_warnings(profile, ["nfc_spi"])
    assert any(w.startswith("nfc_spi.reset on GPIO12, a strapping pin (MTDI, the flash voltage") for w in warnings)
    assert any("GPIO12" in note and "1.8 V" in note for note in profile["notes"])
    assert "notes" not in for_board(profile)  # for people: it stays on the laptop


def test_a_profile_without_parts_on_strapping_pins_gives_no_warning() -> None:
    assert strapping_warnings(load_profile("heltec_v2")) == []
    ttgo = load_profile("ttgo_lora32_v21")
    assert strapping_warnings(ttgo, []) == ttgo["notes"]  # a node without an MFRC522: the notes only
