"""The bridge's serial records and the node's badge debounce, run by the real MicroPython VM.

Answers come from the same single VM run as the wire codec's (see conftest.py, board_runner.py).
"""

from __future__ import annotations

import pytest

from tests.codec.vectors import load
from tests.firmware.cases import PRESENTATIONS, bridge_record_values

RECORDS = load("bridge_link.json")
FRAMING_ERRORS = ("bad_crc", "bad_cobs", "too_long")


def _name(case: dict) -> str:
    return case["name"]


@pytest.mark.parametrize("case", [c for c in RECORDS if c["valid"]], ids=_name)
def test_a_valid_record_reads_and_frames_again_byte_identical(answer_of, case: dict) -> None:
    answer = answer_of(f"record/{case['name']}")
    assert answer["damaged"] == 0
    assert answer["reframed"] == case["record_hex"]


@pytest.mark.parametrize("case", [c for c in RECORDS if c["valid"] and c["kind"] == "transmit"], ids=_name)
def test_a_transmit_request_reads_to_the_gateways_fields(answer_of, case: dict) -> None:
    code, tx_id, frequency, sf, bandwidth, cr, power, timing, timestamp, frame = answer_of(f"record/{case['name']}")[
        "transmit"
    ]
    fields = case["fields"]
    assert (code, tx_id, frequency, sf, bandwidth, cr, power) == (
        2,
        fields["tx_id"],
        fields["frequency_hz"],
        fields["spreading_factor"],
        fields["bandwidth_hz"],
        fields["coding_rate"],
        fields["tx_power_dbm"],
    )
    assert (timing, timestamp, frame) == (
        int(fields["timing"] == "at_timestamp"),
        fields["timestamp_us"],
        fields["frame"],
    )


@pytest.mark.parametrize("case", [c for c in RECORDS if bridge_record_values(c)], ids=_name)
def test_a_record_the_bridge_sends_packs_byte_identical(answer_of, case: dict) -> None:
    assert answer_of(f"pack/{case['name']}") == case["record_hex"]


@pytest.mark.parametrize("case", [c for c in RECORDS if c["error"] in FRAMING_ERRORS], ids=_name)
def test_a_damaged_record_is_skipped_and_counted(answer_of, case: dict) -> None:
    assert answer_of(f"record/{case['name']}") == {"n": 0, "damaged": 1}


@pytest.mark.parametrize("name", PRESENTATIONS)
def test_badge_presentations(answer_of, name: str) -> None:
    _, _, expected = PRESENTATIONS[name]
    assert answer_of(f"presentations/{name}") == expected
