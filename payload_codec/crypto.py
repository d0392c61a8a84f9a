"""Keys, integrity code, body encryption and badge tokens, LoRaWAN-style.

The MIC and the keystream use the LoRaWAN 1.0 blocks (B0 and A_i) so that every
primitive is one a reviewer already knows and the node can build from AES-ECB,
which ESP32's `cryptolib` has. Device keys come from the site master key through
NIST SP 800-108 (KDF in counter mode with AES-CMAC), as `cryptography` provides it.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.kbkdf import KBKDFCMAC, CounterLocation, Mode

UP = 0
DOWN = 1
MIC_SIZE = 4
KEY_SIZE = 16
BADGE_TOKEN_SIZE = 8


@dataclass(frozen=True)
class DeviceKeys:
    """The two keys of one device: one authenticates frames, the other encrypts bodies."""

    mic_key: bytes
    enc_key: bytes


def _kdf(master_key: bytes, label: bytes, context: bytes) -> bytes:
    _check_key(master_key, "site master key")
    kdf = KBKDFCMAC(
        algorithm=algorithms.AES,
        mode=Mode.CounterMode,
        length=KEY_SIZE,
        rlen=4,
        llen=4,
        location=CounterLocation.BeforeFixed,
        label=label,
        context=context,
        fixed=None,
    )
    return kdf.derive(master_key)


def _check_key(key: bytes, what: str) -> None:
    if len(key) != KEY_SIZE:
        raise ValueError(f"the {what} must be {KEY_SIZE} bytes (32 hex digits), got {len(key)}")


def key_context(device_id: int, key_epoch: int = 0) -> bytes:
    """The KDF context of a device's keys: its id (2 bytes LE), then its key epoch (4 bytes LE)
    from epoch 1 on. Epoch 0 is the id alone, so that devices keyed before epochs keep their keys."""
    if not 0 <= key_epoch <= 0xFFFFFFFF:
        raise ValueError(f"a key epoch is 0 to {0xFFFFFFFF}, got {key_epoch}")
    return struct.pack("<H", device_id) + (struct.pack("<I", key_epoch) if key_epoch else b"")


def derive_device_keys(master_key: bytes, device_id: int, key_epoch: int = 0) -> DeviceKeys:
    """The keys of `device_id` in its `key_epoch`; extracting them from one node reveals no other
    node's, nor the same device's in another epoch."""
    context = key_context(device_id, key_epoch)
    return DeviceKeys(
        mic_key=_kdf(master_key, b"borne mic", context),
        enc_key=_kdf(master_key, b"borne enc", context),
    )


def derive_badge_key(master_key: bytes) -> bytes:
    """The site-wide badge key: the same badge gives the same token at every door of a site.

    Its KDF context is empty (zero bytes): it belongs to no device and no epoch."""
    return _kdf(master_key, b"borne badge", b"")


def badge_token(site_badge_key: bytes, uid: bytes) -> bytes:
    """HMAC-SHA256(site_badge_key, uid) truncated to 8 bytes: a keyed pseudonym of the badge.

    Keyed, because an unkeyed hash of a 4-byte UID falls to 2^32 guesses.
    """
    return hmac.new(site_badge_key, uid, hashlib.sha256).digest()[:BADGE_TOKEN_SIZE]


def _block(kind: int, direction: int, device_id: int, counter: int, last: int) -> bytes:
    # LoRaWAN 1.0 §4.3.3 / §4.4: kind | 4 x 00 | dir | DevAddr(4) | FCnt(4) | 00 | last,
    # our 16-bit device id standing in the low half of DevAddr.
    return struct.pack("<B4xBHxxIxB", kind, direction, device_id, counter, last)


def compute_mic(mic_key: bytes, direction: int, device_id: int, counter: int, message: bytes) -> bytes:
    """AES-128-CMAC over B0 | message, truncated to 4 bytes; B0 binds the full 32-bit counter."""
    mac = cmac.CMAC(algorithms.AES(mic_key))
    mac.update(_block(0x49, direction, device_id, counter, len(message)) + message)
    return mac.finalize()[:MIC_SIZE]


def mic_matches(mic_key: bytes, direction: int, device_id: int, counter: int, message: bytes, mic: bytes) -> bool:
    """Whether `mic` authenticates `message`, compared in constant time."""
    return hmac.compare_digest(compute_mic(mic_key, direction, device_id, counter, message), mic)


def crypt_body(enc_key: bytes, direction: int, device_id: int, counter: int, body: bytes) -> bytes:
    """Encrypt or decrypt a body: AES-CTR whose counter blocks are LoRaWAN's A_1, A_2, …

    CTR mode counts the whole block big-endian, so starting at A_1 yields A_i exactly
    for the at most 16 blocks a frame can hold (the last byte never carries).
    """
    first_block = _block(0x01, direction, device_id, counter, 1)
    encryptor = Cipher(algorithms.AES(enc_key), modes.CTR(first_block)).encryptor()
    return encryptor.update(body) + encryptor.finalize()
