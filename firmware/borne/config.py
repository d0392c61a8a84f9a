"""The board's one configuration file, `/config.json`, written by the installer's provisioning.

    {"version": 1, "role": "node" | "bridge", "site": "town-hall",
     "device_id": 258,                                   # node
     "keys": {"mic": HEX32, "enc": HEX32, "badge": HEX32}, # node; badge with NFC only
     "board": {...the board's profile, from boards/...},
     "radio": {"freq_khz", "sf", "bw", "coding_rate", "syncword", "preamble_len", "output_power",
               "ack_freq_khz", "ack_delay_ms"},
     "nfc": {"reader": "pn532" | "mfrc522", "retap_s": 10, "direction": "none" | "in" | "out",
             "retry_max_s": 600} | null,                 # the longest wait between check-in retries, less
                                                 # as the queue fills
     "sensors": ["bme280", "scd4x", "sht4x", "battery", "pulse"],
     "intervals": {"telemetry_s": 300, "status_s": 3600},
     "deep_sleep": false,
     "config_digest": 0}             # node; written by the last config downlink applied, absent before

A missing key takes its default below; a wrong one raises ConfigError, whose message says which
key and what to do, and which the board prints on its console before it goes to safe mode.
"""

import json

from micropython import const

from borne.contract import DIRECTIONS

PATH = "/config.json"
VERSION = const(1)

RADIO_DEFAULTS = {
    "freq_khz": 868100,
    "sf": 9,
    "bw": "125",
    "coding_rate": 5,
    "syncword": 0x12,
    "preamble_len": 8,
    "output_power": 14,
    "ack_freq_khz": 869525,
    "ack_delay_ms": 1000,
}
INTERVAL_DEFAULTS = {"telemetry_s": 300, "status_s": 3600}
NFC_DEFAULTS = {"reader": "pn532", "retap_s": 10, "direction": "none", "retry_max_s": 600}
SENSORS = ("bme280", "scd4x", "sht4x", "battery", "pulse")


class ConfigError(Exception):
    pass


def load(path=PATH):
    """The configuration, checked and completed with defaults; ConfigError says what is wrong."""
    try:
        with open(path) as f:
            config = json.load(f)
    except OSError:
        raise ConfigError(path + " is missing: provision the board with `borne board flash`") from None
    except ValueError:
        raise ConfigError(path + " is not valid JSON: provision the board again with `borne board flash`") from None
    return check(config)


def check(config):
    if not isinstance(config, dict) or config.get("version") != VERSION:
        raise ConfigError(f"config version is not {VERSION}: provision the board again with this firmware")
    role = config.get("role")
    if role not in ("node", "bridge"):
        raise ConfigError(f"role must be 'node' or 'bridge', not {role!r}")
    if not isinstance(config.get("board"), dict) or not isinstance(config["board"].get("radio"), dict):
        raise ConfigError("the board profile (key 'board', with its 'radio') is missing")
    config["radio"] = _merged(RADIO_DEFAULTS, config.get("radio"), "radio")
    config["intervals"] = _merged(INTERVAL_DEFAULTS, config.get("intervals"), "intervals")
    config.setdefault("site", "")
    config.setdefault("deep_sleep", False)
    if role == "bridge":
        return config
    device_id = config.get("device_id")
    if not isinstance(device_id, int) or not 0 <= device_id <= 0xFFFF:
        raise ConfigError("device_id must be a number from 0 to 65535, as in the gateway's registry")
    nfc = config.get("nfc")
    if nfc is not None:
        nfc = config["nfc"] = _merged(NFC_DEFAULTS, nfc, "nfc")
        if nfc["reader"] not in ("pn532", "mfrc522"):
            raise ConfigError("nfc.reader must be 'pn532' or 'mfrc522'")
        if nfc["direction"] not in DIRECTIONS:
            raise ConfigError("nfc.direction must be one of " + ", ".join(DIRECTIONS))
        retry = nfc["retry_max_s"]
        if not isinstance(retry, int) or not 2 <= retry <= 3600:
            raise ConfigError("nfc.retry_max_s must be a whole number of seconds from 2 to 3600")
    sensors = config.setdefault("sensors", [])
    for sensor in sensors:
        if sensor not in SENSORS:
            raise ConfigError(f"unknown sensor {sensor!r}: known ones are {', '.join(SENSORS)}")
    keys = config.get("keys")
    needed = ("mic", "enc", "badge") if nfc is not None else ("mic", "enc")
    for name in needed:
        if not isinstance(keys, dict) or not _is_key(keys.get(name)):
            raise ConfigError(f"keys.{name} must be 32 hex digits: provision the board with the site's key file")
    if config["deep_sleep"] and nfc is not None:
        raise ConfigError("deep_sleep is for battery nodes without NFC: a sleeping node reads no badge")
    return config


def _merged(defaults, given, section):
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise ConfigError(section + " must be an object")
    for key in given:
        if key not in defaults:
            raise ConfigError(f"unknown key {section}.{key} (known: {', '.join(defaults)})")
    merged = dict(defaults)
    merged.update(given)
    return merged


def _is_key(value):
    if not isinstance(value, str) or len(value) != 32:
        return False
    try:
        bytes.fromhex(value)
    except ValueError:
        return False
    return True


def save(config, path=PATH):
    """Write the configuration back (after a config downlink): whole, or not at all (then OSError)."""
    import os

    try:
        with open(path + ".tmp", "w") as f:
            json.dump(config, f)
        os.rename(path + ".tmp", path)
    except OSError as error:  # a full or failing flash: the file stays as it was, and no half of it is left
        try:
            os.stat(path + ".tmp")
        except OSError:
            raise error from None  # none was made
        os.remove(path + ".tmp")
        raise error
