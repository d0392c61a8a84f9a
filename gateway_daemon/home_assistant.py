"""Home Assistant MQTT discovery: every registered device appears by itself.

Configs are retained and republished whenever Home Assistant announces `online`.
Availability follows the gateway's state topic; battery nodes also expire after
three missed reports. Badge readers become MQTT tag scanners, so a check-in is a
`tag_scanned` event keyed by the badge token (never a UID).
"""

from __future__ import annotations

import json

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
}


def discovery_messages(
    devices: list[Device], gateway: str, prefix: str, discovery_prefix: str
) -> list[tuple[str, str]]:
    """(topic, retained payload) of every discovery config for these devices."""
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
            "suggested_area": device.facility or device.site,
            "via_device": f"borne_gateway_{gateway}",
        }
        common = {"availability_topic": availability, "device": ha_device}
        if device.battery:
            common["expire_after"] = 3 * device.report_interval_s
        for field in device.sensors:
            name, device_class, unit, state_class, icon = SENSORS[field]
            config = {
                "name": name,
                "unique_id": f"{node}_{field}",
                "state_topic": f"{base_topic}/telemetry",
                "value_template": f"{{{{ value_json.{field} }}}}",
                "state_class": state_class,
                **common,
            }
            config.update(
                {
                    k: v
                    for k, v in {"device_class": device_class, "unit_of_measurement": unit, "icon": icon}.items()
                    if v
                }
            )
            messages.append(
                (f"{discovery_prefix}/sensor/{node}/{field}/config", json.dumps(config, ensure_ascii=False))
            )
        for field, name in STATUS_SENSORS.items():
            config = {
                "name": name,
                "unique_id": f"{node}_{field}",
                "state_topic": f"{base_topic}/status",
                "value_template": f"{{{{ value_json.{field} }}}}",
                "entity_category": "diagnostic",
                "state_class": "measurement",
                **common,
            }
            messages.append(
                (f"{discovery_prefix}/sensor/{node}/{field}/config", json.dumps(config, ensure_ascii=False))
            )
        if device.nfc:
            tag = {
                "topic": f"{base_topic}/checkin",
                "value_template": "{{ value_json.badge_token }}",
                "device": ha_device,
            }
            messages.append((f"{discovery_prefix}/tag/{node}/config", json.dumps(tag, ensure_ascii=False)))
    return messages
