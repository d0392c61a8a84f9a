"""Home Assistant discovery, and what a Home Assistant makes of the running gateway."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import re
import time
from pathlib import Path

import aiomqtt

from boards.registry import Device, Registry
from gateway_daemon.home_assistant import (
    READER_SENSORS,
    SENSORS,
    SIGNAL_SENSORS,
    STATUS_SENSORS,
    best_reception_template,
    discovery_messages,
)
from gateway_daemon.sources import Reception
from payload_codec import Checkin, CheckinBatch, Status, Telemetry, build_frame, derive_device_keys
from payload_codec.vectorgen import TELEMETRY_SAMPLE, TEST_MASTER_KEY
from simulator.broker import free_port

from .home_assistant_model import UNAVAILABLE, UNKNOWN, HomeAssistantModel
from .site import Site, config_text, until
from .test_udp_end_to_end import Daemon

# The keys of each kind of event the gateway publishes, from its typed message.
PUBLISHED = {
    "telemetry": set(Telemetry.from_json(TELEMETRY_SAMPLE).to_json()),
    "status": set(Status(firmware="1.0.0", uptime_s=1).to_json()),
    "checkin": set(Checkin(badge_token=bytes(8), uid_length=7, age_s=0).to_json()),
}


def test_every_discovery_template_reads_a_key_published_on_its_topic():
    device = Device(
        1, "door-1", "ecole", "school", derive_device_keys(TEST_MASTER_KEY, 1), sensors=tuple(SENSORS), nfc=True
    )
    configs = [json.loads(payload) for _, payload in discovery_messages([device], "gw", "borne", "homeassistant")]
    # The tag scanner and the firmware sensor besides.
    assert len(configs) == len(SENSORS) + len(STATUS_SENSORS) + len(READER_SENSORS) + len(SIGNAL_SENSORS) + 2
    reception = Reception(b"", "sim", 0.0, 868_100_000, 9, 125_000, -80.0, 8.0, 0).metadata()
    for config in configs:
        kind = config.get("state_topic", config.get("topic")).rsplit("/", 1)[1]
        template = config["value_template"]
        if template in {best_reception_template(key) for key in reception}:  # every message lists its receptions
            continue
        reads = re.fullmatch(r"\{\{ value_json(?:\.get\('(\w+)'\)|\.(\w+)) \}\}", template)
        key = reads.group(1) or reads.group(2)
        assert key in PUBLISHED[kind], (kind, key)


# --- Home Assistant's view, on a real broker ---------------------------------------------------
# One device of each kind: a door with a badge reader, a room's air sensor on mains, a battery
# meter reporting every 10 minutes. The gateway itself is the fourth device.
DOOR = Device(401, "door-main", "mairie", "town_hall", derive_device_keys(TEST_MASTER_KEY, 401), nfc=True)
AIR = Device(
    402,
    "room-12",
    "ecole-jaures",
    "classroom_12",
    derive_device_keys(TEST_MASTER_KEY, 402),
    sensors=("temperature_c", "humidity_pct", "pressure_hpa", "co2_ppm"),
)
METER = Device(
    403,
    "meter-1",
    "mairie",
    "boiler-room",
    derive_device_keys(TEST_MASTER_KEY, 403),
    battery=True,
    report_interval_s=600,
    sensors=("meter_pulses", "battery_mv"),
)
GATEWAY = "borne_gateway_gw-test"  # the gateway's device, as named in site.py's configuration
TOKEN = bytes.fromhex("5ca1ab1e0ddba115")


def write_devices(directory: Path) -> None:
    Registry({device.device_id: device for device in (DOOR, AIR, METER)}).save(directory / "devices.toml")


class Nodes:
    """Frames from the registry's devices, each with its own next counter, heard by a site's radio."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.counters: dict[int, int] = {}

    async def send(self, device: Device, message) -> None:
        counter = self.counters[device.device_id] = self.counters.get(device.device_id, 0) + 1
        self.site.radio.hear(build_frame(message, device.device_id, counter, device.keys))
        await until(lambda: self.site.gateway.state.last_counter(device.device_id) == counter)


def checkin(token: bytes = TOKEN) -> CheckinBatch:
    """A new check-in: each has a number of its own, as a node numbers them."""
    one = Checkin(badge_token=token, tag_type="ntag", direction="in", uid_length=7, age_s=1)
    return CheckinBatch(first_number16=next(_checkin_numbers), checkins=(one,))


_checkin_numbers = itertools.count()


def node(device: Device) -> str:
    return f"borne_{device.device_id}"


def numeric(model: HomeAssistantModel, key: str) -> float | None:
    """The entity's number, None until it is discovered and has one."""
    state = model.state(key) if key in model.entities else UNKNOWN
    return None if state in (UNAVAILABLE, UNKNOWN) else float(state)


async def test_home_assistant_sees_every_device_kind_the_gateway_and_firmware(tmp_path, broker):
    write_devices(tmp_path)
    async with Site(tmp_path, broker.port) as site, HomeAssistantModel(broker.port) as ha:
        nodes = Nodes(site)
        await nodes.send(DOOR, Status(firmware="1.4.2", uptime_s=60, queue_depth=2, flash_errors=1, reader_errors=4))
        await nodes.send(AIR, Telemetry(temperature_c=21.5, humidity_pct=40.0, pressure_hpa=1013.2, co2_ppm=650))
        await nodes.send(METER, Telemetry(meter_pulses=1234, battery_mv=3700))
        await nodes.send(METER, Status(firmware="1.3.0", uptime_s=60))
        await nodes.send(DOOR, checkin())
        site.radio.hear(b"\x00 not a frame")

        await ha.until(lambda: [scan.tag_id for scan in ha.tag_scans] == [TOKEN.hex()])
        assert ha.tag_scans[0].device == node(DOOR)
        await ha.until(lambda: numeric(ha, f"{node(AIR)}_co2_ppm") == 650)
        assert numeric(ha, f"{node(AIR)}_temperature_c") == 21.5
        assert numeric(ha, f"{node(METER)}_meter_pulses") == 1234
        await ha.until(lambda: numeric(ha, f"{node(DOOR)}_queue_depth") == 2)
        assert numeric(ha, f"{node(DOOR)}_flash_errors") == 1
        assert numeric(ha, f"{node(DOOR)}_reader_errors") == 4
        assert numeric(ha, f"{node(DOOR)}_rssi_dbm") == -80.0  # the simulated receiver's
        assert numeric(ha, f"{node(DOOR)}_snr_db") == 8.0
        assert ha.entities[f"{node(DOOR)}_rssi_dbm"].config["device_class"] == "signal_strength"
        assert f"{node(AIR)}_reader_errors" not in ha.entities  # no badge reader there
        # Firmware versions from the status messages, on their devices.
        await ha.until(lambda: ha.devices.get(node(DOOR), {}).get("sw_version") == "1.4.2")
        await ha.until(lambda: ha.devices.get(node(METER), {}).get("sw_version") == "1.3.0")
        assert "sw_version" not in ha.devices[node(AIR)]  # no status from it yet

        # Every node hangs off the gateway's device, which has its own entities from its stats.
        for device in (DOOR, AIR, METER):
            assert ha.devices[node(device)]["via_device"] == GATEWAY
        assert GATEWAY in ha.devices
        assert [ha.devices[node(d)]["suggested_area"] for d in (DOOR, AIR, METER)] == [
            "Town hall",
            "Classroom 12",
            "Boiler room",
        ]
        assert ha.state(f"{GATEWAY}_online") == "on"
        await ha.until(lambda: (numeric(ha, f"{GATEWAY}_frames_received") or 0) >= 6)
        await ha.until(lambda: (numeric(ha, f"{GATEWAY}_rejected") or 0) >= 1)
        assert numeric(ha, f"{GATEWAY}_outbox_depth") is not None

        # A report without one of the device's fields: that sensor becomes unknown, quietly.
        await nodes.send(AIR, Telemetry(temperature_c=22.0, humidity_pct=41.0, pressure_hpa=1013.0))
        await ha.until(lambda: numeric(ha, f"{node(AIR)}_temperature_c") == 22.0)
        assert ha.state(f"{node(AIR)}_co2_ppm") == UNKNOWN
        assert ha.warnings == [] and ha.errors == []

        # Expiry by message kind: telemetry after 3 reports, status after 3 status periods.
        telemetry_gone = time.monotonic() + 3 * METER.report_interval_s + 1
        status_gone = time.monotonic() + 3 * METER.status_interval_s + 1
        assert ha.state(f"{node(METER)}_battery_mv", at=telemetry_gone - 2) == "3700"
        assert ha.state(f"{node(METER)}_battery_mv", at=telemetry_gone) == UNAVAILABLE
        assert ha.state(f"{node(METER)}_radio_errors", at=telemetry_gone) == "0"
        assert ha.state(f"{node(METER)}_radio_errors", at=status_gone) == UNAVAILABLE
        assert ha.state(f"{node(AIR)}_co2_ppm", at=time.monotonic() + 3 * AIR.report_interval_s + 1) == UNAVAILABLE


async def test_home_assistant_restarted_reads_the_last_states_and_replays_no_badge(tmp_path, broker):
    write_devices(tmp_path)
    async with Site(tmp_path, broker.port) as site:
        nodes = Nodes(site)
        async with HomeAssistantModel(broker.port) as ha:
            await nodes.send(DOOR, Status(firmware="1.4.2", uptime_s=60, checkins_dropped=1))
            await nodes.send(AIR, Telemetry(temperature_c=19.0, humidity_pct=50.0, pressure_hpa=1000.0, co2_ppm=900))
            await nodes.send(DOOR, checkin())
            await ha.until(lambda: len(ha.tag_scans) == 1 and numeric(ha, f"{node(AIR)}_co2_ppm") == 900)

        async with HomeAssistantModel(broker.port) as restarted:
            # The retained states are there at once, not after the next report an hour later.
            await restarted.until(lambda: numeric(restarted, f"{node(DOOR)}_checkins_dropped") == 1)
            await restarted.until(lambda: numeric(restarted, f"{node(AIR)}_co2_ppm") == 900)
            assert restarted.devices[node(DOOR)]["sw_version"] == "1.4.2"
            assert restarted.state(f"{node(DOOR)}_radio_errors") == "0"
            # A badge presented now is scanned once, and nothing before it: the old scan is not replayed.
            await restarted.until(lambda: any(e.component == "tag" for e in restarted.entities.values()))
            await nodes.send(DOOR, checkin(bytes(8)))
            await restarted.until(lambda: len(restarted.tag_scans) >= 1)
            assert [scan.tag_id for scan in restarted.tag_scans] == [bytes(8).hex()]
            assert restarted.warnings == [] and restarted.errors == []


async def test_a_restarted_gateway_and_a_new_firmware_leave_the_nodes_sensors_available(tmp_path, broker):
    """Home Assistant sets up again a sensor whose discovery config changed, and it stays unavailable
    until its next message: a status an hour later. Across a restart no config changes; a new firmware
    changes only the firmware sensor's, which does not expire."""
    write_devices(tmp_path)
    async with HomeAssistantModel(broker.port) as ha:
        async with Site(tmp_path, broker.port) as site:
            nodes = Nodes(site)
            await nodes.send(DOOR, Status(firmware="1.4.2", uptime_s=60, queue_depth=2))
            await nodes.send(AIR, Telemetry(temperature_c=21.5, humidity_pct=40.0, pressure_hpa=1013.2, co2_ppm=650))
            await ha.until(lambda: ha.devices.get(node(DOOR), {}).get("sw_version") == "1.4.2")
            await ha.until(lambda: numeric(ha, f"{node(AIR)}_co2_ppm") == 650)
        async with Site(tmp_path, broker.port) as site:  # the same state file: a restart
            nodes = Nodes(site)
            nodes.counters = {DOOR.device_id: 1, AIR.device_id: 1}
            # A report published after the restart's discovery configs, and the door's retained status read back.
            await nodes.send(METER, Telemetry(meter_pulses=1, battery_mv=3700))
            await ha.until(lambda: numeric(ha, f"{node(METER)}_meter_pulses") == 1)
            await asyncio.sleep(0.5)
            assert numeric(ha, f"{node(DOOR)}_queue_depth") == 2
            assert numeric(ha, f"{node(AIR)}_co2_ppm") == 650

            await nodes.send(DOOR, Status(firmware="1.5.0", uptime_s=5, queue_depth=3))
            await ha.until(lambda: ha.devices[node(DOOR)].get("sw_version") == "1.5.0")
            await ha.until(lambda: numeric(ha, f"{node(DOOR)}_queue_depth") == 3)
            await asyncio.sleep(0.5)  # the broker's copy of the status came back to the gateway meanwhile
            door = ha.device_entities(node(DOOR))
            assert {key: ha.state(key) for key in door if door[key].component == "sensor"} == {
                f"{node(DOOR)}_{field}": "3" if field == "queue_depth" else "0"
                for field in (*STATUS_SENSORS, *READER_SENSORS)
            } | {f"{node(DOOR)}_rssi_dbm": "-80.0", f"{node(DOOR)}_snr_db": "8.0", f"{node(DOOR)}_firmware": "1.5.0"}
            # Only the firmware sensor, which does not expire, was set up again: for 1.4.2, then for 1.5.0.
            set_up_again = {key: entity.set_up_again for key, entity in ha.entities.items() if entity.set_up_again}
            assert set_up_again == {f"{node(DOOR)}_firmware": 2}
            assert ha.warnings == [] and ha.errors == []


async def test_a_report_accepted_late_does_not_replace_the_newer_retained_state(tmp_path, broker):
    write_devices(tmp_path)
    async with Site(tmp_path, broker.port) as site:
        async with HomeAssistantModel(broker.port) as ha:
            for counter, co2 in ((1, 400), (5, 800), (3, 500)):  # 3 came by a slower path: the window takes it
                site.radio.hear(build_frame(Telemetry(co2_ppm=co2), AIR.device_id, counter, AIR.keys))
                await ha.until(lambda co2=co2: numeric(ha, f"{node(AIR)}_co2_ppm") == co2)
        async with HomeAssistantModel(broker.port) as restarted:
            await restarted.until(lambda: numeric(restarted, f"{node(AIR)}_co2_ppm") == 800)


async def test_a_status_on_another_devices_topic_does_not_set_a_devices_firmware(tmp_path, broker):
    write_devices(tmp_path)
    async with Site(tmp_path, broker.port) as site, HomeAssistantModel(broker.port) as ha:
        nodes = Nodes(site)
        await nodes.send(DOOR, Status(firmware="1.4.2", uptime_s=60))
        await ha.until(lambda: ha.devices.get(node(DOOR), {}).get("sw_version") == "1.4.2")
        async with aiomqtt.Client("127.0.0.1", broker.port) as client:
            spoofed = {"device_id": DOOR.device_id, "firmware": "6.6.6"}
            await client.publish(f"borne/{AIR.site}/{AIR.name}/status", json.dumps(spoofed), qos=1)
        await nodes.send(METER, Status(firmware="1.3.0", uptime_s=60))  # read after the message above
        await ha.until(lambda: ha.devices.get(node(METER), {}).get("sw_version") == "1.3.0")
        assert ha.devices[node(DOOR)]["sw_version"] == "1.4.2"


async def test_a_board_flashed_with_new_keys_has_its_first_report_retained(tmp_path, broker):
    # Its counters start again at 0 under the new key epoch: they are not older than the last epoch's.
    write_devices(tmp_path)
    rekeyed = dataclasses.replace(AIR, key_epoch=1, keys=derive_device_keys(TEST_MASTER_KEY, AIR.device_id, 1))
    async with Site(tmp_path, broker.port) as site:
        async with HomeAssistantModel(broker.port) as ha:
            site.radio.hear(build_frame(Telemetry(co2_ppm=800), AIR.device_id, 5000, AIR.keys))
            await ha.until(lambda: numeric(ha, f"{node(AIR)}_co2_ppm") == 800)
            Registry({device.device_id: device for device in (DOOR, rekeyed, METER)}).save(tmp_path / "devices.toml")
            site.radio.hear(build_frame(Telemetry(co2_ppm=450), AIR.device_id, 1, rekeyed.keys))
            await ha.until(lambda: numeric(ha, f"{node(AIR)}_co2_ppm") == 450)
        async with HomeAssistantModel(broker.port) as restarted:
            await restarted.until(lambda: numeric(restarted, f"{node(AIR)}_co2_ppm") == 450)


async def test_the_model_would_see_a_retained_checkin_replayed_and_a_missing_field_warned(broker):
    """The model catches what the tests above check: a retained check-in, a template without a default."""
    door_config = discovery_messages([DOOR], "gw-test", "borne", "homeassistant")
    async with aiomqtt.Client("127.0.0.1", broker.port) as client:
        for topic, payload in door_config:
            await client.publish(topic, payload, qos=1, retain=True)
        await client.publish("borne/mairie/door-main/checkin", json.dumps({"badge_token": "00"}), qos=1, retain=True)
    async with HomeAssistantModel(broker.port) as ha:
        await ha.until(lambda: len(ha.tag_scans) == 1)
        assert ha.render("{{ value_json.co2_ppm }}", '{"temperature_c": 20}') == ""
        assert ha.warnings == ["Template variable warning: 'dict object' has no attribute 'co2_ppm'"]
        assert ha.render("{{ value_json.get('co2_ppm') }}", '{"temperature_c": 20}') == "None"
        assert len(ha.warnings) == 1


async def test_a_clean_stop_says_offline_and_home_assistant_marks_everything_unavailable(tmp_path, broker):
    """`systemctl stop` sends SIGTERM: a clean disconnect cancels the last will, so the gateway says it."""
    write_devices(tmp_path)
    config = tmp_path / "gateway.toml"
    config.write_text(config_text(tmp_path, broker.port) + f"[udp]\nenabled = true\nport = {free_port()}\n")
    daemon = Daemon(config)
    await daemon.start()
    try:
        async with HomeAssistantModel(broker.port) as ha:
            await ha.until(lambda: f"{GATEWAY}_online" in ha.entities and ha.state(f"{GATEWAY}_online") == "on")
            await ha.until(lambda: f"{node(DOOR)}_queue_depth" in ha.entities)
            await daemon.stop()
            assert daemon.process is not None and daemon.process.returncode == 0  # stopped, not killed
            await ha.until(lambda: ha.state(f"{GATEWAY}_online") == "off")
            assert ha.state(f"{node(DOOR)}_queue_depth") == UNAVAILABLE
        async with aiomqtt.Client("127.0.0.1", broker.port) as client:
            await client.subscribe("borne/gateway/gw-test/state")
            async with asyncio.timeout(10):
                message = await anext(aiter(client.messages))
            assert (message.payload, message.retain) == (b"offline", True)
    finally:
        await daemon.stop()
