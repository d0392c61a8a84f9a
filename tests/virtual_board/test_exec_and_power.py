"""`VirtualBoard.exec` (how tests run code inside the VM) and `power_cycle()`."""

from __future__ import annotations

import pytest

from simulator.virtual_board import BoardExecError, VirtualBoard
from simulator.virtual_board.board import PWRON_RESET


def test_exec_returns_what_the_code_printed(board: VirtualBoard) -> None:
    assert board.exec("for i in range(3):\n    print(i)") == "0\n1\n2\n"


def test_exec_raises_with_the_traceback_and_what_was_printed_before(board: VirtualBoard) -> None:
    with pytest.raises(BoardExecError, match="ZeroDivisionError") as raised:
        board.exec("print('before')\n1 / 0")
    assert raised.value.output == "before\n"
    assert 'File "<stdin>", line 2' in raised.value.traceback


def test_exec_keeps_python_state_between_calls_unless_told_to_soft_reset(board: VirtualBoard) -> None:
    board.exec("counter = 41")
    assert board.exec("counter += 1\nprint(counter)").strip() == "42"
    assert board.exec("print('counter' in globals())", soft_reset=True).strip() == "False"


def test_exec_gives_up_after_its_timeout(board: VirtualBoard) -> None:
    with pytest.raises(TimeoutError, match="did not finish"):
        board.exec("while True:\n    pass", timeout=1)


def test_a_power_cycle_keeps_the_files_and_boots_with_a_power_on_cause(board: VirtualBoard) -> None:
    board.exec("with open('kept.txt', 'w') as f:\n    f.write('kept')")
    board.exec("import machine; machine.WDT(timeout=60000)")
    boots = board.boots
    board.power_cycle()
    assert board.boots == boots + 1
    assert board.exec("import machine; print(machine.reset_cause(), open('kept.txt').read())").split() == [
        str(PWRON_RESET),
        "kept",
    ]
