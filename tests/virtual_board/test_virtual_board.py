"""The virtual board, driven by the real mpremote over its pty as an installer drives an ESP32."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import serial
from mpremote.transport_serial import SerialTransport

from simulator.virtual_board import VirtualBoard
from simulator.virtual_board.board import HARD_RESET, PWRON_RESET, SOFT_RESET
from tests.virtual_board.conftest import read_when_written, run_mpremote, wait_for

Mpremote = Callable[..., str]

GREETING = 'def hello():\n    return "hello from flash"\n'


def test_mpremote_exec_runs_on_micropython(mpremote: Mpremote) -> None:
    assert mpremote("exec", "import sys; print(sys.implementation.name)").strip() == "micropython"


def test_a_text_file_copied_to_the_board_reads_back_identical(mpremote: Mpremote, tmp_path: Path) -> None:
    (tmp_path / "greet.py").write_text(GREETING)
    mpremote("fs", "cp", str(tmp_path / "greet.py"), ":greet.py")
    assert mpremote("fs", "cat", ":greet.py") == GREETING


def test_a_binary_file_copied_to_the_board_copies_back_identical(mpremote: Mpremote, tmp_path: Path) -> None:
    blob = os.urandom(3000)
    (tmp_path / "blob.bin").write_bytes(blob)
    mpremote("fs", "cp", str(tmp_path / "blob.bin"), ":blob.bin", "+", "fs", "cp", ":blob.bin", str(tmp_path / "back"))
    assert (tmp_path / "back").read_bytes() == blob


def test_the_flash_is_mounted_at_root_as_on_an_esp32(mpremote: Mpremote) -> None:
    assert mpremote("exec", "import os, sys; print(os.getcwd(), sys.path)").strip() == "/ ['', '.frozen', '/lib']"


def test_fs_ls_lists_files_and_directories(mpremote: Mpremote, tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    mpremote("fs", "cp", str(tmp_path / "config.json"), ":config.json", "+", "fs", "mkdir", ":lib")
    listing = mpremote("fs", "ls", ":").split()
    assert listing == ["ls", ":", "2", "config.json", "0", "lib/"]


def test_a_missing_file_is_reported_as_missing(board: VirtualBoard) -> None:
    done = run_mpremote(board.port, "fs", "cat", ":absent.py")
    assert done.returncode != 0
    assert "No such file or directory" in done.stderr


def test_a_module_copied_to_the_board_imports_from_root_and_lib(mpremote: Mpremote, tmp_path: Path) -> None:
    (tmp_path / "greet.py").write_text(GREETING)
    mpremote("fs", "mkdir", ":lib", "+", "fs", "cp", str(tmp_path / "greet.py"), ":lib/greet_lib.py")
    mpremote("fs", "cp", str(tmp_path / "greet.py"), ":greet.py")
    printed = mpremote("exec", "import greet, greet_lib; print(greet.hello(), greet_lib.hello())")
    assert printed.strip() == "hello from flash hello from flash"


def test_files_survive_a_soft_reset_that_clears_python_state(mpremote: Mpremote, tmp_path: Path) -> None:
    (tmp_path / "greet.py").write_text(GREETING)
    mpremote("fs", "cp", str(tmp_path / "greet.py"), ":greet.py", "+", "exec", "import greet")
    code = "import sys; print('greet' in sys.modules); import greet; print(greet.hello())"
    printed = mpremote("soft-reset", "exec", code)
    assert printed.splitlines() == ["False", "hello from flash"]


def test_a_soft_reset_runs_boot_py_again(board: VirtualBoard, mpremote: Mpremote, tmp_path: Path) -> None:
    (tmp_path / "boot.py").write_text("with open('boots.txt', 'a') as f:\n    f.write('boot\\n')\n")
    mpremote("fs", "cp", str(tmp_path / "boot.py"), ":boot.py")
    boots = board.flash / "boots.txt"
    boots.unlink(missing_ok=True)
    mpremote("soft-reset")
    assert boots.read_text() == "boot\n"


def test_mpremote_reset_reboots_the_board_which_runs_main_py_over_the_same_files(
    board: VirtualBoard, mpremote: Mpremote, tmp_path: Path
) -> None:
    (tmp_path / "main.py").write_text(
        "import machine\nwith open('causes.txt', 'a') as f:\n    f.write('%d\\n' % machine.reset_cause())\n"
    )
    mpremote("fs", "cp", str(tmp_path / "main.py"), ":main.py")
    mpremote("reset")
    causes = read_when_written(board.flash / "causes.txt").decode()
    assert causes == f"{HARD_RESET}\n"  # ESP32's cause after machine.reset()
    assert "machine.reset_cause" in mpremote("fs", "cat", ":main.py")


def test_the_reset_button_boots_a_fresh_vm_that_reads_as_powered_on(board: VirtualBoard) -> None:
    boots = board.boots
    board.reset()
    wait_for(lambda: board.boots > boots)
    # The EN button: ESP_RST_POWERON on an ESP32, which the port reports as PWRON_RESET.
    assert board.exec("import machine; print(machine.reset_cause())").strip() == str(PWRON_RESET)


def test_a_soft_reboot_reads_as_a_soft_reset(board: VirtualBoard) -> None:
    board.exec("pass", soft_reset=True)
    assert board.exec("import machine; print(machine.reset_cause())").strip() == str(SOFT_RESET)


def test_asyncio_run_in_main_py_starts_the_firmware_tasks(board: VirtualBoard) -> None:
    (board.flash / "main.py").write_text(
        "import asyncio\n"
        "async def main():\n"
        "    await asyncio.sleep_ms(50)\n"
        "    with open('ran.txt', 'w') as f:\n"
        "        f.write('ran')\n"
        "asyncio.run(main())\n"
    )
    board.reset()
    wait_for(lambda: (board.flash / "ran.txt").exists())


def test_opening_and_closing_the_port_does_not_reset_the_board(board: VirtualBoard) -> None:
    boots = board.boots
    for _ in range(3):
        with serial.Serial(str(board.port), 115200, timeout=5) as port:
            port.write(b"\r\n")
            assert port.read_until(b">>> ").endswith(b">>> ")
    assert board.boots == boots


def test_the_raw_repl_accepts_raw_paste_mode_as_a_real_board_does(board: VirtualBoard) -> None:
    transport = SerialTransport(str(board.port))
    try:
        transport.enter_raw_repl()
        assert transport.exec("print(6 * 7)") == b"42\n"
        assert transport.use_raw_paste  # mpremote turns it off when a board declines raw paste
    finally:
        transport.close()


def test_a_badge_whose_uid_no_card_can_have_is_refused_by_the_host(board: VirtualBoard) -> None:
    # ISO/IEC 14443-3: 4, 7 or 10 bytes; any other length would fail inside the reader's model instead.
    with pytest.raises(ValueError, match="4, 7 or 10 bytes, not 5"):
        board.present_badge(bytes(5))
