"""`borne codec …` as an installer or operator uses it."""

import json
import os
import subprocess
import sys

import pytest

from .vectors import load

MASTER = bytes(range(16)).hex()


def borne(*args, check=False):
    result = subprocess.run([sys.executable, "-m", "borne", *args], capture_output=True, text=True, timeout=60)
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture
def key_file(tmp_path):
    path = tmp_path / "site-keys.toml"
    path.write_text(f'master_key = "{MASTER}"\n')
    os.chmod(path, 0o600)
    return path


def test_decode_prints_the_frame_as_json(key_file):
    case = next(c for c in load("uplink_checkin.json") if c["name"] == "checkin_batch_2")
    result = borne("codec", "decode", case["frame_hex"], "--keys", str(key_file), check=True)
    printed = json.loads(result.stdout)
    assert printed["fields"] == case["fields"] and printed["verified"] is True
    assert result.stderr == ""


def test_decode_of_an_invalid_frame_exits_1_with_the_reason(key_file):
    case = next(c for c in load("invalid_frames.json") if c["error"] == "bad_mic")
    result = borne("codec", "decode", case["frame_hex"], "--keys", str(key_file))
    assert result.returncode == 1
    assert "bad_mic" in result.stderr


def test_decode_without_keys_says_the_mic_was_not_checked():
    case = next(c for c in load("uplink_telemetry.json") if c["name"] == "telemetry_5_values")
    result = borne("codec", "decode", case["frame_hex"], check=True)
    assert json.loads(result.stdout)["fields"] == case["fields"]
    assert "MIC not checked" in result.stderr


def test_decode_without_keys_prints_what_the_header_says_in_the_verified_frames_order(key_file):
    case = next(c for c in load("uplink_checkin.json") if c["name"] == "checkin_batch_2")
    verified = json.loads(borne("codec", "decode", case["frame_hex"], "--keys", str(key_file), check=True).stdout)
    unverified = json.loads(borne("codec", "decode", case["frame_hex"], check=True).stdout)
    assert list(unverified) == [
        key.replace("counter", "counter16").replace("fields", "body_hex") for key in verified
    ]  # the checked counter is the whole one, and the body is encrypted
    for key in ("type", "direction", "device_id", "encrypted", "ack_requested", "time_requested", "size"):
        assert unverified[key] == verified[key], key
    assert unverified["counter16"] == verified["counter"] % 65536
    assert unverified["verified"] is False and verified["verified"] is True


def test_decode_checks_a_re_keyed_device_with_the_keys_of_its_epoch(key_file):
    case = next(c for c in load("uplink_status.json") if c["name"] == "status_of_a_re_keyed_device")
    result = borne("codec", "decode", case["frame_hex"], "--keys", str(key_file), "--key-epoch", "1", check=True)
    assert json.loads(result.stdout)["fields"] == case["fields"]
    assert "bad_mic" in borne("codec", "decode", case["frame_hex"], "--keys", str(key_file)).stderr


def test_decode_warns_about_a_key_file_others_can_read(key_file):
    os.chmod(key_file, 0o644)
    case = load("uplink_telemetry.json")[0]
    result = borne("codec", "decode", case["frame_hex"], "--keys", str(key_file), check=True)
    assert "chmod 600" in result.stderr


def test_encode_builds_the_vector_bytes(key_file):
    case = next(c for c in load("uplink_telemetry.json") if c["name"] == "telemetry_5_values")
    result = borne(
        "codec",
        "encode",
        "telemetry",
        "--keys",
        str(key_file),
        "--device",
        str(case["device_id"]),
        "--counter",
        str(case["counter"]),
        "--fields",
        json.dumps(case["fields"]),
        check=True,
    )
    assert result.stdout.strip() == case["frame_hex"]


def test_encode_refuses_bad_fields_with_what_is_wrong(key_file):
    result = borne(
        "codec",
        "encode",
        "telemetry",
        "--keys",
        str(key_file),
        "--device",
        "1",
        "--counter",
        "1",
        "--fields",
        '{"humidity_pct": 140}',
    )
    assert result.returncode == 1
    assert "humidity_pct must be from 0.0 to 100.0" in result.stderr


def test_missing_key_file_is_named(tmp_path):
    case = load("uplink_telemetry.json")[0]
    result = borne("codec", "decode", case["frame_hex"], "--keys", str(tmp_path / "nope.toml"))
    assert result.returncode == 2
    assert "nope.toml: no such key file" in result.stderr


def test_vectors_check_passes_on_the_committed_vectors():
    assert borne("codec", "vectors", "--check").returncode == 0


def test_vectors_check_names_a_stale_file(tmp_path):
    borne("codec", "vectors", "--out", str(tmp_path), check=True)
    (tmp_path / "downlink_ack.json").write_text("{}")
    result = borne("codec", "vectors", "--check", "--out", str(tmp_path))
    assert result.returncode == 1 and "downlink_ack.json" in result.stderr


def test_export_js_prints_the_formatter():
    result = borne("codec", "export-js", check=True)
    assert "function decodeUplink(input)" in result.stdout
