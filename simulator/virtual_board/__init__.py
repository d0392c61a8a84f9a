"""A virtual ESP32 board: the real MicroPython VM under Node, reached over a pty like a real board."""

from simulator.virtual_board.board import BoardExecError, VirtualBoard, VirtualBoardError, check_vm_installed
from simulator.virtual_board.medium import RadioMedium

__all__ = ["BoardExecError", "RadioMedium", "VirtualBoard", "VirtualBoardError", "check_vm_installed"]
