"""Both ways a frame reaches the gateway on one site: the bridge board (USB serial) and a
concentrator (Semtech UDP), as a town with a Raspberry Pi and an outdoor gateway has them."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from hil_tests.conftest import checkins_of, present, rig_site
from hil_tests.rig import BRIDGE, CONCENTRATOR, SIMULATOR, Site
from simulator.virtual_site import NodeSpec

DOOR = NodeSpec(101, "entrance", nfc="pn532", direction="in")
SETTLED_S = 12  # time for a check-in's ACK and, without one, for its first retries
pytestmark = pytest.mark.rig(nodes=[DOOR], needs=[BRIDGE, CONCENTRATOR])


@pytest.fixture(scope="module")
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    yield from rig_site(request, tmp_path_factory, radio={"sf": 7}, concentrator=True)


def badge_in(site: Site, uid: bytes) -> dict:
    """Present `uid` at the entrance; its check-in as published."""
    present(site, uid)
    site.mqtt.wait_for(lambda: checkins_of(site, uid), 60, "the check-in")
    time.sleep(SETTLED_S)
    (checkin,) = checkins_of(site, uid)
    return checkin


def retransmissions(site: Site) -> int:
    stats = site.mqtt.on(f"/{site.gateway_name}/stats")
    assert stats, "the gateway publishes its counters every few seconds"
    return stats[-1]["pipeline"].get("retransmissions", 0)


def test_a_frame_heard_by_both_paths_is_published_once_with_both_receptions(site):
    checkin = badge_in(site, bytes.fromhex("04c0ffee"))
    sources = sorted(reception["source"].split(":")[0] for reception in checkin["receptions"])
    assert sources == ["bridge", "udp"]


@pytest.mark.rig(needs=[SIMULATOR])
def test_a_node_only_the_concentrator_hears_gets_its_ack_over_udp(site):
    simulated = site.simulated
    assert simulated is not None
    simulated.medium.set_link(simulated.boards["entrance"], simulated.boards["bridge"], loss=1.0)
    try:
        before = retransmissions(site)
        checkin = badge_in(site, bytes.fromhex("04beef01"))
        assert [r["source"].split(":")[0] for r in checkin["receptions"]] == ["udp"]
        assert retransmissions(site) == before  # the node had its ACK the first time
    finally:
        simulated.medium.set_link(simulated.boards["entrance"], simulated.boards["bridge"], loss=0.0)


def test_the_concentrators_statistics_reach_the_stats_topic(site):
    # lora_pkt_fwd pushes its `stat` every stat_interval (30 s): the installer reads it there.
    def reported() -> list[dict]:
        stats = site.mqtt.on(f"/{site.gateway_name}/stats")
        forwarders = stats[-1]["sources"].get("udp", {}).get("forwarders", {}) if stats else {}
        return [each for each in forwarders.values() if each["stat"] is not None]

    site.mqtt.wait_for(reported, 75, "a stat report of the concentrator")
    (forwarder,) = reported()
    assert forwarder["stat"]["rxnb"] >= 1 and forwarder["push_data_s_ago"] is not None
