"""What an accepted frame becomes on MQTT: one message per event, with a stable id.

Topics: `<prefix>/<site>/<device>/{checkin,telemetry,status}`. A message holds its
event id and time, then the JSON form of the typed message (one `Checkin` of a batch,
a `Telemetry`, a `Status`), then where it was heard: it names the gateway that heard
it and carries every reception's metadata; `event_id`
(`<device id>:<counter>[:<index>]`) is the same whichever gateway publishes it, so
consumers of a clustered broker drop what two gateways both heard.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from boards.registry import Device
from payload_codec import CheckinBatch, Frame
from payload_codec.messages import JsonObject

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
    frame_id = f"{device.device_id}:{frame.counter}"
    message = frame.message
    events: list[tuple[str, float, JsonObject]]  # event id, when it happened, the message's fields
    if isinstance(message, CheckinBatch):
        # The node has no clock: each check-in happened its age_s before the frame was heard.
        events = [
            (f"{frame_id}:{index}", heard_at - checkin.age_s, checkin.to_json())
            for index, checkin in enumerate(message.checkins)
        ]
    else:
        events = [(frame_id, heard_at, message.to_json())]
    topic = device_topic(prefix, device, frame.msg_type)
    return [
        OutboxEvent(
            event_id,
            frame.msg_type,
            topic,
            json.dumps({"event_id": event_id, "time": iso_time(happened_at), **fields, **common}, ensure_ascii=False),
        )
        for event_id, happened_at, fields in events
    ]
