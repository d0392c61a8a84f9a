"""Sites of the virtual rig for the tests of this folder."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from payload_codec import badge_token, derive_badge_key
from simulator.broker import BrokerMissing, mosquitto_binary
from simulator.mqtt_log import MqttLog
from simulator.test_keys import TEST_MASTER_KEY
from simulator.virtual_board import VirtualBoardError, check_vm_installed
from simulator.virtual_site import NodeSpec, VirtualSite

BADGE_KEY = derive_badge_key(TEST_MASTER_KEY)


def require_site_tools() -> None:
    """Skip, saying what is missing, without Node, the MicroPython VM or mosquitto."""
    try:
        check_vm_installed()
        mosquitto_binary()
    except (VirtualBoardError, BrokerMissing) as error:
        pytest.skip(f"the virtual site needs the virtual board and mosquitto: {error}")


def running_site(
    tmp_path_factory: pytest.TempPathFactory, name: str, nodes: list[NodeSpec], **options: Any
) -> Iterator[VirtualSite]:
    """A site recording what is published from before its first boot, for a module's fixture."""
    require_site_tools()
    with VirtualSite(tmp_path_factory.mktemp(name), nodes, record_mqtt=True, **options) as site:
        yield site


def checkins_of(mqtt: MqttLog, uid: bytes, door: str = "entrance") -> list[dict]:
    """The check-ins published for the badge `uid` at `door`: found by its token, as a consumer does."""
    token = badge_token(BADGE_KEY, uid).hex()
    return [c for c in mqtt.on(f"/{door}/checkin") if c["badge_token"] == token]


def present(site: VirtualSite, uid: bytes, held_s: float = 0.8, door: str = "entrance") -> None:
    """Hold the badge `uid` at the reader of `door` for `held_s`, then take it away."""
    site.present_badge(door, uid)
    time.sleep(held_s)
    site.remove_badge(door)
