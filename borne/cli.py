"""`borne …`: each part of the project adds its own subcommands here."""

from __future__ import annotations

import argparse
import sys

from gateway_daemon import cli as gateway_cli
from payload_codec import cli as codec_cli
from payload_codec.keyfile import KeyFileError

from . import __version__, board_cli
from . import demo as demo_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="borne", description="LoRa + NFC for a town's buildings.")
    parser.add_argument("--version", action="version", version=f"borne {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    codec_cli.add_commands(commands)
    gateway_cli.add_commands(commands)
    sim = commands.add_parser("sim", help="the virtual rig: simulated boards")
    sim_actions = sim.add_subparsers(dest="action", required=True, metavar="ACTION")
    board = sim_actions.add_parser(
        "board", help="run one virtual board on a pty", description=board_cli.SIM_DESCRIPTION
    )
    board_cli.add_sim_options(board)
    board_cli.add_commands(commands)
    demo = commands.add_parser("demo", help="run the virtual site live", description=demo_cli.__doc__)
    demo_cli.add_arguments(demo)
    demo.set_defaults(run=demo_cli.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (KeyFileError, *gateway_cli.ERRORS, *board_cli.ERRORS) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
