"""A site as an installer has it: a key file and the gateway's device registry."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from boards.registry import Device, Registry
from payload_codec import derive_device_keys

MASTER_KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
SITE = "ecole-jaures"
NODE_ID = 258
READER_ID = 259  # registered with a badge reader


@dataclass(frozen=True)
class Site:
    keys: Path
    registry: Path


def register(registry: Path, device_id: int, *, nfc: bool, report_interval_s: int = 300, **fields: object) -> None:
    devices = Registry.load(registry)
    devices.add(
        Device(
            device_id=device_id,
            name=f"board-{device_id}",
            site=SITE,
            facility="school",
            keys=derive_device_keys(MASTER_KEY, device_id),
            nfc=nfc,
            report_interval_s=report_interval_s,
            **fields,  # type: ignore[arg-type]
        )
    )
    devices.save(registry)


@pytest.fixture
def site(tmp_path: Path) -> Site:
    keys = tmp_path / "site-keys.toml"
    keys.write_text(f'master_key = "{MASTER_KEY.hex()}"\n', encoding="utf-8")
    os.chmod(keys, 0o600)
    registry = tmp_path / "devices.toml"
    register(registry, NODE_ID, nfc=False, sensors=("temperature_c", "co2_ppm"))
    register(registry, READER_ID, nfc=True)
    return Site(keys, registry)
