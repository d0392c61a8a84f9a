"""What an accepted frame becomes on MQTT: one message per event, with a stable id.

Topics: `<prefix>/<site>/<device>/{checkin,telemetry,status}`. A message holds its
event id and time, then the JSON form of the typed message (one `Checkin` of a batch,
a `Telemetry`, a `Status`), then where it was heard: it names the gateway that heard
it and carries every reception's metadata. `event_id` is `<device>:<counter>` for
telemetry and status, `<device>:checkin:<number>` for a check-in (its node-side
number, whichever frame carried it): the same whichever gateway publishes it, so
consumers of a clustered broker drop what two gateways both heard. `<device>` is the
device id, followed by `e<key epoch>` from epoch 1 on: counters and check-in numbers
start over in a new key epoch, and its events must not pass for copies of old ones.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from boards.registry import Device
from payload_codec import AGE_MAX_S, CheckinBatch, Frame

from .sources import Reception
from .state import OutboxEvent


def iso_time(unix_s: float) -> str:
    return datetime.fromtimestamp(unix_s, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def device_topic(prefix: str, device: Device, kind: str) -> str:
    return f"{prefix}/{device.site}/{device.name}/{kind}"


def events_of(
    frame: Frame,
    device: Device,
    receptions: list[Reception],
    gateway: str,
    prefix: str,
    first_checkin_number: int | None = None,
) -> list[OutboxEvent]:
    """The outbox events of an accepted uplink (one per check-in of a batch).

    `first_checkin_number` is the full number of a check-in frame's first check-in
    (`counter.resolve_checkin_number`); the others follow on from it.
    """
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
    source = f"{device.device_id}e{device.key_epoch}" if device.key_epoch else str(device.device_id)
    frame_id = f"{source}:{frame.counter}"
    message = frame.message
    topic = device_topic(prefix, device, frame.msg_type)
    if not isinstance(message, CheckinBatch):
        payload = {"event_id": frame_id, "time": iso_time(heard_at), **message.to_json(), **common}
        return [OutboxEvent(frame_id, frame.msg_type, topic, json.dumps(payload, ensure_ascii=False))]
    if first_checkin_number is None:
        first_checkin_number = message.first_number16
    events = []
    for index, checkin in enumerate(message.checkins):
        number = first_checkin_number + index
        event_id = f"{source}:checkin:{number}"
        fields = checkin.to_json()
        # The node has no clock: each check-in happened its age_s before the frame was heard, or
        # earlier still when the age crossed a reboot of the node (the time it was off is unknown),
        # or when it reached the longest age the frame carries (it saturates there, at 23.1 days).
        fields["time_is_bound"] = fields.pop("age_is_bound") or checkin.age_s >= AGE_MAX_S
        payload = {"event_id": event_id, "time": iso_time(heard_at - checkin.age_s), "number": number}
        payload.update(fields)
        payload.update(common)
        events.append(
            OutboxEvent(event_id, frame.msg_type, topic, json.dumps(payload, ensure_ascii=False), checkin_number=number)
        )
    return events
