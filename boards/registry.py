"""The device registry: which devices exist, where they stand and their keys.

A TOML file that an installer edits with `borne device add/remove` and that several
gateways of a town can share (read-only for them); a running daemon reads it again when it changes.

    [devices.258]
    name = "entrance-north"          # MQTT topic segment: lower case, digits, - and _
    site = "ecole-jaures"
    facility = "school"
    battery = true                   # Home Assistant marks it unavailable when silent
    report_interval_s = 300          # telemetry period, as the node was told (Home Assistant's expiry)
    status_interval_s = 3600         # status period; an older file without it reads the default
    sensors = ["temperature_c", "co2_ppm"]   # what the board measures
    nfc = true                       # a badge reader
    mic_key = "…32 hex digits…"      # derived from the site master key, device id and key epoch
    enc_key = "…32 hex digits…"
    key_epoch = 0                    # moved on by `borne board flash` when the counters start over
    flashed_on = "240ac4000001"      # the unique id of the board flashed in this epoch, if any

An entry written before key epochs has neither: it is epoch 0, flashed on a board not recorded.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

from payload_codec import DeviceKeys
from payload_codec.schema import TELEMETRY_FIELDS

# The firmware's defaults (firmware/borne/config.py INTERVAL_DEFAULTS), for a device registered
# without its intervals.
DEFAULT_REPORT_INTERVAL_S = 300
DEFAULT_STATUS_INTERVAL_S = 3600
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")  # a device's or a site's name: an MQTT topic level
# `flashed_on` of an entry from before key epochs: some board carries its keys, which one is unknown.
UNRECORDED_BOARD = "unrecorded"


class RegistryError(Exception):
    """A registry file that cannot be used; the message says what to fix."""


@dataclass(frozen=True)
class Device:
    device_id: int
    name: str
    site: str
    facility: str
    keys: DeviceKeys
    battery: bool = False
    report_interval_s: int = DEFAULT_REPORT_INTERVAL_S
    status_interval_s: int = DEFAULT_STATUS_INTERVAL_S
    sensors: tuple[str, ...] = ()  # telemetry fields the board has, for Home Assistant
    nfc: bool = False  # a badge reader: check-ins appear in Home Assistant as tag scans
    key_epoch: int = 0  # the keys' generation: a new one each time the device's counters start over
    flashed_on: str | None = None  # the board (machine.unique_id(), hex) flashed in this epoch; None: none yet

    def redacted_key(self) -> str:
        """Enough of the key to tell two apart, never enough to use it."""
        return self.keys.mic_key.hex()[:4] + "…"


def _hex_key(value: object, where: str) -> bytes:
    try:
        key = bytes.fromhex(str(value))
    except ValueError:
        key = b""
    if len(key) != 16:
        raise RegistryError(f"{where} must be 32 hex digits")
    return key


def _device(device_id: int, entry: dict, where: str) -> Device:
    device = Device(
        device_id=device_id,
        name=str(entry.get("name", "")),
        site=str(entry.get("site", "")),
        facility=str(entry.get("facility", "")),
        keys=DeviceKeys(
            _hex_key(entry.get("mic_key"), f"{where}.mic_key"), _hex_key(entry.get("enc_key"), f"{where}.enc_key")
        ),
        battery=bool(entry.get("battery", False)),
        report_interval_s=int(entry.get("report_interval_s", DEFAULT_REPORT_INTERVAL_S)),
        status_interval_s=int(entry.get("status_interval_s", DEFAULT_STATUS_INTERVAL_S)),
        sensors=tuple(entry.get("sensors", ())),
        nfc=bool(entry.get("nfc", False)),
        key_epoch=_key_epoch(entry.get("key_epoch", 0), where),
        flashed_on=str(entry["flashed_on"]) if "flashed_on" in entry else _legacy_board(entry),
    )
    check_device(device, where)
    return device


def _key_epoch(value: object, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0xFFFFFFFF:
        raise RegistryError(f"{where}.key_epoch must be a whole number from 0 to 4294967295")
    return value


def _legacy_board(entry: dict) -> str | None:
    # Before key epochs an entry said nothing of its board: assume one was flashed with its keys.
    return None if "key_epoch" in entry else UNRECORDED_BOARD


def check_device(device: Device, where: str) -> None:
    """Raise RegistryError if the device cannot be registered as it is."""
    for name, value in (("name", device.name), ("site", device.site)):
        if not NAME_PATTERN.match(value):
            raise RegistryError(
                f"{where} {name} {value!r}: use 1-63 of a-z, 0-9, - and _ (it becomes an MQTT topic level)"
            )
    unknown = set(device.sensors) - {field.name for field in TELEMETRY_FIELDS}
    if unknown:
        known = ", ".join(field.name for field in TELEMETRY_FIELDS)
        raise RegistryError(f"{where} sensors: unknown {', '.join(sorted(unknown))}; known: {known}")
    if not 0 <= device.device_id <= 0xFFFF:
        raise RegistryError(f"{where}: the device id must be a number from 0 to 65535")


class Registry:
    """The devices of a registry file, by id."""

    def __init__(self, devices: dict[int, Device]) -> None:
        self.devices = devices

    @classmethod
    def load(cls, path: Path) -> Registry:
        """Read `path`; a missing file is an empty registry, a broken one a RegistryError."""
        try:
            document = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls({})
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
            raise RegistryError(f"{path}: cannot read it as TOML: {error}") from None
        devices: dict[int, Device] = {}
        names: set[tuple[str, str]] = set()
        for key, entry in document.get("devices", {}).items():
            where = f"{path}: [devices.{key}]"
            if not key.isdigit():
                raise RegistryError(f"{where}: the device id must be a number from 0 to 65535")
            device = _device(int(key), entry, where)
            if (device.site, device.name) in names:
                raise RegistryError(f"{where}: name {device.name!r} is already used in site {device.site!r}")
            names.add((device.site, device.name))
            devices[device.device_id] = device
        return cls(devices)

    def add(self, device: Device) -> None:
        """Register a device; raises RegistryError if its id or site/name is taken or invalid."""
        check_device(device, f"device {device.device_id}")
        if device.device_id in self.devices:
            raise RegistryError(f"device {device.device_id} is already registered; remove it first")
        if any((d.site, d.name) == (device.site, device.name) for d in self.devices.values()):
            raise RegistryError(f"name {device.name!r} is already used in site {device.site!r}")
        self.devices[device.device_id] = device

    def get(self, device_id: int) -> Device | None:
        return self.devices.get(device_id)

    def save(self, path: Path) -> None:
        """Write the registry atomically, readable by its owner only (it holds keys)."""
        lines = ["# Borne device registry: edit with `borne device add/remove`. Holds keys: keep it chmod 600.", ""]
        for device in sorted(self.devices.values(), key=lambda d: d.device_id):
            lines += [
                f"[devices.{device.device_id}]",
                f'name = "{device.name}"',
                f'site = "{device.site}"',
                f'facility = "{_escape(device.facility)}"',
                f"battery = {'true' if device.battery else 'false'}",
                f"report_interval_s = {device.report_interval_s}",
                f"status_interval_s = {device.status_interval_s}",
                f"sensors = {json.dumps(list(device.sensors))}",  # a JSON list of strings is a TOML array
                f"nfc = {'true' if device.nfc else 'false'}",
                f'mic_key = "{device.keys.mic_key.hex()}"',
                f'enc_key = "{device.keys.enc_key.hex()}"',
                f"key_epoch = {device.key_epoch}",
                *([f'flashed_on = "{_escape(device.flashed_on)}"'] if device.flashed_on is not None else []),
                "",
            ]
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            os.fchmod(handle, 0o600)
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                file.write("\n".join(lines))
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')
