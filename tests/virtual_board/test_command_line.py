import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.virtual_board.conftest import run_mpremote, wait_for


@pytest.mark.usefixtures("board_tools")
def test_the_command_serves_a_board_until_terminated_and_blank_erases_its_flash(tmp_path: Path) -> None:
    port, flash = tmp_path / "ttyBORNE0", tmp_path / "flash"
    flash.mkdir()
    (flash / "old.py").write_text("left by a previous run")
    command = [sys.executable, "-m", "simulator.virtual_board", "--pty", str(port), "--flash", str(flash), "--blank"]
    with subprocess.Popen(command, stderr=subprocess.PIPE, text=True) as board:
        try:
            wait_for(port.exists)
            done = run_mpremote(port, "fs", "ls", ":")
            assert done.returncode == 0, done.stderr
            assert "old.py" not in done.stdout
        finally:
            board.send_signal(signal.SIGTERM)
            assert board.wait(timeout=10) == 0
    assert not port.exists()
