import os
import sys
from pathlib import Path

import pytest

from simulator.virtual_board import VirtualBoard, VirtualBoardError, check_vm_installed
from simulator.virtual_board import mcu as mcu_module
from simulator.virtual_board.console import Console


def test_a_missing_node_says_to_install_node() -> None:
    with pytest.raises(VirtualBoardError, match=r"Node\.js"):
        check_vm_installed(node="no-such-node-binary")


def test_a_missing_vm_package_says_to_run_npm_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(mcu_module, "NPM_PROJECT", tmp_path / "absent")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(VirtualBoardError, match="npm ci"):
        check_vm_installed(node=sys.executable)  # any program that exists stands in for node


def test_the_board_refuses_to_replace_a_file_that_is_not_its_port(tmp_path: Path) -> None:
    (tmp_path / "ttyUSB0").write_text("not a pty")
    with pytest.raises(VirtualBoardError, match="not a link to a pty"), VirtualBoard(tmp_path / "ttyUSB0", tmp_path):
        pass


def test_a_second_board_on_a_running_boards_port_is_refused_and_takes_nothing_from_it(tmp_path: Path) -> None:
    port = tmp_path / "ttyBORNE0"
    running = Console(port)
    running.open()
    try:
        with pytest.raises(VirtualBoardError, match="is the port of a virtual board that is running"):
            Console(port).open()
        theirs = os.readlink(port)
        Console(port).close()  # a board that never opened this port leaves it alone
        assert os.readlink(port) == theirs
    finally:
        running.close()
    assert not port.is_symlink()
    # A board killed before it could remove its link leaves a link to a pty that is gone: the next takes it.
    port.symlink_to("/dev/pts/999999")
    after = Console(port)
    after.open()
    after.close()
