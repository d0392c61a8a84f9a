"""What an accepted frame becomes on MQTT: one message per event, with a stable id.

Topics: `<prefix>/<site>/<device>/{checkin,telemetry,status}`. Every message names
the gateway that heard it and carries every reception's metadata; `event_id`
(`<device id>:<counter>[:<index>]`) is the same whichever gateway publishes it, so
consumers of a clustered broker drop what two gateways both heard.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

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
    kind = frame.msg_type
    topic = device_topic(prefix, device, kind)
    message = frame.message
    if isinstance(message, CheckinBatch):
        # The node has no clock: each check-in happened its age_s before the frame was heard.
        return [
            _event(
                f"{device.device_id}:{frame.counter}:{index}",
                kind,
                topic,
                heard_at - checkin.age_s,
                checkin.to_json(),
                common,
            )
            for index, checkin in enumerate(message.checkins)
        ]
    return [_event(f"{device.device_id}:{frame.counter}", kind, topic, heard_at, message.to_json(), common)]


def _event(
    event_id: str, kind: str, topic: str, time: float, fields: JsonObject, common: dict[str, Any]
) -> OutboxEvent:
    payload = {"event_id": event_id, "time": iso_time(time), **fields, **common}
    return OutboxEvent(event_id, kind, topic, json.dumps(payload, ensure_ascii=False))
