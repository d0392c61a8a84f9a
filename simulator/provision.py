"""Install the firmware and a test configuration on a virtual board, as `borne board flash` would.

The configuration comes from provisioning's `build_config`, with keys derived from the test master
key. The files are written straight into the host directory that holds the board's flash, before
the board boots: milliseconds, where mpremote takes a second or more per step; `borne board flash`
itself is tested against a virtual board over mpremote.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from boards import provisioning
from boards.profiles import load_profile
from boards.provisioning import NodeOptions
from simulator.test_keys import TEST_MASTER_KEY, TEST_SITE

DEFAULT_BOARD = "heltec_v2"
DEFAULT_NODE_ID = 1


@dataclass(frozen=True)
class Installed:
    """What went onto the virtual board's flash."""

    files: list[str]
    config: dict[str, Any]

    def summary(self) -> str:
        keys = "; keys from the test master key" if "keys" in self.config else ""
        tops = ", ".join(provisioning.top_level(self.files))
        return f"{len(self.files)} files ({tops}); {provisioning.summary(self.config)}{keys}"


def provision_virtual_board(
    flash: Path,
    *,
    board: str | None = None,
    role: str | None = None,
    device_id: int | None = None,
    options: NodeOptions | None = None,
    radio: Mapping[str, int | str] | None = None,
) -> Installed:
    """Stage the firmware and a test configuration into `flash`, the host directory of a board's files."""
    role = role or "node"
    secrets = None
    if role == "node":
        device_id = DEFAULT_NODE_ID if device_id is None else device_id
        secrets = provisioning.secrets_from_master(TEST_MASTER_KEY, device_id)
    config = provisioning.build_config(
        load_profile(board or DEFAULT_BOARD),
        role,
        TEST_SITE,
        device_id=device_id,
        secrets=secrets,
        options=options or NodeOptions(),
        radio=dict(radio or {}),
    )
    flash.mkdir(parents=True, exist_ok=True)
    return Installed(provisioning.stage(config, flash), config)
