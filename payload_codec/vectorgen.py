"""The shared test vectors: generated here, checked by every runtime, never edited by hand.

`borne codec vectors` writes them to `payload_codec/vectors/`; the tests regenerate
them and fail if the files differ, so a change of the contract shows in review as a
change of these files. All keys are test keys derived from TEST_MASTER_KEY.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from . import airtime, bridge_link
from .counter import (
    ALL_SEEN,
    MAX_COUNTER_GAP,
    WINDOW_SIZE,
    resolve_checkin_number,
    resolve_counter,
    resolve_full_counter,
    slide_window,
)
from .crypto import DOWN, KEY_SIZE, UP, badge_token, derive_badge_key, derive_device_keys, key_context
from .frame import build_frame, seal_body
from .messages import Ack, CheckinBatch, Telemetry, config_digest, encode_body, message_from_json
from .schema import (
    AGE_MAX_S,
    AGE_SECONDS_LIMIT,
    CONFIG_FIELDS,
    DIRECTIONS,
    FLAG_ACK_REQUESTED,
    MAX_CHECKINS,
    MAX_FRAME_SIZE,
    RESET_CAUSES,
    STATUS_SIZE,
    TAG_TYPES,
    TELEMETRY_FIELDS,
    TYPE_BY_CODE,
    TYPE_BY_NAME,
    VERSION,
)

VECTORS_DIR = Path(__file__).parent / "vectors"
TEST_MASTER_KEY = bytes(range(16))
DEVICE_ID = 0x0102
TEST_UIDS = ("04a1b2c3", "04a1b2c3d4e5f6", "04a1b2c3d4e5f6071829")


def _keys_json(device_id: int, key_epoch: int = 0) -> dict[str, str]:
    keys = derive_device_keys(TEST_MASTER_KEY, device_id, key_epoch)
    return {"mic_key": keys.mic_key.hex(), "enc_key": keys.enc_key.hex()}


def _frame_case(
    name: str,
    msg_type: str,
    fields: dict,
    counter: int,
    *,
    device_id: int = DEVICE_ID,
    encrypt: bool | None = None,
    ack_requested: bool = False,
    time_requested: bool = False,
    last_counter: int | None = None,
    key_epoch: int = 0,
) -> dict[str, Any]:
    kind = TYPE_BY_NAME[msg_type]
    keys = derive_device_keys(TEST_MASTER_KEY, device_id, key_epoch)
    message = message_from_json(msg_type, fields)
    frame = build_frame(
        message,
        device_id,
        counter,
        keys,
        encrypt=encrypt,
        ack_requested=ack_requested,
        time_requested=time_requested,
    )
    encrypted = kind.encrypted_by_default if encrypt is None else encrypt
    return {
        "name": name,
        "direction": "up" if kind.direction == UP else "down",
        "type": msg_type,
        "fport": kind.code,
        "device_id": device_id,
        "counter": counter,
        "last_counter": last_counter,
        "flags": {"encrypted": encrypted, "ack_requested": ack_requested, "time_requested": time_requested},
        "fields": message.to_json(),
        "body_hex": encode_body(message).hex(),
        "frame_hex": frame.hex(),
        "size": len(frame),
        "valid": True,
        "error": None,
        "keys": _keys_json(device_id, key_epoch),
    }


def _checkins(first_number16: int, events: list[dict[str, Any]]) -> dict[str, Any]:
    return {"first_number16": first_number16, "checkins": events}


def _checkin(index: int, age_s: int, uid: str = TEST_UIDS[1], *, age_is_bound: bool = False) -> dict[str, Any]:
    badge_key = derive_badge_key(TEST_MASTER_KEY)
    uid_bytes = bytes.fromhex(uid)
    # Vary the badge per event so a batch is not one token repeated.
    uid_bytes = uid_bytes[:-1] + bytes([(uid_bytes[-1] + index) & 0xFF])
    return {
        "badge_token": badge_token(badge_key, uid_bytes).hex(),
        "tag_type": TAG_TYPES[index % len(TAG_TYPES)],
        "direction": DIRECTIONS[index % len(DIRECTIONS)],
        "uid_length": len(uid_bytes),
        "age_s": age_s,
        "age_is_bound": age_is_bound,
    }


def checkin_cases() -> list[dict]:
    # Numbered on from case to case: heard in order by one gateway, the vectors are the check-ins
    # of one node, each published once.
    following = [1]

    def numbered(events: list[dict[str, Any]]) -> dict[str, Any]:
        first = following[0]
        following[0] += len(events)
        return _checkins(first, events)

    cases = [
        _frame_case(
            f"checkin_batch_{n}",
            "checkin",
            numbered([_checkin(i, 5 + 17 * i) for i in range(n)]),
            1000 + n,
            ack_requested=True,
        )
        for n in range(1, MAX_CHECKINS + 1)
    ]
    cases.append(_frame_case("checkin_plain", "checkin", numbered([_checkin(3, 42)]), 2001, encrypt=False))
    cases.append(
        _frame_case(
            "checkin_time_requested",
            "checkin",
            numbered([_checkin(1, 0)]),
            2002,
            ack_requested=True,
            time_requested=True,
        )
    )
    for index, tag_type in enumerate(TAG_TYPES):
        cases.append(_frame_case(f"checkin_tag_{tag_type}", "checkin", numbered([_checkin(index, 1)]), 2100 + index))
    for uid in TEST_UIDS:
        event = _checkin(0, 60, uid)
        cases.append(_frame_case(f"checkin_uid_{len(uid) // 2}_bytes", "checkin", numbered([event]), 2200 + len(uid)))
    ages = [
        0,
        AGE_SECONDS_LIMIT - 1,
        AGE_SECONDS_LIMIT,
        AGE_SECONDS_LIMIT + 60,
        AGE_SECONDS_LIMIT + 894 * 60,
        AGE_MAX_S,
    ]
    for age in ages:
        cases.append(
            _frame_case(f"checkin_age_{age}s", "checkin", numbered([_checkin(2, age)]), 2300 + ages.index(age))
        )
    # The age of a check-in queued before a power cut of the node leaves out the time it was off.
    cases.append(
        _frame_case(
            "checkin_ages_across_a_reboot_are_bounds",
            "checkin",
            numbered([_checkin(0, 4000, age_is_bound=True), _checkin(1, 3990, age_is_bound=True), _checkin(2, 7)]),
            2400,
            ack_requested=True,
        )
    )
    cases.append(
        _frame_case(
            "checkin_counter_above_16_bits",
            "checkin",
            numbered([_checkin(4, 9)]),
            0x0001_0005,
            last_counter=0x0000_FFF0,
        )
    )
    # The first check-in numbered 65535: the next ones are 65536 and 65537, sent as 0 and 1 if first.
    cases.append(
        _frame_case(
            "checkin_number_wrapping_16_bits",
            "checkin",
            _checkins(0xFFFF, [_checkin(i, 30 - i) for i in range(3)]),
            0x0001_0006,
            ack_requested=True,
            last_counter=0x0001_0005,
        )
    )
    return cases


def _number_case(name: str, last_published: int | None, first_number: int, count: int) -> dict[str, Any]:
    """A check-in frame's numbers as a receiver that published up to `last_published` resolves them."""
    first = resolve_checkin_number(last_published, first_number & 0xFFFF)
    return {
        "name": name,
        "last_published": last_published,
        "first_number16": first_number & 0xFFFF,
        "count": count,
        "numbers": list(range(first, first + count)),
    }


def number_cases() -> list[dict]:
    """Check-in numbers (counter.resolve_checkin_number): the full numbers of a frame's check-ins."""
    return [
        _number_case("first_frame_ever", None, 5, 3),
        _number_case("next_after_the_last_published", 41, 42, 2),
        _number_case("retry_of_numbers_already_published", 44, 42, 4),
        _number_case("numbers_skipped_by_a_full_queue", 100, 400, 1),
        _number_case("first_number_wrapping_16_bits", 0xFFFE, 0xFFFF, 3),
        _number_case("next_past_the_wrap", 0x1_0001, 0x1_0002, 1),
        _number_case("retry_from_before_the_wrap", 0x1_0001, 0xFFFD, 6),
        _number_case("farthest_ahead", 1000, 1000 + 0x7FFF, 1),
        _number_case("farthest_behind", 0x2_0000, 0x2_0000 - 0x8000, 1),
        _number_case("never_below_zero", 3, 0xFFF0, 1),
    ]


TELEMETRY_SAMPLE = {
    "temperature_c": 21.53,
    "humidity_pct": 45.5,
    "pressure_hpa": 1013.2,
    "co2_ppm": 612,
    "voc_index": 100,
    "meter_pulses": 123456,
    "battery_mv": 3700,
}


def telemetry_cases() -> list[dict]:
    five = {
        name: TELEMETRY_SAMPLE[name]
        for name in ("temperature_c", "humidity_pct", "pressure_hpa", "co2_ppm", "battery_mv")
    }
    cases = [
        _frame_case("telemetry_5_values", "telemetry", five, 3000),
        _frame_case("telemetry_all_fields", "telemetry", TELEMETRY_SAMPLE, 3001),
        _frame_case("telemetry_encrypted", "telemetry", five, 3002, encrypt=True),
        _frame_case(
            "telemetry_low_extremes",
            "telemetry",
            {
                "temperature_c": -327.68,
                "humidity_pct": 0.0,
                "pressure_hpa": 0.0,
                "co2_ppm": 0,
                "voc_index": 0,
                "meter_pulses": 0,
                "battery_mv": 2000,
            },
            3003,
        ),
        _frame_case(
            "telemetry_high_extremes",
            "telemetry",
            {
                "temperature_c": 327.67,
                "humidity_pct": 100.0,
                "pressure_hpa": 6553.5,
                "co2_ppm": 65535,
                "voc_index": 500,
                "meter_pulses": 0xFFFFFFFF,
                "battery_mv": 4550,
            },
            3004,
        ),
    ]
    for bit, field in enumerate(TELEMETRY_FIELDS):
        cases.append(
            _frame_case(
                f"telemetry_only_{field.name}", "telemetry", {field.name: TELEMETRY_SAMPLE[field.name]}, 3100 + bit
            )
        )
    return cases


STATUS_SAMPLE = message_from_json(
    "status",
    {
        "firmware": "1.0.0",
        "uptime_s": 60,
        "reset_cause": "power_on",
        "sensor_faults": [],
        "queue_depth": 0,
        "checkins_dropped": 0,
        "radio_errors": 0,
        "reader_errors": 0,
        "flash_errors": 0,
        "duty_cycle_deferrals": 0,
        "next_downlink_counter": 0,
    },
)


def status_cases() -> list[dict]:
    cases = []
    for index, cause in enumerate(RESET_CAUSES):
        fields = {
            "firmware": f"1.{index}.{index * 3}",
            "uptime_s": 3600 * index + 7,
            "reset_cause": cause,
            "sensor_faults": [f.name for bit, f in enumerate(TELEMETRY_FIELDS) if (index >> bit) & 1],
            "queue_depth": index * 2,
            "checkins_dropped": index // 3,
            "radio_errors": index,
            "reader_errors": 2 * index,
            "flash_errors": 3 * index,
            "duty_cycle_deferrals": 5 * index,
            "config_digest": 0x1111 * index,
            "next_downlink_counter": 0 if index == 0 else 1000 * index + 1,
        }
        cases.append(_frame_case(f"status_reset_{cause}", "status", fields, 4000 + index))
    # A status frame carries its whole counter: a receiver without state learns one past 16 bits.
    fields = {**cases[1]["fields"], "uptime_s": 90}
    cases.append(_frame_case("status_full_counter_past_16_bits", "status", fields, 0x0012_3456))
    cases.append(_frame_case("status_full_counter_after_a_long_silence", "status", fields, 200_000, last_counter=100))
    cases.append(_frame_case("status_of_a_re_keyed_device", "status", fields, 0, key_epoch=1))
    return cases


def ack_cases() -> list[dict]:
    return [
        _frame_case("ack_plain", "ack", {"acked_counter16": 1001}, 1),
        _frame_case("ack_with_time", "ack", {"acked_counter16": 2002, "gateway_time": 1796083200}, 2),
        _frame_case("ack_counter_wrapped", "ack", {"acked_counter16": 0x0005}, 0x0001_0003, last_counter=0x0000_FFFF),
        _frame_case("ack_encrypted", "ack", {"acked_counter16": 7}, 4, encrypt=True),
    ]


CONFIG_SAMPLE = {
    "report_interval_s": 300,
    "status_interval_s": 3600,
    "spreading_factor": 9,
    "tx_power_dbm": 14,
    "badge_retap_s": 10,
    "checkin_direction": "in",
    "reboot": True,
}


def config_cases() -> list[dict]:
    cases = [_frame_case("config_all_fields", "config", CONFIG_SAMPLE, 10)]
    for bit, field in enumerate(CONFIG_FIELDS):
        cases.append(
            _frame_case(f"config_only_{field.name}", "config", {field.name: CONFIG_SAMPLE[field.name]}, 20 + bit)
        )
    cases.append(_frame_case("config_negative_power", "config", {"tx_power_dbm": -9}, 30))
    for case in cases:  # what the node's next status reports once it applied the case
        case["config_digest"] = config_digest(bytes.fromhex(case["body_hex"]))
    return cases


def _error_case(
    name: str,
    error: str,
    frame: bytes,
    *,
    direction: int = UP,
    last_counter: int | None = None,
    keys_device: int | None = DEVICE_ID,
    body: bytes | None = None,
    fport: int | None = None,
) -> dict:
    return {
        "name": name,
        "direction": "up" if direction == UP else "down",
        "type": None if fport is None else TYPE_BY_CODE[fport].name,
        "fport": fport,
        "device_id": None,
        "counter": None,
        "last_counter": last_counter,
        "flags": None,
        "fields": None,
        "body_hex": None if body is None else body.hex(),
        "frame_hex": frame.hex(),
        "size": len(frame),
        "valid": False,
        "error": error,
        "keys": None if keys_device is None else _keys_json(keys_device),
    }


def error_cases() -> list[dict]:
    keys = derive_device_keys(TEST_MASTER_KEY, DEVICE_ID)
    five = {
        name: TELEMETRY_SAMPLE[name]
        for name in ("temperature_c", "humidity_pct", "pressure_hpa", "co2_ppm", "battery_mv")
    }
    good = build_frame(Telemetry.from_json(five), DEVICE_ID, 500, keys)
    checkin = build_frame(CheckinBatch.from_json(_checkins(1, [_checkin(0, 3)])), DEVICE_ID, 501, keys)
    telemetry, status, ack = TYPE_BY_NAME["telemetry"], TYPE_BY_NAME["status"], TYPE_BY_NAME["ack"]
    config = TYPE_BY_NAME["config"]
    checkin_kind = TYPE_BY_NAME["checkin"]
    # One check-in more than MAX_CHECKINS, each well formed: refused by its length alone.
    event = CheckinBatch.from_json(_checkins(0, [_checkin(0, 3)]))
    seventeen = encode_body(event)[:2] + encode_body(event)[2:] * (MAX_CHECKINS + 1)
    flipped = bytearray(good)
    flipped[6] ^= 0x01

    def sealed(kind, body: bytes, flags: int = 0) -> bytes:
        return seal_body(kind, flags, DEVICE_ID, 600, body, keys)

    cases = [
        _error_case("truncated_below_envelope", "truncated", good[:9]),
        _error_case(
            "truncated_below_full_counter_envelope", "truncated", build_frame(STATUS_SAMPLE, DEVICE_ID, 7, keys)[:11]
        ),
        _error_case("too_long_frame", "too_long", good[:5] + bytes(MAX_FRAME_SIZE + 1 - 5)),  # one byte over
        _error_case("unknown_version", "unknown_version", bytes([(VERSION + 1) << 6 | good[0] & 0x3F]) + good[1:]),
        _error_case("unknown_type_code_0", "unknown_type", bytes([VERSION << 6 | 0 << 3]) + good[1:]),
        _error_case("unknown_type_code_7", "unknown_type", bytes([VERSION << 6 | 7 << 3]) + good[1:]),
        _error_case(
            "downlink_heard_as_uplink",
            "wrong_direction",
            build_frame(Ack.from_json({"acked_counter16": 1}), DEVICE_ID, 9, keys),
        ),
        _error_case("uplink_heard_as_downlink", "wrong_direction", good, direction=DOWN),
        _error_case("unknown_device", "unknown_device", good, keys_device=None),
        _error_case("bad_mic_bit_flip", "bad_mic", bytes(flipped)),
        _error_case("bad_mic_wrong_key", "bad_mic", good, keys_device=DEVICE_ID + 1),
        _error_case("bad_mic_truncated_body", "bad_mic", checkin[:12] + checkin[-4:]),
        _error_case("replay_same_counter", "replay", good, last_counter=500),
        _error_case("replay_older_counter", "replay", good, last_counter=510),
        _error_case(
            "counter_gap_too_far",
            "counter_gap",
            build_frame(Telemetry.from_json(five), DEVICE_ID, 20_000, keys),
            last_counter=100,
        ),
        _error_case(
            "bad_length_checkin", "bad_length", sealed(TYPE_BY_NAME["checkin"], bytes(12)), body=bytes(12), fport=1
        ),
        _error_case(
            "bad_length_checkin_number_alone", "bad_length", sealed(checkin_kind, bytes(2)), body=bytes(2), fport=1
        ),
        _error_case(
            "bad_length_17_checkins",
            "bad_length",
            sealed(checkin_kind, seventeen),
            body=seventeen,
            fport=1,
        ),
        _error_case(
            "bad_length_status",
            "bad_length",
            sealed(status, bytes(STATUS_SIZE - 1)),
            body=bytes(STATUS_SIZE - 1),
            fport=3,
        ),
        _error_case("bad_length_bitmap", "bad_length", sealed(telemetry, b"\x01\x00"), body=b"\x01\x00", fport=2),
        _error_case("bad_value_humidity", "bad_value", sealed(telemetry, b"\x02\xc9"), body=b"\x02\xc9", fport=2),
        _error_case("bad_value_empty_bitmap", "bad_value", sealed(telemetry, b"\x00"), body=b"\x00", fport=2),
        _error_case("unknown_field_reserved_bit", "unknown_field", sealed(telemetry, b"\x80"), body=b"\x80", fport=2),
        _error_case(
            "bad_value_direction_code",
            "bad_value",
            sealed(checkin_kind, b"\x01\x00\xc0" + bytes(10)),
            body=b"\x01\x00\xc0" + bytes(10),
            fport=1,
        ),
        _error_case(
            "bad_value_tag_type_code",
            "bad_value",
            sealed(checkin_kind, b"\x01\x00\x1d" + bytes(10)),
            body=b"\x01\x00\x1d" + bytes(10),
            fport=1,
        ),
        _error_case(
            "bad_value_uid_length_code",
            "bad_value",
            sealed(checkin_kind, b"\x01\x00\x03" + bytes(10)),
            body=b"\x01\x00\x03" + bytes(10),
            fport=1,
        ),
        _error_case(
            "bad_value_downlink_flags",
            "bad_value",
            seal_body(ack, FLAG_ACK_REQUESTED, DEVICE_ID, 5, b"\x01\x00", keys),
            direction=DOWN,
        ),
        _error_case(
            "bad_length_ack",
            "bad_length",
            seal_body(ack, 0, DEVICE_ID, 5, b"\x01\x00\x00", keys),
            direction=DOWN,
            body=b"\x01\x00\x00",
            fport=4,
        ),
        # A reset cause past the table's last code (crash, 7).
        _error_case(
            "bad_value_reset_cause_code",
            "bad_value",
            sealed(status, bytes(7) + b"\x08" + bytes(STATUS_SIZE - 8)),
            body=bytes(7) + b"\x08" + bytes(STATUS_SIZE - 8),
            fport=3,
        ),
        # Config values outside the contract's ranges: spreading factor 13, a report every 5 s.
        _error_case(
            "bad_value_config_spreading_factor",
            "bad_value",
            seal_body(config, 0, DEVICE_ID, 6, b"\x04\x0d", keys),
            direction=DOWN,
            body=b"\x04\x0d",
            fport=5,
        ),
        _error_case(
            "bad_value_config_report_interval",
            "bad_value",
            seal_body(config, 0, DEVICE_ID, 6, b"\x01\x05\x00", keys),
            direction=DOWN,
            body=b"\x01\x05\x00",
            fport=5,
        ),
        # A downlink further ahead of the node's last one than the counter's gap limit allows.
        _error_case(
            "counter_gap_downlink",
            "counter_gap",
            build_frame(Ack(acked_counter16=1), DEVICE_ID, 100 + MAX_COUNTER_GAP + 1, keys),
            direction=DOWN,
            last_counter=100,
        ),
    ]
    return cases


def _window_json(last_counter: int, seen_below: int) -> dict[str, Any]:
    return {"last_counter": last_counter, "seen_below_hex": f"{seen_below:016x}"}


def _window_case(
    name: str, counter: int, last_counter: int, seen_below: int, full_counter: bool = False
) -> dict[str, Any]:
    """An uplink heard by a receiver whose window for the device is (last_counter, seen_below): a
    telemetry frame (16 counter bits), or with `full_counter` a status frame (all 32)."""
    keys = derive_device_keys(TEST_MASTER_KEY, DEVICE_ID)
    if full_counter:
        frame = build_frame(STATUS_SAMPLE, DEVICE_ID, counter, keys)
        resolved = resolve_full_counter(last_counter, counter, seen_below)
    else:
        frame = build_frame(Telemetry.from_json({"co2_ppm": 600}), DEVICE_ID, counter, keys)
        resolved = resolve_counter(last_counter, counter & 0xFFFF, MAX_COUNTER_GAP, seen_below)
    case = {
        "name": name,
        "frame_hex": frame.hex(),
        "keys": _keys_json(DEVICE_ID),
        "max_gap": MAX_COUNTER_GAP,
        "window": _window_json(last_counter, seen_below),
    }
    if isinstance(resolved, int):
        after = _window_json(*slide_window(last_counter, seen_below, resolved))
        return {**case, "counter": resolved, "error": None, "window_after": after}
    return {**case, "counter": None, "error": resolved.reason, "window_after": None}


def window_cases() -> list[dict]:
    """The receive window of uplink counters (counter.py): which counter a frame resolves to, or why not."""
    top = 1000
    holes = ALL_SEEN & ~(1 << 9)  # every counter below 1000 seen but 990
    return [
        _window_case("newer_moves_the_window", top + 1, top, holes),
        _window_case("newer_by_more_than_the_window_empties_it", top + WINDOW_SIZE + 1, top, holes),
        _window_case("late_frame_never_seen", 990, top, holes),
        _window_case("late_frame_seen_is_a_replay", 991, top, holes),
        _window_case("top_itself_is_a_replay", top, top, 0),
        _window_case("exactly_window_size_below_the_top", top - WINDOW_SIZE, top, 0),
        _window_case("one_below_the_window_is_a_replay", top - WINDOW_SIZE - 1, top, 0),
        _window_case("late_frame_across_a_16_bit_boundary", 0x0000_FFF0, 0x0001_0002, 0),
        _window_case("full_window_refuses_below_the_top", top - 1, top, ALL_SEEN),
        _window_case("window_never_reaches_below_zero", 0x0000_FFF0, 10, 0),
        _window_case("gap_beyond_the_limit", top + MAX_COUNTER_GAP + 1, top, 0),
        _window_case("exactly_the_gap_limit_ahead", top + MAX_COUNTER_GAP, top, 0),
        _window_case("full_counter_beyond_the_gap_limit", top + MAX_COUNTER_GAP + 1, top, 0, full_counter=True),
        _window_case("full_counter_across_16_bits", 0x0003_0001, top, 0, full_counter=True),
        _window_case("full_counter_late_never_seen", 990, top, holes, full_counter=True),
        _window_case("full_counter_top_is_a_replay", top, top, 0, full_counter=True),
        _window_case("full_counter_below_the_window_is_a_replay", top - WINDOW_SIZE - 1, top, 0, full_counter=True),
    ]


def bridge_link_cases() -> list[dict]:
    keys = derive_device_keys(TEST_MASTER_KEY, DEVICE_ID)
    frame = build_frame(Telemetry.from_json({"temperature_c": 19.5, "co2_ppm": 840}), DEVICE_ID, 77, keys).hex()
    radio = {"frequency_hz": 868_100_000, "spreading_factor": 9, "bandwidth_hz": 125_000, "coding_rate": 5}
    records: list[tuple[str, dict[str, Any]]] = [
        ("received", {**radio, "rssi_dbm": -97, "snr_db": 6.25, "timestamp_us": 4_000_123_456, "frame": frame}),
        ("received", {**radio, "rssi_dbm": -121, "snr_db": -14.75, "timestamp_us": 0, "frame": frame}),
        (
            "transmit",
            {
                "tx_id": 1,
                **radio,
                "frequency_hz": 869_525_000,
                "tx_power_dbm": 14,
                "timing": "at_timestamp",
                "timestamp_us": 4_001_123_456,
                "frame": frame,
            },
        ),
        (
            "transmit",
            {"tx_id": 65535, **radio, "tx_power_dbm": -4, "timing": "immediate", "timestamp_us": 0, "frame": frame},
        ),
        ("transmit_result", {"tx_id": 1, "result": "sent", "airtime_us": 185_344}),
        ("transmit_result", {"tx_id": 2, "result": "duty_cycle", "airtime_us": 0}),
        (
            "heartbeat",
            {
                "link_version": bridge_link.LINK_VERSION,
                "firmware_major": 1,
                "firmware_minor": 0,
                "firmware_patch": 2,
                "uptime_s": 86_400,
                "received": 1234,
                "transmitted": 56,
                "radio_errors": 1,
                "records_dropped": 0,
            },
        ),
        ("log", {"level": "warning", "text": "radio: receive timeout, restarting"}),
        ("log", {"level": "info", "text": "température 21 °C"}),
    ]
    cases = [
        {
            "name": f"{kind}_{index}",
            "kind": kind,
            "fields": fields,
            "record_hex": bridge_link.encode_record(kind, fields).hex(),
            "valid": True,
            "error": None,
        }
        for index, (kind, fields) in enumerate(records)
    ]
    good = bridge_link.encode_record(*records[4])
    corrupted = bytearray(good)
    corrupted[3] ^= 0x10
    invalid = [
        ("bad_crc", bytes(corrupted)),
        ("bad_cobs", b"\x00\x05\x01\x02\x00"),
        ("unknown_record", bridge_link.frame_record(b"\x7f\x01\x02")),
        ("truncated", bridge_link.frame_record(b"\x03\x01")),
        ("truncated", b"\x00\x02\x01\x00"),
        ("bad_value", bridge_link.frame_record(b"\x03\x01\x00\x63\x00\x00\x00\x00")),
        ("bad_length", bridge_link.frame_record(b"\x01" + bytes.fromhex("a0be3d330948e80100059fff1800000000"))),
        ("too_long", b"\x00" + b"\xff" * (bridge_link.MAX_ENCODED_SIZE + 1) + b"\x00"),
    ]
    cases += [
        {
            "name": f"invalid_{error}_{index}",
            "kind": None,
            "fields": None,
            "record_hex": raw.hex(),
            "valid": False,
            "error": error,
        }
        for index, (error, raw) in enumerate(invalid)
    ]
    return cases


def _kdf_input(label: bytes, context: bytes) -> str:
    """The one block of NIST SP 800-108 counter mode that AES-CMAC(master key, ·) turns into a key:
    i = 1 (4 bytes BE) | label | 00 | context | L = 128 (4 bytes BE)."""
    return ((1).to_bytes(4, "big") + label + b"\x00" + context + (KEY_SIZE * 8).to_bytes(4, "big")).hex()


def key_cases() -> list[dict]:
    return [
        {
            "master_key": TEST_MASTER_KEY.hex(),
            "device_id": device_id,
            "key_epoch": key_epoch,
            **_keys_json(device_id, key_epoch),
            "badge_key": derive_badge_key(TEST_MASTER_KEY).hex(),
            "kdf_input_hex": {
                "mic_key": _kdf_input(b"borne mic", key_context(device_id, key_epoch)),
                "enc_key": _kdf_input(b"borne enc", key_context(device_id, key_epoch)),
                "badge_key": _kdf_input(b"borne badge", b""),
            },
        }
        for device_id, key_epoch in (
            (0, 0),
            (1, 0),
            (DEVICE_ID, 0),
            (0xFFFF, 0),
            (DEVICE_ID, 1),
            (DEVICE_ID, 0xFFFFFFFF),
        )
    ]


def badge_token_cases() -> list[dict]:
    badge_key = derive_badge_key(TEST_MASTER_KEY)
    uids = [*TEST_UIDS, "00000000", "ffffffffffffff"]
    return [
        {"badge_key": badge_key.hex(), "uid_hex": uid, "token_hex": badge_token(badge_key, bytes.fromhex(uid)).hex()}
        for uid in uids
    ]


def airtime_cases() -> list[dict]:
    return [
        {
            "payload_size": size,
            "spreading_factor": sf,
            "bandwidth_hz": 125_000,
            "coding_rate": 5,
            "time_on_air_ms": round(airtime.time_on_air_ms(size, sf), 3),
        }
        for size in (11, 13, 18, 20, 22, 31, 51, 185)
        for sf in range(7, 13)
    ]


def all_vector_files() -> dict[str, dict]:
    """Every vector file, by file name, as it must be on disk."""
    note = "Generated by `borne codec vectors` from payload_codec; do not edit by hand."
    frames = {
        "uplink_checkin.json": checkin_cases(),
        "uplink_telemetry.json": telemetry_cases(),
        "uplink_status.json": status_cases(),
        "downlink_ack.json": ack_cases(),
        "downlink_config.json": config_cases(),
        "invalid_frames.json": error_cases(),
    }
    files = {
        name: {"note": note, "master_key": TEST_MASTER_KEY.hex(), "cases": cases} for name, cases in frames.items()
    }
    files["uplink_window.json"] = {"note": note, "master_key": TEST_MASTER_KEY.hex(), "cases": window_cases()}
    files["checkin_numbers.json"] = {"note": note, "cases": number_cases()}
    files["bridge_link.json"] = {"note": note, "cases": bridge_link_cases()}
    files["keys.json"] = {"note": note, "cases": key_cases()}
    files["badge_tokens.json"] = {"note": note, "cases": badge_token_cases()}
    files["airtime.json"] = {"note": note, "cases": airtime_cases()}
    return files


def render(content: dict) -> str:
    return json.dumps(content, indent=1, ensure_ascii=False) + "\n"


def write_vectors(directory: Path = VECTORS_DIR) -> list[Path]:
    """Write every vector file; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in all_vector_files().items():
        path = directory / name
        path.write_text(render(content), encoding="utf-8")
        written.append(path)
    return written


def stale_vectors(directory: Path = VECTORS_DIR) -> list[str]:
    """Names of the vector files that are missing or differ from what the codec generates."""
    return [
        name
        for name, content in all_vector_files().items()
        if not (directory / name).exists() or (directory / name).read_text(encoding="utf-8") != render(content)
    ]
