"""Run a virtual board until interrupted: `python -m simulator.virtual_board --pty /tmp/ttyBORNE0`."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import threading
from pathlib import Path

from simulator.virtual_board.board import VirtualBoard, VirtualBoardError
from simulator.virtual_board.medium import RadioMedium


def default_flash() -> Path:
    """Where a virtual board keeps its flash between runs unless told otherwise."""
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return state / "borne" / "virtual-board" / "flash"


DESCRIPTION = (
    "Run a virtual ESP32 (the real MicroPython VM under Node) reachable over a pty, e.g. `mpremote connect PATH`."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `borne sim board` (and of `python -m simulator.virtual_board`)."""
    parser.add_argument("--pty", required=True, type=Path, help="the serial port to create, e.g. /tmp/ttyBORNE0")
    parser.add_argument(
        "--flash", type=Path, default=default_flash(), help="host directory of the board's files (default: %(default)s)"
    )
    parser.add_argument(
        "--state",
        type=Path,
        help="host directory of the board's NVS partition and RTC memory (default: FLASH.state beside the flash)",
    )
    parser.add_argument(
        "--blank", action="store_true", help="erase the flash and NVS first, like a freshly erased board"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="borne sim board", description=DESCRIPTION)
    add_arguments(parser)
    return run(parser.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Power the board on and keep it running until SIGINT or SIGTERM."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    state = args.state or args.flash.with_name(args.flash.name + ".state")
    if args.blank:
        for directory in (args.flash, state):
            if directory.exists():
                shutil.rmtree(directory)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        # Its radio chip (the provisioned profile's) is alone on a medium: what it sends, nobody hears.
        chip = getattr(args, "radio_chip", None) or "sx1276"
        wiring = getattr(args, "radio_wiring", None)
        mcu = getattr(args, "mcu", None) or "esp32"
        console = getattr(args, "console", None) or "uart"
        with RadioMedium() as medium:
            board = VirtualBoard(
                args.pty,
                args.flash,
                state=state,
                radio=chip,
                radio_wiring=wiring,
                medium=medium,
                mcu=mcu,
                console=console,
            )
            # What its configuration names (`borne sim board --nfc --sensors`), and a T-Beam's power chip.
            profile, sensors = getattr(args, "board_profile", None) or {}, getattr(args, "sensors", None) or ()
            board.wire_parts(profile, sensors, getattr(args, "nfc", None))
            with board:
                print(f"virtual board on {board.port}, flash in {board.flash}; Ctrl-C to power it off", file=sys.stderr)
                stop.wait()
    except VirtualBoardError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
