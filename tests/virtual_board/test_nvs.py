"""`esp32.NVS` on the virtual board: committed values outlive every kind of reset, uncommitted ones do not."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from simulator.virtual_board import VirtualBoard

NVS = "import esp32\nnvs = esp32.NVS('borne')\n"

RESETS: dict[str, Callable[[VirtualBoard], object]] = {
    "soft_reset": lambda board: board.exec("", soft_reset=True),
    "reset_button": VirtualBoard.reset,
    "power_cycle": VirtualBoard.power_cycle,
}


def run(board: VirtualBoard, code: str) -> str:
    return board.exec(NVS + code).strip()


def read_counter(board: VirtualBoard) -> str:
    return run(board, "try:\n    print(nvs.get_i32('fcnt'))\nexcept OSError as e:\n    print(e.args)")


@pytest.mark.parametrize("reset", RESETS.values(), ids=RESETS.keys())
def test_a_committed_value_survives_a_reset(board: VirtualBoard, reset: Callable[[VirtualBoard], object]) -> None:
    run(board, "nvs.set_i32('fcnt', -123456)\nnvs.commit()")
    reset(board)
    assert read_counter(board) == "-123456"


@pytest.mark.parametrize("reset", RESETS.values(), ids=RESETS.keys())
def test_an_uncommitted_write_is_lost_at_a_reset(board: VirtualBoard, reset: Callable[[VirtualBoard], object]) -> None:
    run(board, "nvs.set_i32('fcnt', 1)\nnvs.commit()\nnvs.set_i32('fcnt', 2)")
    assert read_counter(board) == "2"  # visible until the reset
    reset(board)
    assert read_counter(board) == "1"


def test_a_missing_key_raises_os_error_esp_err_nvs_not_found(board: VirtualBoard) -> None:
    assert read_counter(board) == "(-4354, 'ESP_ERR_NVS_NOT_FOUND')"


def test_a_blob_is_copied_into_the_buffer_and_its_length_returned(board: VirtualBoard) -> None:
    code = (
        "nvs.set_blob('key', b'\\x00\\x01secret')\nbuf = bytearray(16)\n"
        "n = nvs.get_blob('key', buf)\nprint(n, bytes(buf[:n]))"
    )
    assert run(board, code) == "8 b'\\x00\\x01secret'"


def test_a_buffer_too_small_for_the_blob_raises_invalid_length(board: VirtualBoard) -> None:
    code = (
        "nvs.set_blob('key', bytes(20))\n"
        "try:\n    nvs.get_blob('key', bytearray(4))\nexcept OSError as e:\n    print(e.args)"
    )
    assert run(board, code) == "(-4364, 'ESP_ERR_NVS_INVALID_LENGTH')"


def test_an_erased_key_stays_erased_once_committed(board: VirtualBoard) -> None:
    run(board, "nvs.set_i32('fcnt', 7)\nnvs.commit()\nnvs.erase_key('fcnt')\nnvs.commit()")
    board.power_cycle()
    assert read_counter(board) == "(-4354, 'ESP_ERR_NVS_NOT_FOUND')"


def test_namespaces_keep_their_keys_apart(board: VirtualBoard) -> None:
    run(board, "nvs.set_i32('fcnt', 5)\nnvs.commit()")
    code = "try:\n    esp32.NVS('other').get_i32('fcnt')\nexcept OSError as e:\n    print(e.errno)"
    assert run(board, code) == "-4354"


def test_the_partition_is_a_file_beside_the_flash(board: VirtualBoard) -> None:
    run(board, "nvs.set_i32('fcnt', 5)\nnvs.commit()")
    assert '"fcnt"' in (board.state / "nvs.json").read_text()
    assert board.state.parent == board.flash.parent
