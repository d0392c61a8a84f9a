"""`borne …`: each part of the project adds its own subcommands here."""

from __future__ import annotations

import argparse
import sys

from gateway_daemon import cli as gateway_cli
from hil_tests.virtual_board import __main__ as virtual_board
from payload_codec import cli as codec_cli
from payload_codec.keyfile import KeyFileError

from . import __version__


def _demo(args: argparse.Namespace) -> int:
    print(
        "borne demo is not built yet: it will start a virtual site (simulated boards running the real\n"
        "firmware, the gateway daemon and a mosquitto broker) and show check-ins and telemetry live.\n"
        "Meanwhile, `make test` runs every test.",
        file=sys.stderr,
    )
    return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="borne", description="LoRa + NFC for a town's buildings.")
    parser.add_argument("--version", action="version", version=f"borne {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    codec_cli.add_commands(commands)
    gateway_cli.add_commands(commands)
    sim = commands.add_parser("sim", help="the virtual rig: simulated boards")
    sim_actions = sim.add_subparsers(dest="action", required=True, metavar="ACTION")
    board = sim_actions.add_parser(
        "board", help="run one virtual board on a pty", description=virtual_board.DESCRIPTION
    )
    virtual_board.add_arguments(board)
    board.set_defaults(run=virtual_board.run)
    demo = commands.add_parser("demo", help="run the virtual site (not built yet)")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (KeyFileError, *gateway_cli.ERRORS) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
