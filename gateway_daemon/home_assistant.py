"""Home Assistant MQTT discovery: every registered device appears by itself.

Configs are retained and republished whenever Home Assistant announces `online`.
The gateway is a device of its own (online, outbox depth, frames received,
rejected), from its state and stats topics; every node names it as `via_device`.
Availability follows the gateway's state topic, and each sensor expires after
three missed messages of its kind. Templates read fields with `.get()`: a field
missing from a message makes its sensor unknown, with no template warning, rather
than keeping the last value. Badge readers become MQTT tag scanners, so a
check-in is a `tag_scanned` event keyed by the badge token (never a UID).
"""

from __future__ import annotations

import json
from typing import Any

from boards.registry import Device

# Telemetry field → (name, device class, unit, state class, icon)
SENSORS: dict[str, tuple[str, str | None, str | None, str, str | None]] = {
    "temperature_c": ("Temperature", "temperature", "°C", "measurement", None),
    "humidity_pct": ("Humidity", "humidity", "%", "measurement", None),
    "pressure_hpa": ("Pressure", "atmospheric_pressure", "hPa", "measurement", None),
    "co2_ppm": ("CO2", "carbon_dioxide", "ppm", "measurement", None),
    "voc_index": ("VOC index", None, None, "measurement", "mdi:air-filter"),
    "meter_pulses": ("Meter pulses", None, None, "total_increasing", "mdi:counter"),
    "battery_mv": ("Battery", "voltage", "mV", "measurement", None),
}
STATUS_SENSORS = {
    "queue_depth": "Check-ins waiting",
    "checkins_dropped": "Check-ins dropped",
    "radio_errors": "Radio errors",
    "flash_errors": "Flash errors",  # a full or worn flash: check-ins kept in RAM only, configs not kept
}
# Only a door has a badge reader: a reader that stops answering shows here before visitors complain.
READER_SENSORS = {"reader_errors": "Badge reader errors"}
# The link's quality, from each status's receptions: the best receiver's, which is what keeps the node heard.
# Reception key → (name, device class, unit)
SIGNAL_SENSORS = {
    "rssi_dbm": ("Signal strength", "signal_strength", "dBm"),
    "snr_db": ("Signal-to-noise ratio", None, "dB"),
}
MISSED_REPORTS = 3  # a sensor is unavailable after this many of its messages did not come


def best_reception_template(key: str) -> str:
    """The highest `key` among a message's receptions (the receivers that heard its frame)."""
    return f"{{{{ (value_json.get('receptions') or []) | map(attribute='{key}') | max }}}}"


def field_template(field: str) -> str:
    """Read one field; a message without it renders `None`, which Home Assistant shows as unknown."""
    return f"{{{{ value_json.get('{field}') }}}}"


def area_name(slug: str) -> str:
    """`town_hall` → `Town hall`: the name a person would give the room."""
    words = slug.replace("_", " ").replace("-", " ").split()
    return " ".join(words).capitalize()


def gateway_identifier(gateway: str) -> str:
    return f"borne_gateway_{gateway}"


def _config_message(discovery_prefix: str, component: str, object_path: str, config: dict) -> tuple[str, str]:
    return f"{discovery_prefix}/{component}/{object_path}/config", json.dumps(config, ensure_ascii=False)


def discovery_messages(
    devices: list[Device],
    gateway: str,
    prefix: str,
    discovery_prefix: str,
    firmware: dict[int, str] | None = None,
) -> list[tuple[str, str]]:
    """(topic, retained payload) of every discovery config for these devices.

    `firmware` holds the version each node last reported in its status, when known. It goes on the
    device of one config only, the firmware sensor's, which has no `expire_after`: Home Assistant keeps a
    device's `sw_version` from any of its entities, and sets up again a sensor whose config changed, expired
    until its next message when it has `expire_after` (mqtt/sensor.py), even one that comes right after the
    config (the set-up runs after the messages already in). So a new firmware changes no other config.
    """
    firmware = firmware or {}
    availability = f"{prefix}/gateway/{gateway}/state"
    messages = []
    for device in devices:
        node = f"borne_{device.device_id}"
        base_topic = f"{prefix}/{device.site}/{device.name}"
        ha_device = {
            "identifiers": [node],
            "name": f"{device.site} {device.name}",
            "manufacturer": "Borne",
            "model": "LoRa node",
            "suggested_area": area_name(device.facility or device.site),
            "via_device": gateway_identifier(gateway),
        }
        common = {"availability_topic": availability, "device": ha_device}
        for field in device.sensors:
            name, device_class, unit, state_class, icon = SENSORS[field]
            config = {
                "name": name,
                "unique_id": f"{node}_{field}",
                "state_topic": f"{base_topic}/telemetry",
                "value_template": field_template(field),
                "state_class": state_class,
                "expire_after": MISSED_REPORTS * device.report_interval_s,
                **common,
            }
            config.update(
                {
                    k: v
                    for k, v in {"device_class": device_class, "unit_of_measurement": unit, "icon": icon}.items()
                    if v
                }
            )
            messages.append(_config_message(discovery_prefix, "sensor", f"{node}/{field}", config))
        status_topic = f"{base_topic}/status"
        status_expiry = MISSED_REPORTS * device.status_interval_s
        for field, name in {**STATUS_SENSORS, **(READER_SENSORS if device.nfc else {})}.items():
            # The errors and drops count since the node's boot, from 0 again after a reboot, which is
            # what total_increasing means to Home Assistant's statistics; the queue's depth goes up and down.
            state_class = "measurement" if field == "queue_depth" else "total_increasing"
            config = _status_sensor(
                node, status_topic, field, name, field_template(field),
                state_class=state_class, expire_after=status_expiry, **common,
            )  # fmt: skip
            messages.append(_config_message(discovery_prefix, "sensor", f"{node}/{field}", config))
        for key, (name, device_class, unit) in SIGNAL_SENSORS.items():
            config = _status_sensor(
                node, status_topic, key, name, best_reception_template(key),
                state_class="measurement", unit_of_measurement=unit, expire_after=status_expiry, **common,
                **({"device_class": device_class} if device_class else {}),
            )  # fmt: skip
            messages.append(_config_message(discovery_prefix, "sensor", f"{node}/{key}", config))
        # No expire_after: the one config a new firmware changes must not blank its sensor.
        with_version = {"sw_version": firmware[device.device_id]} if device.device_id in firmware else {}
        config = _status_sensor(
            node, status_topic, "firmware", "Firmware", field_template("firmware"),
            icon="mdi:chip", **(common | {"device": ha_device | with_version}),
        )  # fmt: skip
        messages.append(_config_message(discovery_prefix, "sensor", f"{node}/firmware", config))
        if device.nfc:
            tag = {
                "topic": f"{base_topic}/checkin",
                "value_template": "{{ value_json.badge_token }}",
                "device": ha_device,
            }
            messages.append(_config_message(discovery_prefix, "tag", node, tag))
    return messages


def _status_sensor(node: str, status_topic: str, key: str, name: str, template: str, **fields: Any) -> dict:
    """The config of one of a node's diagnostic sensors read from its status topic, `fields` added."""
    return {
        "name": name,
        "unique_id": f"{node}_{key}",
        "state_topic": status_topic,
        "value_template": template,
        "entity_category": "diagnostic",
        **fields,
    }


def gateway_discovery_messages(
    gateway: str, prefix: str, discovery_prefix: str, stats_interval_s: int
) -> list[tuple[str, str]]:
    """(topic, retained payload) of the gateway's own device: its connection and its stats."""
    identifier = gateway_identifier(gateway)
    state_topic = f"{prefix}/gateway/{gateway}/state"
    stats_topic = f"{prefix}/gateway/{gateway}/stats"
    ha_device = {
        "identifiers": [identifier],
        "name": f"Borne gateway {gateway}",
        "manufacturer": "Borne",
        "model": "Gateway",
    }
    online = {
        "name": "Online",
        "unique_id": f"{identifier}_online",
        "state_topic": state_topic,
        "payload_on": "online",
        "payload_off": "offline",
        "device_class": "connectivity",
        "entity_category": "diagnostic",
        "device": ha_device,
    }
    messages = [_config_message(discovery_prefix, "binary_sensor", f"{identifier}/online", online)]
    # Stats templates read counters that exist from the first stats message on; a pipeline
    # counter appears only once it counted something, hence its default.
    stats = {
        "outbox_depth": ("Outbox depth", "{{ value_json.outbox_depth }}", "measurement", "mdi:tray-full"),
        "frames_received": (
            "Frames received",
            "{{ value_json.pipeline.get('receptions', 0) }}",
            "total_increasing",
            "mdi:radio-tower",
        ),
        "rejected": ("Rejected", "{{ value_json.rejected.values() | sum }}", "total_increasing", "mdi:cancel"),
    }
    for key, (name, template, state_class, icon) in stats.items():
        config = {
            "name": name,
            "unique_id": f"{identifier}_{key}",
            "state_topic": stats_topic,
            "value_template": template,
            "state_class": state_class,
            "icon": icon,
            "entity_category": "diagnostic",
            "expire_after": MISSED_REPORTS * stats_interval_s,
            "availability_topic": state_topic,
            "device": ha_device,
        }
        messages.append(_config_message(discovery_prefix, "sensor", f"{identifier}/{key}", config))
    return messages
