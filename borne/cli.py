"""`borne …`: argument parsing only; each subcommand calls into the layer it belongs to."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from boards.keyfile import KeyFileError
from gateway_daemon import cli as gateway_cli
from simulator import demo

from . import __version__, board_cli, codec_cli


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
    add_demo_command(commands)
    return parser


def add_demo_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("demo", help="run the virtual site live", description=demo.__doc__)
    defaults = demo.DemoOptions()
    parser.add_argument(
        "--duration", type=float, default=defaults.duration_s, help="stop after this many seconds (default: Ctrl-C)"
    )
    parser.add_argument(
        "--work", type=Path, help="where the boards' flash, the state and logs go (default: a temp dir)"
    )
    parser.add_argument(
        "--visit-every",
        type=float,
        default=defaults.visit_every_s,
        help="seconds between visitors (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help="the medium's and the visitors' randomness")
    parser.set_defaults(run=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    return demo.run_demo(demo.DemoOptions(args.duration, args.work, args.visit_every, args.seed))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (KeyFileError, *gateway_cli.ERRORS, *board_cli.ERRORS) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
