"""What an accepted frame becomes on MQTT: one message per event, with a stable id.

Topics: `<prefix>/<site>/<device>/{checkin,telemetry,status}`. Every message names
the gateway that heard it and carries every reception's metadata; `event_id`
(`<device id>:<counter>[:<index>]`) is the same whichever gateway publishes it, so
consumers of a clustered broker drop what two gateways both heard.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from boards.registry import Device
from payload_codec import Frame

from .sources import Reception
from .state import OutboxEvent


def iso_time(unix_s: float) -> str:
    return datetime.fromtimestamp(unix_s, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def device_topic(prefix: str, device: Device, kind: str) -> str:
    return f"{prefix}/{device.site}/{device.name}/{kind}"


def events_of(
    frame: Frame, device: Device, receptions: list[Reception], gateway: str, prefix: str
) -> list[OutboxEvent]:
    """The outbox events of an accepted uplink (one per check-in of a batch)."""
    heard_at = min(r.received_at for r in receptions)
    common = {
        "gateway": gateway,
        "site": device.site,
        "device": device.name,
        "device_id": device.device_id,
        "facility": device.facility,
        "counter": frame.counter,
        "receptions": [r.metadata() for r in receptions],
    }
    topic = device_topic(prefix, device, frame.msg_type)
    if frame.msg_type == "checkin":
        events = []
        for index, checkin in enumerate(frame.fields["checkins"]):
            event_id = f"{device.device_id}:{frame.counter}:{index}"
            # The node has no clock: the event happened age_s before the frame was heard.
            payload = {"event_id": event_id, "time": iso_time(heard_at - checkin["age_s"]), **checkin, **common}
            events.append(OutboxEvent(event_id, "checkin", topic, json.dumps(payload, ensure_ascii=False)))
        return events
    event_id = f"{device.device_id}:{frame.counter}"
    payload = {"event_id": event_id, "time": iso_time(heard_at), **frame.fields, **common}
    return [OutboxEvent(event_id, frame.msg_type, topic, json.dumps(payload, ensure_ascii=False))]
