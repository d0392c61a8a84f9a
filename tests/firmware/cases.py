"""The calls the firmware answers in the VM, built from the shared vectors and payload_codec.

Each call has an `id`; tests look their call's answer up by it. Names become the codes the
firmware speaks through payload_codec's own tables, so no table is copied here.
"""

from __future__ import annotations

import json
import random
from typing import Any

from payload_codec import DOWN, CodecError, DeviceKeys, config_digest, encode_body, message_from_json
from payload_codec.bridge_link import TX_RESULTS
from payload_codec.frame import build_frame, open_frame
from payload_codec.schema import CONFIG_FIELDS, DIRECTIONS, RESET_CAUSES, TAG_TYPES, TELEMETRY_FIELDS, UID_LENGTHS
from tests.codec.vectors import known_answers, load

UPLINK_FILES = ("uplink_checkin.json", "uplink_telemetry.json", "uplink_status.json")
DOWNLINK_FILES = ("downlink_ack.json", "downlink_config.json")
ALL_FRAME_FILES = (*UPLINK_FILES, *DOWNLINK_FILES, "invalid_frames.json")
TYPE_CODES = {"ack": 4, "config": 5}
RANDOM_DOWNLINKS = 150  # seeded: the same frames on every run
NODE_KEYS = load("keys.json")[2]  # device 258, the device of the frame vectors


def _keys(case: dict) -> dict:
    keys = case["keys"] or {"mic_key": NODE_KEYS["mic_key"], "enc_key": NODE_KEYS["enc_key"]}
    return {"mic_key": keys["mic_key"], "enc_key": keys["enc_key"]}


def uplink_call(case: dict) -> dict:
    """The firmware call that should build `case`'s frame from its fields, keys and counter."""
    fields, flags = case["fields"], case["flags"]
    call: dict[str, Any] = {"device_id": case["device_id"], "counter": case["counter"], **_keys(case)}
    call["encrypt"] = flags["encrypted"]
    if case["type"] == "checkin":
        call["op"] = "checkin"
        call["ack"], call["time"] = flags["ack_requested"], flags["time_requested"]
        call["first_number"] = fields["first_number16"]
        call["events"] = [
            [
                DIRECTIONS.index(event.get("direction", "none")) << 6
                | TAG_TYPES.index(event.get("tag_type", "unknown")) << 2
                | UID_LENGTHS.index(event["uid_length"]),
                event["badge_token"],
                event["age_s"],
                not event.get("age_is_bound", False),
            ]
            for event in fields["checkins"]
        ]
    elif case["type"] == "telemetry":
        call["op"] = "telemetry"
        call["values"] = [fields.get(field.name) for field in TELEMETRY_FIELDS]
    else:
        call["op"] = "status"
        faults = sum(1 << [f.name for f in TELEMETRY_FIELDS].index(name) for name in fields.get("sensor_faults", []))
        call["args"] = [
            [int(part) for part in fields["firmware"].split(".")],
            fields["uptime_s"],
            RESET_CAUSES.index(fields.get("reset_cause", "unknown")),
            fields.get("queue_depth", 0),
            fields.get("checkins_dropped", 0),
            faults,
            fields.get("radio_errors", 0),
            fields.get("reader_errors", 0),
            fields.get("flash_errors", 0),
            fields.get("duty_cycle_deferrals", 0),
            fields.get("config_digest", 0),
            fields.get("next_downlink_counter", 0),
        ]
    return call


def downlink_call(frame_hex: str, keys: dict, last_counter: int | None, device_id: int | None = None) -> dict:
    """The firmware call that reads `frame_hex` as a downlink to the device it names."""
    raw = bytes.fromhex(frame_hex)
    if device_id is None:
        device_id = raw[1] | raw[2] << 8 if len(raw) >= 3 else NODE_KEYS["device_id"]
    return {"op": "downlink", "frame": frame_hex, "last_counter": last_counter, "device_id": device_id, **keys}


def codec_verdict(frame_hex: str, keys: dict | None, last_counter: int | None) -> dict:
    """What payload_codec makes of a frame read as a downlink, in the firmware's terms."""
    device_keys = None if keys is None else DeviceKeys(bytes.fromhex(keys["mic_key"]), bytes.fromhex(keys["enc_key"]))
    frame = open_frame(bytes.fromhex(frame_hex), device_keys, last_counter, direction=DOWN)
    if isinstance(frame, CodecError):
        return {"reason": frame.reason}
    return firmware_view(frame.msg_type, frame.counter, frame.encrypted, frame.message.to_json())


def firmware_view(msg_type: str, counter: int, encrypted: bool, fields: dict) -> dict:
    """A decoded downlink as Downlink.read leaves it: codes, not names, and every config slot."""
    view: dict[str, Any] = {"reason": None, "kind": TYPE_CODES[msg_type], "counter": counter, "encrypted": encrypted}
    if msg_type == "ack":
        view["acked_counter16"] = fields["acked_counter16"]
        view["gateway_time"] = fields.get("gateway_time")
    else:
        config = []
        for field in CONFIG_FIELDS:
            value = fields.get(field.name)
            config.append(field.enum.index(value) if field.enum and value is not None else value)
        view["config"] = config
        view["config_digest"] = config_digest(encode_body(message_from_json("config", fields)))
    return view


def random_downlinks(seed: int = 1) -> list[tuple[str, dict, int | None]]:
    """Downlinks built by payload_codec from random fields, some then damaged: (frame hex, keys, last)."""
    rng = random.Random(seed)
    keys = {"mic_key": NODE_KEYS["mic_key"], "enc_key": NODE_KEYS["enc_key"]}
    device_keys = DeviceKeys(bytes.fromhex(keys["mic_key"]), bytes.fromhex(keys["enc_key"]))
    cases = []
    for _ in range(RANDOM_DOWNLINKS):
        counter = rng.choice([rng.randrange(0, 1 << 16), rng.randrange(0, 1 << 32)])
        if rng.random() < 0.5:
            fields: dict[str, Any] = {"acked_counter16": rng.randrange(1 << 16)}
            if rng.random() < 0.5:
                fields["gateway_time"] = rng.randrange(1 << 32)
            msg_type = "ack"
        else:
            msg_type = "config"
            fields = {}
            while not fields:
                for field in CONFIG_FIELDS:
                    if rng.random() < 0.4:
                        fields[field.name] = _random_config_value(rng, field)
        message = message_from_json(msg_type, fields)
        raw = bytearray(build_frame(message, NODE_KEYS["device_id"], counter, device_keys, encrypt=rng.random() < 0.3))
        if rng.random() < 0.3:  # damage one byte: the MIC must catch it, or an earlier check
            raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
        last = rng.choice([None, counter - 1, counter - rng.randrange(1, 20000), counter, counter + 1])
        cases.append((raw.hex(), keys, None if last is None or last < 0 else last))
    return cases


def _random_config_value(rng: random.Random, field: Any) -> Any:
    if field.fmt is None:
        return True
    if field.enum:
        return rng.choice(field.enum)
    from payload_codec.messages import field_range

    low, high = field_range(field)
    return rng.randint(low, high)


def all_calls() -> list[dict]:
    """Every call of the session, each with its id: one VM run answers them all."""
    calls = []
    for name in UPLINK_FILES:
        for case in load(name):
            calls.append({"id": f"uplink/{case['name']}", **uplink_call(case)})
    for name in ALL_FRAME_FILES:
        for case in load(name):
            call = downlink_call(case["frame_hex"], _keys(case), case["last_counter"])
            if case["keys"] is None:  # no key for the device it names: a node that is someone else
                call["device_id"] ^= 1
            calls.append({"id": f"read/{case['name']}", **call})
    ack = load("downlink_ack.json")[0]
    calls.append({"id": "other_device", **downlink_call(ack["frame_hex"], _keys(ack), None, ack["device_id"] + 1)})
    for index, (frame_hex, keys, last) in enumerate(random_downlinks()):
        calls.append({"id": f"random/{index}", **downlink_call(frame_hex, keys, last, NODE_KEYS["device_id"])})
    for index, case in enumerate(known_answers()["aes_cmac"]["cases"]):
        calls.append({"id": f"cmac/{index}", "op": "cmac", "key": known_answers()["aes_cmac"]["key"], **case})
    for index, case in enumerate(known_answers()["hmac_sha256"]["cases"]):
        calls.append({"id": f"hmac/{index}", "op": "hmac", "key": case["key"], "data": case["data"]})
    for index, case in enumerate(load("badge_tokens.json")):
        calls.append({"id": f"badge/{index}", "op": "badge", "key": case["badge_key"], "uid": case["uid_hex"]})
    airtime_cases = load("airtime.json") + known_answers()["time_on_air"]["cases"]
    for index, case in enumerate(airtime_cases):
        calls.append(
            {
                "id": f"airtime/{index}",
                "op": "airtime",
                "size": case["payload_size"],
                "sf": case["spreading_factor"],
                "bw": case["bandwidth_hz"],
                "cr": case["coding_rate"],
            }
        )
    calls += [{"id": f"duty/{name}", "op": "duty", "steps": steps} for name, steps in DUTY_SCENARIOS.items()]
    calls.append({"id": "greedy", "op": "greedy", "frequency": G1_HZ, "frames": GREEDY_FRAMES})
    telemetry = load("uplink_telemetry.json")[0]
    calls.append(
        {
            "id": "heap",
            "op": "heap",
            "device_id": NODE_KEYS["device_id"],
            **_keys(telemetry),
            "token": "ef2c98a173e90281",
            "values": uplink_call(telemetry)["values"],
            "ack_frame": load("downlink_ack.json")[0]["frame_hex"],
        }
    )
    for case in load("bridge_link.json"):
        calls.append({"id": f"record/{case['name']}", "op": "record", "record": case["record_hex"]})
        packed = bridge_record_values(case)
        if packed is not None:
            calls.append({"id": f"pack/{case['name']}", "op": "pack", **packed})
    for name, (retap_ms, steps, _) in PRESENTATIONS.items():
        calls.append({"id": f"presentations/{name}", "op": "presentations", "retap_ms": retap_ms, "steps": steps})
    return calls


def bridge_record_values(case: dict) -> dict | None:
    """The values the bridge packs (a layout of borne.link_contract) for a record it sends; None for others."""
    if not case["valid"]:
        return None
    f = case["fields"]
    if case["kind"] == "received":
        values = [1, f["frequency_hz"], f["spreading_factor"], f["bandwidth_hz"], f["coding_rate"], f["rssi_dbm"]]
        values += [round(f["snr_db"] * 4), f["timestamp_us"]]
        return {"layout": "RECEIVED_LAYOUT", "values": values, "tail": f["frame"]}
    if case["kind"] == "transmit_result":
        values = [3, f["tx_id"], TX_RESULTS.index(f["result"]), f["airtime_us"]]
        return {"layout": "TRANSMIT_RESULT_LAYOUT", "values": values, "tail": ""}
    if case["kind"] == "heartbeat":
        names = ("link_version", "firmware_major", "firmware_minor", "firmware_patch", "uptime_s", "received")
        names += ("transmitted", "radio_errors", "records_dropped")
        return {"layout": "HEARTBEAT_LAYOUT", "values": [4, *(f[name] for name in names)], "tail": ""}
    return None  # transmit requests come from the gateway; the bridge sends no log record


# Badge polls: (retap delay ms, steps, the check-ins expected: True, False, or None for an empty poll).
A, B = "a1a1a1a1a1a1a1a1", "b2b2b2b2b2b2b2b2"
PRESENTATIONS = {
    "a_badge_held_on_the_reader_is_one_checkin": (
        10_000,
        [["seen", A, 0], ["seen", A, 150], ["seen", A, 300], ["seen", A, 5_000]],
        [True, False, False, False],
    ),
    "a_retap_within_the_delay_is_not_a_checkin": (
        10_000,
        [["seen", A, 0], ["empty"], ["empty"], ["empty"], ["seen", A, 2_000]],
        [True, None, None, None, False],
    ),
    "a_retap_after_the_delay_is_a_checkin": (
        10_000,
        [["seen", A, 0], ["empty"], ["empty"], ["empty"], ["seen", A, 10_000]],
        [True, None, None, None, True],
    ),
    "a_missed_poll_does_not_end_a_presentation": (
        0,
        [["seen", A, 0], ["empty"], ["seen", A, 300], ["empty"], ["empty"], ["seen", A, 900]],
        [True, None, False, None, None, False],
    ),
    "another_badge_is_a_checkin_at_once": (
        10_000,
        [["seen", A, 0], ["seen", B, 150], ["seen", A, 300]],
        [True, True, False],
    ),
}


# Duty cycle: g1 (868.1 MHz) allows 1 %, g3 (869.525 MHz) 10 %. Steps: (what, frequency, µs, now ms).
G1_HZ = 868_100_000
G3_HZ = 869_525_000
DUTY_SCENARIOS = {
    "fresh_band_sends_at_once": [["wait", G1_HZ, 1_000_000, 0]],
    "a_burst_of_half_the_hour_budget_goes_at_once": [
        ["spend", G1_HZ, 17_000_000, 0],
        ["wait", G1_HZ, 1_000_000, 0],
    ],
    "past_the_burst_a_frame_waits_for_its_refill": [
        ["spend", G1_HZ, 18_000_000, 0],
        ["wait", G1_HZ, 1_000_000, 0],  # 1 s of air at 0.5 %/h refill: 200 s
        ["wait", G1_HZ, 1_000_000, 100_000],  # half refilled
        ["wait", G1_HZ, 1_000_000, 200_000],
    ],
    "channels_share_their_sub_band_budget_and_other_sub_bands_keep_theirs": [
        ["spend", G1_HZ, 18_000_000, 0],
        ["wait", 868_300_000, 1_000_000, 0],
        ["wait", G3_HZ, 1_000_000, 0],
    ],
    "an_hour_idle_refills_the_bucket": [
        ["spend", G1_HZ, 18_000_000, 0],
        ["wait", G1_HZ, 18_000_000, 3_600_000],
    ],
    "a_frame_longer_than_the_bucket_never_goes": [["wait", 868_900_000, 2_000_000, 0]],
    "a_frequency_outside_eu868_is_refused": [["wait", 915_000_000, 1_000, 0]],
}
DUTY_EXPECTED = {
    "fresh_band_sends_at_once": [0],
    "a_burst_of_half_the_hour_budget_goes_at_once": [0],
    "past_the_burst_a_frame_waits_for_its_refill": [200_000, 100_000, 0],
    "channels_share_their_sub_band_budget_and_other_sub_bands_keep_theirs": [200_000, 0],
    "an_hour_idle_refills_the_bucket": [0],
    "a_frame_longer_than_the_bucket_never_goes": ["ValueError: frame longer than the duty cycle allows"],
    "a_frequency_outside_eu868_is_refused": ["ValueError: frequency outside EU868 sub-bands"],
}
# Frames sent back to back for three hours' worth of budget: SF7 to SF12 airtimes, in µs.
GREEDY_FRAMES = [[46_336, 82_432, 164_864, 288_768, 577_536, 1_155_072][i % 6] for i in range(400)]


def dump(calls: list[dict]) -> str:
    return json.dumps(calls, separators=(",", ":"))
