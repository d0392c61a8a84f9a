"""Frame crypto of a node: the MIC, the body keystream and badge tokens.

Everything is built from AES-ECB, the one mode stock ESP32 firmware has: cryptolib ships
ECB and CBC, no CTR (MICROPY_PY_CRYPTOLIB_CTR is off) and no CMAC. Blocks follow LoRaWAN
1.0 (B0 for the MIC, A_i for the keystream), as in payload_codec/crypto.py.
"""

import hashlib
import struct

import cryptolib
from micropython import const

from .contract import BADGE_TOKEN_SIZE, MIC_SIZE

_ECB = const(1)  # cryptolib.MODE_ECB exists only in builds with MICROPY_PY_CRYPTOLIB_CONSTS
_B0 = const(0x49)
_A = const(0x01)
_BLOCK_LAYOUT = "<BIBHHIBB"  # kind | 4 x 00 | dir | device id | 00 00 | counter | 00 | last
_SHA256_BLOCK = const(64)


def _double(block):
    # Multiply by x in GF(2^128), in place: RFC 4493's subkey step.
    carry = block[0] >> 7
    for i in range(15):
        block[i] = (block[i] << 1 | block[i + 1] >> 7) & 0xFF
    block[15] = (block[15] << 1 & 0xFF) ^ (0x87 if carry else 0)


class Cmac:
    """AES-128-CMAC (RFC 4493) under one key; the subkeys and the work block are kept."""

    def __init__(self, key):
        self._aes = cryptolib.aes(key, _ECB)
        k1 = bytearray(16)
        self._aes.encrypt(k1, k1)
        _double(k1)
        k2 = bytearray(k1)
        _double(k2)
        self._k1 = k1
        self._k2 = k2
        self.block = bytearray(16)  # the last MAC computed

    def mac(self, data, n=-1):
        """The CMAC of data[:n] (all of data by default), in `self.block`, which it returns."""
        x = self.block
        for i in range(16):
            x[i] = 0
        return self._finish(data, len(data) if n < 0 else n)

    def mac_after(self, first, data, n):
        """The CMAC of first ‖ data[:n], where `first` is one whole block and n > 0."""
        x = self.block
        for i in range(16):
            x[i] = first[i]
        self._aes.encrypt(x, x)
        return self._finish(data, n)

    def _finish(self, data, n):
        x = self.block
        i = 0
        for _ in range((n - 1) >> 4 if n else 0):  # every block but the last
            for j in range(16):
                x[j] ^= data[i + j]
            self._aes.encrypt(x, x)
            i += 16
        rest = n - i  # 1..16, or 0 for an empty message
        k = self._k1 if rest == 16 else self._k2
        for j in range(16):
            if j < rest:
                x[j] ^= data[i + j] ^ k[j]
            else:
                x[j] ^= (0x80 if j == rest else 0) ^ k[j]
        self._aes.encrypt(x, x)
        return x


def aes_cmac(key, message):
    """The 16-byte AES-CMAC of `message`: for tests and one-off use (it builds a Cmac)."""
    return bytes(Cmac(key).mac(message))


class DeviceKeys:
    """A device's two keys, ready to use: `mic_key` signs frames, `enc_key` encrypts bodies."""

    def __init__(self, mic_key, enc_key):
        self._cmac = Cmac(mic_key)
        self._aes = cryptolib.aes(enc_key, _ECB)
        self._block = bytearray(16)  # B0 or A_i, then the keystream block

    def _mic(self, direction, device_id, counter, message, n):
        b0 = self._block
        struct.pack_into(_BLOCK_LAYOUT, b0, 0, _B0, 0, direction, device_id, 0, counter, 0, n)
        return self._cmac.mac_after(b0, message, n)

    def sign(self, direction, device_id, counter, frame, n):
        """Write the MIC of frame[:n] at frame[n:n + 4]."""
        mic = self._mic(direction, device_id, counter, frame, n)
        for i in range(MIC_SIZE):
            frame[n + i] = mic[i]

    def verify(self, direction, device_id, counter, frame, n):
        """Whether frame[n:n + 4] is the MIC of frame[:n]; constant time, so no byte leaks."""
        mic = self._mic(direction, device_id, counter, frame, n)
        diff = 0
        for i in range(MIC_SIZE):
            diff |= mic[i] ^ frame[n + i]
        return diff == 0

    def crypt(self, direction, device_id, counter, src, src_at, dst, dst_at, n):
        """XOR n bytes of src (from src_at) with the keystream into dst (from dst_at).

        AES-CTR whose counter blocks are LoRaWAN's A_1, A_2, …: encrypts and decrypts alike.
        src and dst may be the same buffer at the same offset.
        """
        s = self._block
        for k in range(n):
            j = k & 15
            if j == 0:
                struct.pack_into(_BLOCK_LAYOUT, s, 0, _A, 0, direction, device_id, 0, counter, 0, (k >> 4) + 1)
                self._aes.encrypt(s, s)
            dst[dst_at + k] = src[src_at + k] ^ s[j]


def hmac_sha256(key, message):
    """HMAC-SHA256 (RFC 2104) over hashlib.sha256.

    ESP32 firmware has no hmac module (micropython-lib's needs `mip install`), and HMAC is
    only two hashes. This port's sha256 objects have no copy() and digest() once.
    """
    if len(key) > _SHA256_BLOCK:
        key = hashlib.sha256(key).digest()
    pad = bytearray(_SHA256_BLOCK)
    for i in range(_SHA256_BLOCK):
        pad[i] = (key[i] if i < len(key) else 0) ^ 0x36
    inner = hashlib.sha256(pad)
    inner.update(message)
    for i in range(_SHA256_BLOCK):
        pad[i] ^= 0x36 ^ 0x5C
    outer = hashlib.sha256(pad)
    outer.update(inner.digest())
    return outer.digest()


def badge_token(badge_key, uid):
    """The badge's 8-byte keyed pseudonym, HMAC-SHA256(site badge key, UID)[:8].

    The only form in which a badge leaves the node: a raw UID never does.
    """
    return hmac_sha256(badge_key, uid)[:BADGE_TOKEN_SIZE]
