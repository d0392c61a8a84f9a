"""The site key file: the master key every device key is derived from.

# borne site keys — keep this file readable by its owner only (chmod 600)
master_key = "000102030405060708090a0b0c0d0e0f"

[devices.258]            # optional: a device provisioned with keys of its own
mic_key = "…32 hex digits…"
enc_key = "…32 hex digits…"
"""

from __future__ import annotations

import os
import secrets
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from payload_codec.crypto import KEY_SIZE, DeviceKeys, derive_badge_key, derive_device_keys


class KeyFileError(Exception):
    """A key file that cannot be used; the message says what to fix."""


@dataclass(frozen=True)
class SiteKeys:
    master_key: bytes | None
    devices: dict[int, DeviceKeys] = field(default_factory=dict)

    def for_device(self, device_id: int, key_epoch: int = 0) -> DeviceKeys | None:
        """The keys of a device in `key_epoch`: its own if it has some (they are epoch 0's), else
        derived from the master key; None if the file cannot give them."""
        if device_id in self.devices:
            return self.devices[device_id] if key_epoch == 0 else None
        if self.master_key is None:
            return None
        return derive_device_keys(self.master_key, device_id, key_epoch)

    @property
    def badge_key(self) -> bytes | None:
        return None if self.master_key is None else derive_badge_key(self.master_key)


def _key(value: object, where: str) -> bytes:
    try:
        key = bytes.fromhex(str(value))
    except ValueError:
        key = b""
    if len(key) != KEY_SIZE:
        raise KeyFileError(f"{where} must be {KEY_SIZE * 2} hex digits")
    return key


def load_site_keys(path: Path) -> SiteKeys:
    """Read a key file; raises KeyFileError with what to fix."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KeyFileError(f"{path}: no such key file") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise KeyFileError(f"{path}: cannot read it as TOML: {error}") from None
    master = document.get("master_key")
    devices: dict[int, DeviceKeys] = {}
    for name, entry in document.get("devices", {}).items():
        try:
            device_id = int(name, 0)
        except ValueError:
            raise KeyFileError(f"{path}: [devices.{name}] is not a device number") from None
        devices[device_id] = DeviceKeys(
            _key(entry.get("mic_key"), f"{path}: [devices.{name}] mic_key"),
            _key(entry.get("enc_key"), f"{path}: [devices.{name}] enc_key"),
        )
    if master is None and not devices:
        raise KeyFileError(f"{path}: no master_key and no [devices.N] keys")
    return SiteKeys(None if master is None else _key(master, f"{path}: master_key"), devices)


def readable_by_others(path: Path) -> bool:
    """Whether group or others may read the file: keys belong to their owner alone."""
    return bool(os.stat(path).st_mode & (stat.S_IRGRP | stat.S_IROTH))


def create_key_file(path: Path) -> None:
    """Write a new site key file holding a random master key, readable by its owner only.

    Refuses an existing file: every device key of a site derives from its master key, so replacing
    it would strand every board already flashed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(
            f"{path} exists already, and a site's master key is never replaced (every device key derives from "
            "it): choose another folder, or keep using that file"
        ) from None
    with os.fdopen(handle, "w", encoding="utf-8") as file:
        file.write(
            "# Borne site keys: keep this file readable by its owner only (chmod 600), and a copy offline.\n"
            "# Every device key derives from the master key; the badge key too, which turns badge UIDs into tokens.\n"
            f'master_key = "{secrets.token_bytes(KEY_SIZE).hex()}"\n'
        )
        file.flush()
        os.fsync(file.fileno())
