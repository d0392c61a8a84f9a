"""Board profiles: `boards/<name>.json`, one per supported board (pins, radio chip, power quirks).

The profile's keys are what the firmware reads from config.json's "board"; `sources` and
`shared_gpio` are for people and stay on the laptop. `boards/profile.schema.json` is the schema;
`pin_problems` adds what a schema cannot say: which GPIOs exist and what each can do.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

BOARDS_DIR = Path(__file__).resolve().parent  # the profiles ship beside this module, as package data
SCHEMA_FILE = BOARDS_DIR / "profile.schema.json"
DOCUMENTATION_KEYS = ("sources", "shared_gpio", "notes")  # not copied to the board

# GPIOs per microcontroller, from Espressif's datasheets. ESP32: 6-11 belong to the SPI flash,
# 34-39 have no output driver and no pull resistors. ESP32-S3: 26-32 belong to the flash.
_GPIOS = {
    "esp32": frozenset({*range(0, 6), *range(12, 20), 21, 22, 23, 25, 26, 27, *range(32, 40)}),
    "esp32s3": frozenset({*range(0, 22), *range(33, 49)}),
}
_INPUT_ONLY = {"esp32": frozenset(range(34, 40)), "esp32s3": frozenset()}
_ADC = {
    "esp32": frozenset({0, 2, 4, 12, 13, 14, 15, 25, 26, 27, *range(32, 40)}),
    "esp32s3": frozenset(range(1, 21)),
}
# Strapping pins: their level at reset sets how the chip boots (ESP32 datasheet §2.4 "Strapping Pins";
# ESP32-S3 datasheet §3 "Strapping Pins"). What a part wired there by the installer can do to a boot.
_STRAPPING = {
    "esp32": {
        0: "held low at reset, the board waits for a download instead of starting",
        2: "held high at reset, the board cannot be flashed over serial (it must be low or floating then)",
        5: "its level at reset sets the SDIO slave's timing",
        12: "MTDI, the flash voltage: held high at reset, the flash gets 1.8 V and a board with 3.3 V flash"
        " does not boot",
        15: "MTDO: held low at reset, the ROM prints no boot messages",
    },
    "esp32s3": {
        0: "held low at reset, the board waits for a download instead of starting",
        3: "its level at reset picks the JTAG source",
        45: "VDD_SPI: held high at reset, the flash gets 1.8 V and a board with 3.3 V flash does not boot",
        46: "held high at reset with GPIO0 low, the board cannot be flashed; it also silences boot messages",
    },
}
# Pins the ESP32 drives (outputs and I2C's open-drain lines); the rest only read.
_DRIVEN = frozenset(
    {"radio.sck", "radio.mosi", "radio.cs", "radio.reset", "nfc_spi.sck", "nfc_spi.mosi", "nfc_spi.cs"}
    | {"nfc_spi.reset", "i2c.sda", "i2c.scl", "led", "vext"}
)

# The MFRC522 module's pin labels (its chip select is printed SDA) and the profile's keys.
_MFRC522_PINS = (("SCK", "sck"), ("MOSI", "mosi"), ("MISO", "miso"), ("SDA/CS", "cs"), ("RST", "reset"))


class BoardError(Exception):
    """A board name or profile that cannot be used; the message says what to do."""


def profile_names() -> list[str]:
    """The names of the profiles in boards/, sorted."""
    return sorted(path.stem for path in BOARDS_DIR.glob("*.json") if path != SCHEMA_FILE)


def load_profile(name: str) -> dict[str, Any]:
    """The profile `name`, whole (with its sources); BoardError if unknown or its pins are wrong."""
    path = BOARDS_DIR / f"{name}.json"
    if name not in profile_names():
        known = ", ".join(profile_names()) or f"none: is {BOARDS_DIR} there?"
        raise BoardError(f"unknown board {name!r}; known boards: {known} (`borne board profiles` describes them)")
    try:
        profile = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise BoardError(f"{path}: cannot read it as JSON: {error}") from None
    problems = pin_problems(profile)
    if problems:
        raise BoardError(f"{path}: " + "; ".join(problems))
    return profile


def for_board(profile: dict[str, Any]) -> dict[str, Any]:
    """The profile as the firmware gets it: without the keys meant for people."""
    return {key: value for key, value in profile.items() if key not in DOCUMENTATION_KEYS}


def gpio_uses(profile: dict[str, Any]) -> dict[int, list[str]]:
    """Which functions use each GPIO, e.g. {18: ["radio.cs"], 25: ["led"]}."""
    uses: dict[int, list[str]] = {}

    def use(pin: object, function: str) -> None:
        if isinstance(pin, int) and not isinstance(pin, bool):
            uses.setdefault(pin, []).append(function)

    for section in ("radio", "i2c", "nfc_spi"):
        for key, value in (profile.get(section) or {}).items():
            if key not in ("chip", "spi_id", "id", "dio3_tcxo_mv", "dio3_tcxo_start_us", "tx_ant", "max_power_dbm"):
                use(value, f"{section}.{key}")
    for section in ("led", "battery", "vext"):
        use((profile.get(section) or {}).get("pin"), section)
    for key in ("button", "pulse"):
        use(profile.get(key), key)
    return uses


def strapping_warnings(profile: dict[str, Any], wired: Iterable[str] = ("nfc_spi", "pulse")) -> list[str]:
    """A warning for each GPIO of the `wired` sections (the parts the installer wires: an MFRC522's
    "nfc_spi", a meter's "pulse") that is a strapping pin, saying what the part must not do at reset;
    then the profile's own notes."""
    strapping = _STRAPPING.get(profile.get("mcu", ""), {})
    sections = tuple(wired)
    warnings = []
    for pin, functions in sorted(gpio_uses(profile).items()):
        ours = [f for f in functions if f.split(".")[0] in sections]
        if ours and pin in strapping:
            warnings.append(
                f"{', '.join(ours)} on GPIO{pin}, a strapping pin ({strapping[pin]}):"
                " check that what you wire there does not pull it so (boards/README.md, Strapping pins)"
            )
    return warnings + list(profile.get("notes", []))


def pin_problems(profile: dict[str, Any]) -> list[str]:
    """What is wrong with the profile's GPIOs: shared without a reason, absent, or unable to do their job."""
    mcu = profile.get("mcu")
    if mcu not in _GPIOS:
        return [f"mcu must be one of {', '.join(_GPIOS)}, not {mcu!r}"]
    shared_on_purpose = {int(pin) for pin in profile.get("shared_gpio", {})}
    problems = []
    for pin, functions in sorted(gpio_uses(profile).items()):
        if len(functions) > 1 and pin not in shared_on_purpose:
            problems.append(f"GPIO{pin} is used by {' and '.join(functions)}: say why in shared_gpio, or move one")
        if pin not in _GPIOS[mcu]:
            problems.append(f"{', '.join(functions)}: GPIO{pin} is not a usable GPIO of an {mcu}")
        elif pin in _INPUT_ONLY[mcu] and _DRIVEN.intersection(functions):
            problems.append(f"{', '.join(functions)}: GPIO{pin} of an {mcu} is input only")
    battery = profile.get("battery")
    if battery and battery.get("pin") not in _ADC[mcu]:
        problems.append(f"battery: GPIO{battery.get('pin')} of an {mcu} has no ADC")
    return problems


def wiring(profile: dict[str, Any]) -> list[tuple[str, str]]:
    """What an installer wires to the board and on which GPIOs: (part, pins) rows for
    `borne board wiring` and the installer's guides. Power every part from the board's 3V3 and GND."""
    rows = []
    i2c, nfc = profile["i2c"], profile["nfc_spi"]
    if i2c:
        rows.append(("I2C: PN532, BME280, SCD4x, SHT4x", f"SDA GPIO{i2c['sda']}, SCL GPIO{i2c['scl']}"))
    if nfc:
        pins = ", ".join(f"{label} GPIO{nfc[key]}" for label, key in _MFRC522_PINS)
        rows.append(("SPI: MFRC522", pins))
    if profile["pulse"] is not None:
        rows.append(("S0", f"S0+ GPIO{profile['pulse']}, S0- GND"))
    return rows
