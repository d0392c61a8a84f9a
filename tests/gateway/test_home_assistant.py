"""Home Assistant discovery reads the messages the gateway publishes."""

from __future__ import annotations

import json
import re

from boards.registry import Device
from gateway_daemon.home_assistant import SENSORS, STATUS_SENSORS, discovery_messages
from payload_codec import Checkin, Status, Telemetry, derive_device_keys
from payload_codec.vectorgen import TELEMETRY_SAMPLE, TEST_MASTER_KEY

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
    assert len(configs) == len(SENSORS) + len(STATUS_SENSORS) + 1
    for config in configs:
        kind = config.get("state_topic", config.get("topic")).rsplit("/", 1)[1]
        reads = re.fullmatch(r"\{\{ value_json(?:\.get\('(\w+)'\)|\.(\w+)) \}\}", config["value_template"])
        key = reads.group(1) or reads.group(2)
        assert key in PUBLISHED[kind], (kind, key)
