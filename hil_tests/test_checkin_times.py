"""Check-ins keep their identity and their true time whatever the gateway and the node go through:
an outage of the gateway, downlinks that no longer reach the node, a power cut of the node.

The real firmware retries a check-in frame not ACKed after a backoff with jitter, building it again
with a new counter and the ages of that moment; here its longest wait is cut to RETRY_MAX_S so that
the retries after an outage come within seconds (they are still real retries, from the firmware's
own backoff). One site serves the module; each test presents its own badges.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime

import pytest

from hil_tests.conftest import BADGE_KEY, require_site_tools
from hil_tests.rig import SIMULATOR
from payload_codec import badge_token
from payload_codec.schema import MAX_CHECKINS
from simulator.mqtt_log import MqttLog
from simulator.virtual_site import STATS_INTERVAL_S, NodeSpec, VirtualSite

RETRY_MAX_S = 8
DOOR = NodeSpec(
    301,
    "entrance",
    nfc="pn532",
    direction="in",
    sensors=("bme280",),
    telemetry_s=10,
    status_s=60,
    retry_max_s=RETRY_MAX_S,
)
OUTAGE_S = 120
TRUE_TIME_S = 2.0  # how far a published time may be from the presentation
BOOT_S = 60


# The gateway's outage, the lost downlinks and the power cut are the simulator's.
pytestmark = pytest.mark.rig(needs=[SIMULATOR])


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VirtualSite]:
    require_site_tools()
    with VirtualSite(tmp_path_factory.mktemp("checkin_times"), [DOOR], radio={"sf": 7}, record_mqtt=True) as site:
        yield site


@pytest.fixture(scope="module")
def mqtt(site: VirtualSite) -> MqttLog:
    log = site.mqtt
    assert log is not None
    log.wait_for(lambda: log.on("/entrance/status"), BOOT_S + 70, "the door's first status")
    return log


def presented(site: VirtualSite, uid: bytes) -> float:
    """Present `uid` at the door for 0.8 s; the Unix time it was presented at."""
    at = time.time()
    site.present_badge(DOOR.name, uid)
    time.sleep(0.8)
    site.remove_badge(DOOR.name)
    return at


def checkins_of(mqtt: MqttLog, uid: bytes) -> list[dict]:
    """The door's check-ins of badge `uid`, found by its token as a consumer does."""
    token = badge_token(BADGE_KEY, uid).hex()
    return [c for c in mqtt.on(f"/{DOOR.name}/checkin") if c["badge_token"] == token]


def unix(published: dict) -> float:
    return datetime.fromisoformat(published["time"].replace("Z", "+00:00")).timestamp()


def test_after_a_two_minute_gateway_outage_each_checkin_is_published_once_at_its_true_time(site, mqtt):
    uids = [bytes([0x04, 0x30 + i, 0x11, 0x22]) for i in range(4)]
    site.stop_gateway()
    started = time.monotonic()
    times = {}
    for uid in uids:  # spread over the outage: the node retries, unheard, all along
        times[uid] = presented(site, uid)
        time.sleep(OUTAGE_S / len(uids) - 1)
    time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - started)))
    site.start_gateway()
    mqtt.wait_for(lambda: all(checkins_of(mqtt, uid) for uid in uids), 3 * RETRY_MAX_S + 30, "the check-ins")
    time.sleep(RETRY_MAX_S + 3)  # a retry published again would be out by now
    for uid in uids:
        (checkin,) = checkins_of(mqtt, uid)
        assert abs(unix(checkin) - times[uid]) <= TRUE_TIME_S, (checkin["time"], times[uid])
        assert checkin["time_is_bound"] is False
    numbers = sorted(checkins_of(mqtt, uid)[0]["number"] for uid in uids)
    assert numbers == list(range(numbers[0], numbers[0] + len(uids)))  # numbered as read, none skipped


def test_when_only_the_downlinks_are_lost_telemetry_goes_on_and_each_checkin_is_published_once(site, mqtt):
    # More than one frame carries (16 at SF7): those past the first frame's go out too.
    uids = [bytes([0x04, 0x40 + i, 0x33, 0x44]) for i in range(MAX_CHECKINS + 2)]
    door, bridge = site.boards["entrance"], site.boards["bridge"]
    site.medium.set_one_way_loss(bridge, door, 1.0)  # the gateway hears the door; its ACKs never arrive
    try:
        times = {uid: presented(site, uid) for uid in uids}
        mqtt.wait_for(lambda: all(checkins_of(mqtt, uid) for uid in uids), 60, "the check-ins, ACKs lost")
        telemetry_before = len(mqtt.on("/entrance/telemetry"))
        time.sleep(4 * RETRY_MAX_S)  # the node keeps retrying: new frames, the same numbers
        assert len(mqtt.on("/entrance/telemetry")) >= telemetry_before + 2  # it does not wait for the ACKs
    finally:
        site.medium.set_one_way_loss(bridge, door, 0.0)
    for uid in uids:
        (checkin,) = checkins_of(mqtt, uid)
        assert abs(unix(checkin) - times[uid]) <= TRUE_TIME_S
    # The retries reached the gateway as new frames, and their check-ins were left out as published.
    mqtt.wait_for(lambda: left_out(mqtt) >= len(uids), 2 * STATS_INTERVAL_S + 5, "the gateway's stats")


def left_out(mqtt: MqttLog) -> int:
    stats = mqtt.on("/virtual-gateway/stats")
    return stats[-1]["pipeline"].get("checkins_published_before", 0) if stats else 0


def test_checkins_queued_across_a_power_cut_are_published_with_their_time_as_a_bound(site, mqtt):
    before, after = bytes.fromhex("04505566"), bytes.fromhex("04515566")
    site.stop_gateway()
    at = presented(site, before)
    time.sleep(3)
    site.boards["entrance"].power_cycle(off_s=20)  # off for a time the node cannot know
    time.sleep(5)
    after_at = presented(site, after)
    site.start_gateway()
    mqtt.wait_for(lambda: checkins_of(mqtt, before) and checkins_of(mqtt, after), 3 * RETRY_MAX_S + 60, "both")
    (bound,) = checkins_of(mqtt, before)
    (exact,) = checkins_of(mqtt, after)
    assert bound["time_is_bound"] is True
    # The age left out the 20 s the node was off: the check-in happened at the time published or earlier.
    assert unix(bound) >= at + 15
    assert exact["time_is_bound"] is False and abs(unix(exact) - after_at) <= TRUE_TIME_S
    assert exact["number"] == bound["number"] + 1  # numbering goes on across the power cut
