"""The firmware's wire codec, run by the real MicroPython VM, against the shared vectors.

One VM run answers every call (see conftest.py and board_runner.py); each test judges one.
"""

from __future__ import annotations

import pytest

from tests.codec.vectors import known_answers, load
from tests.firmware.cases import (
    ALL_FRAME_FILES,
    DOWNLINK_FILES,
    DUTY_EXPECTED,
    GREEDY_FRAMES,
    NODE_KEYS,
    UPLINK_FILES,
    codec_verdict,
    firmware_view,
    random_downlinks,
)

UPLINKS = [case for name in UPLINK_FILES for case in load(name)]
DOWNLINKS = [case for name in DOWNLINK_FILES for case in load(name)]
INVALID_DOWNLINKS = [case for case in load("invalid_frames.json") if case["direction"] == "down"]
EVERY_FRAME = [case for name in ALL_FRAME_FILES for case in load(name)]


def _name(case: dict) -> str:
    return case["name"]


@pytest.mark.parametrize("case", UPLINKS, ids=_name)
def test_an_uplink_builds_byte_identical_to_its_vector(answer_of, case: dict) -> None:
    assert answer_of(f"uplink/{case['name']}") == case["frame_hex"]


@pytest.mark.parametrize("case", DOWNLINKS, ids=_name)
def test_a_downlink_reads_back_to_its_vector_fields(answer_of, case: dict) -> None:
    expected = firmware_view(case["type"], case["counter"], case["flags"]["encrypted"], case["fields"])
    assert answer_of(f"read/{case['name']}") == expected


@pytest.mark.parametrize("case", INVALID_DOWNLINKS, ids=_name)
def test_an_invalid_downlink_is_refused_for_its_reason(answer_of, case: dict) -> None:
    assert answer_of(f"read/{case['name']}") == {"reason": case["error"]}


@pytest.mark.parametrize("case", EVERY_FRAME, ids=_name)
def test_any_vector_frame_read_as_a_downlink_gets_the_codecs_verdict(answer_of, case: dict) -> None:
    # Uplinks heard by a node, damaged frames, replays: the node decides as the gateway's codec does.
    assert answer_of(f"read/{case['name']}") == codec_verdict(case["frame_hex"], case["keys"], case["last_counter"])


def test_random_downlinks_get_the_codecs_verdict(answer_of) -> None:
    mismatches = []
    for index, (frame_hex, keys, last) in enumerate(random_downlinks()):
        raw = bytes.fromhex(frame_hex)
        claimed = raw[1] | raw[2] << 8
        expected = codec_verdict(frame_hex, keys if claimed == NODE_KEYS["device_id"] else None, last)
        got = answer_of(f"random/{index}")
        if got != expected:
            mismatches.append((frame_hex, last, got, expected))
    assert not mismatches, mismatches[:5]


def test_random_downlinks_include_accepted_and_refused_frames(answer_of) -> None:
    reasons = {answer_of(f"random/{i}")["reason"] for i in range(len(random_downlinks()))}
    assert None in reasons and {"bad_mic", "replay"} <= reasons


def test_a_downlink_to_another_device_is_refused(answer_of) -> None:
    assert answer_of("other_device") == {"reason": "unknown_device"}


@pytest.mark.parametrize("index", range(len(known_answers()["aes_cmac"]["cases"])))
def test_aes_cmac_matches_rfc_4493(answer_of, index: int) -> None:
    assert answer_of(f"cmac/{index}") == known_answers()["aes_cmac"]["cases"][index]["mac"]


@pytest.mark.parametrize("index", range(len(known_answers()["hmac_sha256"]["cases"])))
def test_hmac_sha256_matches_rfc_4231(answer_of, index: int) -> None:
    expected = known_answers()["hmac_sha256"]["cases"][index]["mac"]
    assert answer_of(f"hmac/{index}")[: len(expected)] == expected  # case 5 is published truncated


@pytest.mark.parametrize("index", range(len(load("badge_tokens.json"))))
def test_a_badge_token_matches_its_vector(answer_of, index: int) -> None:
    assert answer_of(f"badge/{index}") == load("badge_tokens.json")[index]["token_hex"]


AIRTIME_CASES = load("airtime.json") + known_answers()["time_on_air"]["cases"]


@pytest.mark.parametrize("index", range(len(AIRTIME_CASES)))
def test_time_on_air_matches_to_the_microsecond(answer_of, index: int) -> None:
    assert answer_of(f"airtime/{index}") == round(AIRTIME_CASES[index]["time_on_air_ms"] * 1000)


@pytest.mark.parametrize("scenario", DUTY_EXPECTED)
def test_duty_cycle_budget(answer_of, scenario: str) -> None:
    assert answer_of(f"duty/{scenario}") == DUTY_EXPECTED[scenario]


def test_greedy_sending_never_exceeds_one_percent_in_any_hour(answer_of) -> None:
    sent = answer_of("greedy")
    assert len(sent) == len(GREEDY_FRAMES) and sent[-1] > 3 * 3_600_000  # long enough to span hours
    for i, start in enumerate(sent):  # every window of one hour that starts at a frame
        in_window = sum(air for t, air in zip(sent[i:], GREEDY_FRAMES[i:], strict=True) if t < start + 3_600_000)
        assert in_window <= 36_000_000, f"{in_window} µs of air in the hour from {start} ms"


def test_building_a_frame_allocates_only_its_view(answer_of) -> None:
    # The firmware's own code, ESP32's C cryptolib standing aside: at most the returned memoryview.
    heap = answer_of("heap")
    print("firmware heap figures (bytes):", heap)
    own = heap["firmware_only"]
    assert own["checkin_16"] <= 64 and own["checkin_1"] <= 64 and own["status"] <= 64, own
    # Whole-number readings reach the wire without a float: a telemetry frame allocates no more.
    assert own["telemetry"] <= 64 and own["telemetry_from_readings"] <= 64, own
