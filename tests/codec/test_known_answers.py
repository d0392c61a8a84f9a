"""The primitives against answers published by others (RFC 4493, RFC 4231, AN1200.13)."""

import hashlib
import hmac

from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import algorithms

from payload_codec.airtime import time_on_air_ms
from payload_codec.crypto import badge_token, compute_mic

from .vectors import known_answers

ANSWERS = known_answers()


def test_aes_cmac_matches_rfc_4493():
    key = bytes.fromhex(ANSWERS["aes_cmac"]["key"])
    for case in ANSWERS["aes_cmac"]["cases"]:
        mac = cmac.CMAC(algorithms.AES(key))
        mac.update(bytes.fromhex(case["message"]))
        assert mac.finalize().hex() == case["mac"]


def test_mic_is_the_cmac_of_the_lorawan_b0_block_and_message():
    # B0 for an uplink of device 0x0102, counter 0x00010002, 5-byte message, then the message itself.
    key = bytes.fromhex(ANSWERS["aes_cmac"]["key"])
    message = bytes.fromhex("4802010200")
    b0 = bytes.fromhex("49000000000002010000020001000005")
    mac = cmac.CMAC(algorithms.AES(key))
    mac.update(b0 + message)
    assert compute_mic(key, 0, 0x0102, 0x0001_0002, message) == mac.finalize()[:4]


def test_hmac_sha256_matches_rfc_4231():
    for case in ANSWERS["hmac_sha256"]["cases"]:
        mac = hmac.new(bytes.fromhex(case["key"]), bytes.fromhex(case["data"]), hashlib.sha256).hexdigest()
        assert mac[: len(case["mac"])] == case["mac"]


def test_badge_token_is_rfc_4231_hmac_truncated_to_8_bytes():
    case = ANSWERS["hmac_sha256"]["cases"][1]
    assert badge_token(bytes.fromhex(case["key"]), bytes.fromhex(case["data"])).hex() == case["mac"][:16]


def test_time_on_air_matches_the_an1200_13_calculator():
    for case in ANSWERS["time_on_air"]["cases"]:
        measured = time_on_air_ms(
            case["payload_size"], case["spreading_factor"], case["bandwidth_hz"], case["coding_rate"]
        )
        assert round(measured, 3) == case["time_on_air_ms"]
