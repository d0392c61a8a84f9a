"""The whole chain: two doors and a room, a bridge board, the gateway daemon and mosquitto. On the
virtual rig the nodes run the real firmware in the real MicroPython VM on a radio medium; on a bench,
they are the rig file's boards.

One site serves the module (booting it costs seconds); each test presents its own badges.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from boards.profiles import load_profile
from boards.provisioning import SENSOR_FIELDS
from hil_tests.conftest import checkins_of, present, rig_site
from hil_tests.rig import (
    BRIDGE,
    BRIDGE_NODE,
    BROKER_CONTROL,
    GATEWAY_CONTROL,
    GATEWAY_PROCESS,
    POWER_SWITCH,
    SIMULATOR,
    Site,
)
from payload_codec import SealedEnvelope, read_envelope
from simulator.mqtt_log import MqttLog
from simulator.virtual_board import VirtualBoard
from simulator.virtual_site import NodeSpec

DOOR = NodeSpec(101, "entrance", nfc="pn532", direction="in", status_s=60)
SIDE_DOOR = NodeSpec(102, "side-door", nfc="mfrc522", direction="out", status_s=60)
ROOM = NodeSpec(201, "meeting-room", sensors=("bme280", "scd4x"), telemetry_s=10, status_s=60)
RADIO = {"sf": 7}
BOOT_S = 60  # the site's VMs boot on a shared 2-core machine
pytestmark = pytest.mark.rig(nodes=[DOOR, SIDE_DOOR, ROOM])


@pytest.fixture(scope="module")
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    yield from rig_site(request, tmp_path_factory, radio=RADIO)


@pytest.fixture(scope="module")
def mqtt(site: Site) -> MqttLog:
    return site.mqtt


def test_every_node_reports_its_status_after_boot(site, mqtt):
    # Status frames are not acknowledged: one lost to a collision at boot is followed by the next.
    wait = BOOT_S + 1.1 * max(DOOR.status_s or 0, ROOM.status_s or 0)
    door, room = site.topic_name("entrance"), site.topic_name("meeting-room")
    mqtt.wait_for(lambda: mqtt.on(f"/{door}/status") and mqtt.on(f"/{room}/status"), wait, "a status of each")
    status = mqtt.on(f"/{door}/status")[0]
    assert status["reset_cause"] == "power_on"
    assert status["queue_depth"] == 0


def levels_during(board: VirtualBoard, pin: int, action: Callable[[], None]) -> set[int | None]:
    """The levels the board drives on `pin` while `action` runs, sampled every 10 ms."""
    seen: set[int | None] = set()
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            seen.add(board.pin_output(pin))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        action()
    finally:
        done.set()
        sampler.join()
    return seen


def test_a_badge_is_published_once_as_its_token_never_its_uid(site, mqtt):
    uid = bytes.fromhex("04a1b2c3d4e5f6")
    present(site, uid, held_s=2.0)  # held over many polls: still one presentation
    mqtt.wait_for(lambda: checkins_of(site, uid), BOOT_S, "the check-in")
    time.sleep(3)  # a second check-in, if the firmware made one, would be out by now
    (checkin,) = checkins_of(site, uid)
    assert (checkin["direction"], checkin["uid_length"], checkin["tag_type"]) == ("in", 7, "mifare_classic")
    assert all(uid.hex() not in str(payload) for _, payload in mqtt.messages)


@pytest.mark.rig(needs=[SIMULATOR])
def test_a_badge_held_over_many_polls_flashes_the_doors_led(site, mqtt):
    assert site.simulated is not None
    uid = bytes.fromhex("04a1b2c3d4e5f7")
    led = load_profile(DOOR.board)["led"]["pin"]
    assert 1 in levels_during(site.simulated.boards["entrance"], led, lambda: present(site, uid, held_s=2.0))
    mqtt.wait_for(lambda: checkins_of(site, uid), BOOT_S, "the check-in")


def test_an_mfrc522_door_checks_out_a_ten_byte_uid(site, mqtt):
    uid = bytes.fromhex("88041122334455667788")
    present(site, uid, door="side-door")
    mqtt.wait_for(lambda: checkins_of(site, uid, "side-door"), BOOT_S, "the check-in")
    (checkin,) = checkins_of(site, uid, "side-door")
    assert (checkin["direction"], checkin["uid_length"]) == ("out", 10)


def test_a_retap_after_the_delay_is_a_new_checkin_and_one_within_it_is_not(site, mqtt):
    uid = bytes.fromhex("08112233")
    present(site, uid)
    mqtt.wait_for(lambda: checkins_of(site, uid), BOOT_S, "the first check-in")
    present(site, uid)  # within the 10 s re-tap delay
    time.sleep(10)
    present(site, uid)
    mqtt.wait_for(lambda: len(checkins_of(site, uid)) == 2, BOOT_S, "the check-in after the delay")
    time.sleep(3)
    assert len(checkins_of(site, uid)) == 2


# What a room's air can plausibly read (a bench has real air: ranges, not values): the sensors' own ranges,
# narrowed to a building's (BME280 datasheet §1: -40..85 °C, 300..1100 hPa; SCD4x datasheet §1.1: 400..5000 ppm).
PLAUSIBLE = {
    "temperature_c": (-10, 45),
    "humidity_pct": (0, 100),
    "pressure_hpa": (850, 1100),
    "co2_ppm": (300, 5000),
}


def test_the_rooms_telemetry_carries_each_of_its_sensors_values_within_a_plausible_range(site, mqtt):
    room = site.topic_name("meeting-room")
    fields = {field for sensor in ROOM.sensors for field in SENSOR_FIELDS[sensor]}
    published = len(mqtt.on(f"/{room}/telemetry"))

    def complete() -> list[dict]:  # an SCD4x's first sample comes seconds after the others'
        return [t for t in mqtt.on(f"/{room}/telemetry")[published:] if fields <= set(t)]

    mqtt.wait_for(complete, 3 * (ROOM.telemetry_s or 0), "the room's telemetry with every sensor's value")
    telemetry = complete()[0]
    for field in sorted(fields):
        low, high = PLAUSIBLE[field]
        assert low <= telemetry[field] <= high, f"{field} = {telemetry[field]}"


@pytest.mark.rig(needs=[SIMULATOR])
def test_the_rooms_air_is_published_as_telemetry(site, mqtt):
    assert site.simulated is not None
    site.simulated.set_air("meeting-room", temperature_c=23.5, humidity_pct=41.0, pressure_hpa=1002.0, co2_ppm=1234)

    def measured() -> bool:
        return any(
            abs(t.get("temperature_c", 0) - 23.5) < 0.1 and t.get("co2_ppm") == 1234
            for t in mqtt.on("/meeting-room/telemetry")
        )

    mqtt.wait_for(measured, 45, "telemetry with the new air")
    latest = [t for t in mqtt.on("/meeting-room/telemetry") if t.get("co2_ppm") == 1234][-1]
    assert abs(latest["humidity_pct"] - 41.0) <= 0.5
    assert abs(latest["pressure_hpa"] - 1002.0) <= 0.2


@pytest.mark.rig(needs=[SIMULATOR])  # a bench has no receiver of its own to record a frame with
def test_a_frame_recorded_off_the_air_and_replayed_is_refused_as_a_replay(site, mqtt):
    assert site.simulated is not None
    medium = site.simulated.medium
    heard: list[tuple[bytes, int, int, int]] = []
    medium.add_listener(lambda payload, hz, sf, bw, *_: heard.append((payload, hz, sf, bw)), name="recorder")

    def the_rooms_telemetry() -> tuple[bytes, int, int, int] | None:
        for frame in heard:
            envelope = read_envelope(frame[0])
            if (
                isinstance(envelope, SealedEnvelope)
                and envelope.device_id == ROOM.device_id
                and envelope.msg_type.name == "telemetry"
            ):
                return frame
        return None

    mqtt.wait_for(the_rooms_telemetry, 45, "a telemetry frame of the room on the air")
    recorded = the_rooms_telemetry()
    assert recorded is not None
    counter16 = read_envelope(recorded[0]).counter16

    def published() -> list[dict]:
        return [t for t in mqtt.on("/meeting-room/telemetry") if t["counter"] & 0xFFFF == counter16]

    mqtt.wait_for(published, 30, "the recorded telemetry, published")
    time.sleep(3)  # past the seconds in which the gateway takes a copy for the same frame by a slower path
    medium.transmit(*recorded, sender="replayer")  # no ACK asked: a copy is a replay, not a retransmission

    def refused() -> list[dict]:
        return [r for r in mqtt.on(f"/{site.gateway_name}/rejected") if r["raw_hex"] == recorded[0].hex()]

    mqtt.wait_for(refused, 30, "the replayed frame refused")
    assert refused()[0]["reason"] == "replay"
    assert len(published()) == 1


@pytest.mark.rig(needs=[GATEWAY_CONTROL])
def test_checkins_made_while_the_gateway_is_down_arrive_when_it_is_back(site, mqtt):
    uids = [bytes([0x04, 0x70 + i, 1, 2]) for i in range(3)]
    site.stop_gateway()
    for uid in uids:
        present(site, uid)
        time.sleep(0.5)
    site.start_gateway()
    mqtt.wait_for(lambda: all(checkins_of(site, uid) for uid in uids), 90, "the check-ins queued on the node")
    assert all(len(checkins_of(site, uid)) == 1 for uid in uids)
    frames = {checkins_of(site, uid)[0]["counter"] for uid in uids}
    assert len(frames) < len(uids)  # those queued behind the first went out together, in one frame


def bridge_heartbeat(site, mqtt) -> dict | None:
    """The bridge board's last heartbeat, as the gateway's last stats on MQTT show it."""
    stats = mqtt.on(f"/{site.gateway_name}/stats")
    sources = stats[-1]["sources"] if stats else {}
    return next(
        (s["heartbeat"] for name, s in sources.items() if name.startswith("bridge:") and "heartbeat" in s), None
    )


@pytest.mark.rig(needs=[BRIDGE])
def test_the_bridge_boards_heartbeat_reaches_the_gateways_stats(site, mqtt):
    def heartbeat() -> dict:
        return bridge_heartbeat(site, mqtt) or {}

    mqtt.wait_for(heartbeat, 30, "a heartbeat of the bridge board")  # one every 10 s
    before = heartbeat()["received"]
    uid = bytes([0x04, 0x8F, 1, 2])
    present(site, uid)
    mqtt.wait_for(lambda: checkins_of(site, uid), 30, "the check-in")
    mqtt.wait_for(lambda: heartbeat()["received"] > before, 30, "a heartbeat counting the check-in's frame")
    beat = heartbeat()
    assert beat["link_version"] == 1
    assert beat["received"] >= beat["transmitted"]


@pytest.mark.rig(needs=[GATEWAY_CONTROL, f"{POWER_SWITCH}:entrance"])
def test_checkins_queued_when_a_doors_power_is_cut_arrive_once_after_it_is_back(site, mqtt):
    uids = [bytes([0x04, 0x90 + i, 3, 4]) for i in range(2)]
    site.stop_gateway()
    try:
        for uid in uids:
            present(site, uid)
            time.sleep(0.5)
        time.sleep(2)  # the node has queued them on its flash and is retrying
        site.cut_power("entrance")
        site.restore_power("entrance")
    finally:
        site.start_gateway()
    mqtt.wait_for(lambda: all(checkins_of(site, uid) for uid in uids), 120, "the check-ins queued before the cut")
    time.sleep(3)
    assert all(len(checkins_of(site, uid)) == 1 for uid in uids)


def published_once(site: Site, uids: list[bytes]) -> bool:
    """Each badge's check-in published under one event id (QoS 1 may deliver it twice; a consumer
    deduplicates on the event id)."""
    return all(len({c["event_id"] for c in checkins_of(site, uid)}) == 1 for uid in uids)


@pytest.mark.rig(needs=[BROKER_CONTROL])
def test_checkins_made_while_the_broker_is_down_arrive_once_when_it_is_back(site, mqtt):
    uids = [bytes([0x04, 0xB0 + i, 5, 6]) for i in range(2)]
    site.stop_broker()
    try:
        for uid in uids:
            present(site, uid)  # the gateway ACKs them from its outbox meanwhile
            time.sleep(0.5)
    finally:
        site.start_broker()
    mqtt.wait_for(lambda: all(checkins_of(site, uid) for uid in uids), 90, "the check-ins held in the outbox")
    time.sleep(3)
    assert published_once(site, uids)


@pytest.mark.rig(needs=[GATEWAY_PROCESS])
def test_checkins_around_a_sigkill_of_the_gateway_arrive_once(site, mqtt):
    uids = [bytes([0x04, 0xC0 + i, 7, 8]) for i in range(3)]
    present(site, uids[0])
    site.kill_gateway()  # right after the first was heard: in its outbox, perhaps not yet published
    try:
        present(site, uids[1])  # no gateway: the node keeps it queued
    finally:
        site.start_gateway()
    present(site, uids[2])
    mqtt.wait_for(lambda: all(checkins_of(site, uid) for uid in uids), 90, "the check-ins around the SIGKILL")
    time.sleep(3)
    assert published_once(site, uids)


@pytest.mark.rig(needs=[f"{POWER_SWITCH}:{BRIDGE_NODE}"])
def test_the_gateway_takes_the_bridge_back_after_it_is_unplugged(site, mqtt):
    unplugged, back = bytes.fromhex("04d0d1d2"), bytes.fromhex("04d3d4d5")
    site.cut_power(BRIDGE_NODE)  # its USB power and its serial port go together
    try:
        present(site, unplugged)  # a concentrator, if there is one, hears it meanwhile; else the node retries
    finally:
        site.restore_power(BRIDGE_NODE)
    # Whoever plugs it back waits until it runs; here, for its first heartbeat. A badge shown while it
    # boots is heard by a concentrator alone, if there is one, and then never again by the bridge.
    plugged = time.monotonic()

    def booted() -> bool:
        beat = bridge_heartbeat(site, mqtt)
        return beat is not None and beat["uptime_s"] <= time.monotonic() - plugged + 1

    mqtt.wait_for(booted, 120, "the bridge's first heartbeat after it was plugged back")
    present(site, back)

    def heard_by_the_bridge() -> bool:
        return any(r["source"].startswith("bridge:") for c in checkins_of(site, back) for r in c["receptions"])

    mqtt.wait_for(heard_by_the_bridge, 120, "a check-in the bridge heard after it was plugged back")
    mqtt.wait_for(lambda: checkins_of(site, unplugged), 120, "the check-in made while it was unplugged")
    time.sleep(3)
    assert published_once(site, [unplugged, back])
