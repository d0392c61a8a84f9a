"""What an accepted uplink becomes in the outbox: the MQTT payloads, byte for byte."""

from __future__ import annotations

import dataclasses
import json

import jsonschema
import pytest

from boards.registry import Device
from gateway_daemon.events import events_of
from gateway_daemon.sources import Reception
from payload_codec import AGE_MAX_S, CodecError, derive_device_keys, open_frame
from payload_codec.vectorgen import DEVICE_ID, TEST_MASTER_KEY

from ..codec.vectors import direction_of, frame_cases, keys_of
from .site import schema

DEVICE = Device(
    device_id=DEVICE_ID,
    name="door-258",
    site="ecole-jaures",
    facility="school",
    keys=derive_device_keys(TEST_MASTER_KEY, DEVICE_ID),
)
HEARD_AT = 1_796_083_200.25
UPLINKS = [case for case in frame_cases() if case["valid"] and case["direction"] == "up"]


def reception(frame: bytes) -> Reception:
    return Reception(
        frame=frame,
        source="sim",
        received_at=HEARD_AT,
        frequency_hz=868_100_000,
        spreading_factor=9,
        bandwidth_hz=125_000,
        rssi_dbm=-97.0,
        snr_db=6.25,
        timestamp_us=1234,
    )


def outbox_of(case: dict) -> list:
    raw = bytes.fromhex(case["frame_hex"])
    frame = open_frame(raw, keys_of(case), case["last_counter"], direction_of(case))
    assert not isinstance(frame, CodecError), frame
    return events_of(frame, DEVICE, [reception(raw)], "gw-1", "borne")


def case_named(name: str) -> dict:
    return next(case for case in UPLINKS if case["name"] == name)


@pytest.mark.parametrize("case", UPLINKS, ids=lambda case: case["name"])
def test_an_event_carries_the_vector_fields_byte_for_byte_and_validates(case):
    events = outbox_of(case)
    bodies = case["fields"]["checkins"] if case["type"] == "checkin" else [case["fields"]]
    assert len(events) == len(bodies)
    for event, fields in zip(events, bodies, strict=True):
        payload = json.loads(event.payload)
        expected = {"event_id": payload["event_id"], "time": payload["time"]}
        if case["type"] == "checkin":
            # On MQTT a check-in's age bound is said of its time; an age that saturated is a bound too.
            fields = {**fields, "time_is_bound": fields["age_is_bound"] or fields["age_s"] == AGE_MAX_S}
            del fields["age_is_bound"]
            expected["number"] = payload["number"]
        expected.update(fields)
        expected.update((key, payload[key]) for key in list(payload)[len(expected) :])
        assert event.payload == json.dumps(expected, ensure_ascii=False)
        assert (event.kind, event.topic) == (case["type"], f"borne/ecole-jaures/door-258/{case['type']}")
        jsonschema.validate(payload, schema(case["type"]))


# Published before message bodies were typed; consumers parse exactly this.
RECEPTIONS = (
    '"receptions": [{"source": "sim", "received_at": 1796083200.25, "frequency_hz": 868100000,'
    ' "spreading_factor": 9, "bandwidth_hz": 125000, "rssi_dbm": -97.0, "snr_db": 6.25}]}'
)


def test_a_check_in_batch_gives_one_event_per_check_in_identified_by_its_number_and_dated_by_its_age():
    events = outbox_of(case_named("checkin_batch_2"))
    assert [event.event_id for event in events] == ["258:checkin:2", "258:checkin:3"]
    assert [event.checkin_number for event in events] == [2, 3]
    assert events[1].payload == (
        '{"event_id": "258:checkin:3", "time": "2026-11-30T23:59:38.250Z", "number": 3,'
        ' "badge_token": "1a23c7aef9d798e4", "tag_type": "mifare_classic", "direction": "in", "uid_length": 7,'
        ' "age_s": 22, "time_is_bound": false, "gateway": "gw-1",'
        ' "site": "ecole-jaures", "device": "door-258", "device_id": 258, "facility": "school", "counter": 1002, '
        + RECEPTIONS
    )


def test_a_check_in_whose_age_crossed_a_reboot_is_published_with_its_time_as_a_bound():
    events = outbox_of(case_named("checkin_ages_across_a_reboot_are_bounds"))
    assert [json.loads(event.payload)["time_is_bound"] for event in events] == [True, True, False]


def test_a_check_in_whose_age_saturated_is_published_with_its_time_as_a_bound():
    # 23.1 days is the longest age a frame carries: one that waited longer is sent with it.
    (saturated,) = outbox_of(case_named("checkin_age_1998788s"))
    (younger,) = outbox_of(case_named("checkin_age_86408s"))
    saturated, younger = json.loads(saturated.payload), json.loads(younger.payload)
    assert saturated["age_s"] == AGE_MAX_S
    assert (saturated["time_is_bound"], younger["time_is_bound"]) == (True, False)


def test_telemetry_publishes_only_the_fields_the_board_has():
    (event,) = outbox_of(case_named("telemetry_only_co2_ppm"))
    assert event.payload == (
        '{"event_id": "258:3103", "time": "2026-12-01T00:00:00.250Z", "co2_ppm": 612, "gateway": "gw-1",'
        ' "site": "ecole-jaures", "device": "door-258", "device_id": 258, "facility": "school", "counter": 3103, '
        + RECEPTIONS
    )


def test_status_publishes_every_counter_and_the_faulty_sensors_by_name():
    (event,) = outbox_of(case_named("status_reset_watchdog"))
    assert event.payload == (
        '{"event_id": "258:4003", "time": "2026-12-01T00:00:00.250Z", "firmware": "1.3.9", "uptime_s": 10807,'
        ' "reset_cause": "watchdog", "sensor_faults": ["temperature_c", "humidity_pct"], "queue_depth": 6,'
        ' "checkins_dropped": 1, "radio_errors": 3, "reader_errors": 6, "flash_errors": 9, "duty_cycle_deferrals": 15,'
        ' "config_digest": 13107, "next_downlink_counter": 3001, "gateway": "gw-1", "site": "ecole-jaures",'
        ' "device": "door-258", "device_id": 258, "facility": "school",'
        ' "counter": 4003, ' + RECEPTIONS
    )


@pytest.mark.parametrize("name", ["status_reset_watchdog", "checkin_batch_2"])
def test_a_device_in_a_new_key_epoch_has_event_ids_of_its_own(name):
    """Counters and check-in numbers start over in a new key epoch: its events must not pass for copies."""
    case = case_named(name)
    raw = bytes.fromhex(case["frame_hex"])
    frame = open_frame(raw, keys_of(case), case["last_counter"], direction_of(case))
    assert not isinstance(frame, CodecError), frame
    epoch_0 = events_of(frame, DEVICE, [reception(raw)], "gw-1", "borne")
    rekeyed = dataclasses.replace(DEVICE, key_epoch=1)
    epoch_1 = events_of(frame, rekeyed, [reception(raw)], "gw-1", "borne")
    assert [event.event_id for event in epoch_1] == [
        event.event_id.replace(f"{DEVICE_ID}:", f"{DEVICE_ID}e1:", 1) for event in epoch_0
    ]
    for event in epoch_1:
        jsonschema.validate(json.loads(event.payload), schema(event.kind))
