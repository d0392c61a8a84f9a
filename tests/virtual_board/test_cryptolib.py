"""`cryptolib` on the virtual board: AES as an ESP32's MicroPython computes it, checked inside the VM."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from simulator.virtual_board import VirtualBoard, VirtualBoardError, check_vm_installed

# FIPS-197 appendix C and NIST SP 800-38A appendix F: (key, iv or None, plaintext, ciphertext).
KNOWN_ANSWERS = [
    ("2b7e151628aed2a6abf7158809cf4f3c", None, "6bc1bee22e409f96e93d7e117393172a", "3ad77bb40d7a3660a89ecaf32466ef97"),
    ("000102030405060708090a0b0c0d0e0f", None, "00112233445566778899aabbccddeeff", "69c4e0d86a7b0430d8cdb78070b4c55a"),
    (
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
        None,
        "00112233445566778899aabbccddeeff",
        "8ea2b7ca516745bfeafc49904b496089",
    ),
    (
        "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
        None,
        "6bc1bee22e409f96e93d7e117393172a",
        "f3eed1bdb5d2a03c064b5a7e3db181f8",
    ),
    (
        "2b7e151628aed2a6abf7158809cf4f3c",
        "000102030405060708090a0b0c0d0e0f",
        "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51",
        "7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2",
    ),
    (
        "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
        "000102030405060708090a0b0c0d0e0f",
        "6bc1bee22e409f96e93d7e117393172a",
        "f58c4c04d6e5f1ba779eabfb5f7bfbd6",
    ),
]

PRELUDE = "import cryptolib\nfrom binascii import hexlify, unhexlify as h\n"


@pytest.fixture(scope="module")
def vm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VirtualBoard]:
    """One board for the module: these tests change no state of it."""
    try:
        check_vm_installed()
    except VirtualBoardError as error:
        pytest.skip(str(error))
    path: Path = tmp_path_factory.mktemp("cryptolib")
    with VirtualBoard(path / "tty", path / "flash") as board:
        yield board


def run(board: VirtualBoard, code: str) -> str:
    return board.exec(PRELUDE + code).strip()


def mode_and_iv(iv: str | None) -> str:
    return "1" if iv is None else f"2, h('{iv}')"


@pytest.mark.parametrize(("key", "iv", "plain", "cipher"), KNOWN_ANSWERS)
def test_encryption_gives_the_known_answer(vm: VirtualBoard, key: str, iv: str | None, plain: str, cipher: str) -> None:
    code = f"print(hexlify(cryptolib.aes(h('{key}'), {mode_and_iv(iv)}).encrypt(h('{plain}'))).decode())"
    assert run(vm, code) == cipher


@pytest.mark.parametrize(("key", "iv", "plain", "cipher"), KNOWN_ANSWERS)
def test_decryption_gives_the_plaintext_back(
    vm: VirtualBoard, key: str, iv: str | None, plain: str, cipher: str
) -> None:
    code = f"print(hexlify(cryptolib.aes(h('{key}'), {mode_and_iv(iv)}).decrypt(h('{cipher}'))).decode())"
    assert run(vm, code) == plain


def test_cbc_chains_from_one_call_to_the_next(vm: VirtualBoard) -> None:
    key, iv, plain, cipher = KNOWN_ANSWERS[4]
    code = (
        f"c = cryptolib.aes(h('{key}'), 2, h('{iv}'))\n"
        f"print(hexlify(c.encrypt(h('{plain[:32]}')) + c.encrypt(h('{plain[32:]}'))).decode())\n"
        f"d = cryptolib.aes(h('{key}'), 2, h('{iv}'))\n"
        f"print(hexlify(d.decrypt(h('{cipher[:32]}')) + d.decrypt(h('{cipher[32:]}'))).decode())"
    )
    assert run(vm, code).split() == [cipher, plain]


def test_an_output_buffer_is_filled_and_returned(vm: VirtualBoard) -> None:
    key, _, plain, cipher = KNOWN_ANSWERS[0]
    code = (
        f"out = bytearray(16)\nr = cryptolib.aes(h('{key}'), 1).encrypt(h('{plain}'), out)\n"
        "print(r is out, hexlify(out).decode())"
    )
    assert run(vm, code) == f"True {cipher}"


REFUSALS = {
    "ctr_mode_is_not_built_for_esp32": "cryptolib.aes(bytes(16), 6, bytes(16))",
    "a_24_byte_key": "cryptolib.aes(bytes(24), 1)",
    "cbc_without_iv": "cryptolib.aes(bytes(16), 2)",
    "a_short_iv": "cryptolib.aes(bytes(16), 2, bytes(8))",
    "a_length_not_a_multiple_of_16": "cryptolib.aes(bytes(16), 1).encrypt(bytes(20))",
    "a_too_small_output_buffer": "cryptolib.aes(bytes(16), 1).encrypt(bytes(32), bytearray(16))",
    "decrypting_with_an_object_that_encrypted": (
        "c = cryptolib.aes(bytes(16), 1); c.encrypt(bytes(16)); c.decrypt(bytes(16))"
    ),
}


@pytest.mark.parametrize("statement", REFUSALS.values(), ids=REFUSALS.keys())
def test_it_refuses_with_value_error(vm: VirtualBoard, statement: str) -> None:
    assert run(vm, f"try:\n    {statement}\nexcept ValueError as e:\n    print('ValueError', e)").startswith(
        "ValueError"
    )


def test_the_constructor_takes_no_keyword_arguments_as_in_micropython(vm: VirtualBoard) -> None:
    code = "try:\n    cryptolib.aes(bytes(16), 2, IV=bytes(16))\nexcept TypeError:\n    print('TypeError')"
    assert run(vm, code) == "TypeError"


def test_encrypting_in_place_allocates_nothing_as_the_c_module(vm: VirtualBoard) -> None:
    # Within one call this VM collects nothing, so what gc.mem_alloc() gained is what was allocated; in
    # a function, where no new global grows the module's dictionary.
    code = (
        "import gc\ndef measure(c, block):\n    before = gc.mem_alloc()\n    for _ in range(100):\n"
        "        c.encrypt(block, block)\n    return gc.mem_alloc() - before\n"
        "c = cryptolib.aes(bytes(16), 1)\nblock = bytearray(16)\nc.encrypt(block, block)\nprint(measure(c, block))"
    )
    assert run(vm, code) == "0"
