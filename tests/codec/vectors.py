"""Reading the shared vectors in tests."""

from __future__ import annotations

import json
from pathlib import Path

from payload_codec import DOWN, UP, DeviceKeys
from payload_codec.vectorgen import VECTORS_DIR

FRAME_FILES = (
    "uplink_checkin.json",
    "uplink_telemetry.json",
    "uplink_status.json",
    "downlink_ack.json",
    "downlink_config.json",
    "invalid_frames.json",
)
KNOWN_ANSWERS = Path(VECTORS_DIR).parent / "known_answers.json"


def load(name: str) -> list[dict]:
    return json.loads((VECTORS_DIR / name).read_text(encoding="utf-8"))["cases"]


def frame_cases() -> list[dict]:
    return [case for name in FRAME_FILES for case in load(name)]


def keys_of(case: dict) -> DeviceKeys | None:
    keys = case["keys"]
    return None if keys is None else DeviceKeys(bytes.fromhex(keys["mic_key"]), bytes.fromhex(keys["enc_key"]))


def direction_of(case: dict) -> int:
    return UP if case["direction"] == "up" else DOWN


def known_answers() -> dict:
    return json.loads(KNOWN_ANSWERS.read_text(encoding="utf-8"))
