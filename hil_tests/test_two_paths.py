"""Both ways a frame reaches the gateway on one site: the bridge board (USB serial) and a
concentrator (Semtech UDP), as a town with a Raspberry Pi and an outdoor gateway has them."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from hil_tests.conftest import checkins_of, present, running_site
from simulator.virtual_site import NodeSpec, VirtualSite

DOOR = NodeSpec(101, "entrance", nfc="pn532", direction="in")
SETTLED_S = 12  # time for a check-in's ACK and, without one, for its first retries


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VirtualSite]:
    yield from running_site(tmp_path_factory, "two_paths", [DOOR], radio={"sf": 7}, concentrator=True)


def badge_in(site: VirtualSite, uid: bytes) -> dict:
    """Present `uid` at the entrance; its check-in as published."""
    mqtt = site.mqtt
    assert mqtt is not None
    present(site, uid)
    mqtt.wait_for(lambda: checkins_of(mqtt, uid), 60, "the check-in")
    time.sleep(SETTLED_S)
    (checkin,) = checkins_of(mqtt, uid)
    return checkin


def retransmissions(site: VirtualSite) -> int:
    assert site.mqtt is not None
    stats = site.mqtt.on("/virtual-gateway/stats")
    assert stats, "the gateway publishes its counters every few seconds"
    return stats[-1]["pipeline"].get("retransmissions", 0)


def test_a_frame_heard_by_both_paths_is_published_once_with_both_receptions(site):
    checkin = badge_in(site, bytes.fromhex("04c0ffee"))
    sources = sorted(reception["source"].split(":")[0] for reception in checkin["receptions"])
    assert sources == ["bridge", "udp"]


def test_a_node_only_the_concentrator_hears_gets_its_ack_over_udp(site):
    site.medium.set_link(site.boards["entrance"], site.boards["bridge"], loss=1.0)
    try:
        before = retransmissions(site)
        checkin = badge_in(site, bytes.fromhex("04beef01"))
        assert [r["source"].split(":")[0] for r in checkin["receptions"]] == ["udp"]
        assert retransmissions(site) == before  # the node had its ACK the first time
    finally:
        site.medium.set_link(site.boards["entrance"], site.boards["bridge"], loss=0.0)
