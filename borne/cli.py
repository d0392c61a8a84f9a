"""`borne …`: argument parsing only; each subcommand calls into the layer it belongs to."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from boards.keyfile import KeyFileError
from gateway_daemon import cli as gateway_cli
from simulator import demo, soak
from simulator.virtual_board.board import install_vm

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
    add_soak_command(sim_actions)
    board_cli.add_commands(commands)
    add_demo_command(commands)
    return parser


def add_soak_command(actions: argparse._SubParsersAction) -> None:
    parser = actions.add_parser(
        "soak",
        help="the virtual site through many check-ins and faults; counts what was lost",
        description=soak.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    defaults = soak.SoakOptions()
    parser.add_argument("--checkins", type=int, default=defaults.checkins, help="badges presented (%(default)s)")
    parser.add_argument("--doors", type=int, default=defaults.doors, help="door nodes (%(default)s)")
    parser.add_argument(
        "--faults-per-kind", type=int, default=defaults.faults_per_kind, help="default: one per 1,000 check-ins"
    )
    parser.add_argument(
        "--outage", type=float, default=defaults.outage_s, help="seconds a gateway outage lasts (%(default)s)"
    )
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--work", type=Path, help="where the boards' flash, the state and logs go (a temp dir)")
    parser.set_defaults(run=_run_soak)


def _run_soak(args: argparse.Namespace) -> int:
    options = soak.SoakOptions(args.checkins, args.doors, args.faults_per_kind, args.outage, args.seed)
    install_vm()
    if args.work is not None:
        return soak.main(args.work, options)
    with tempfile.TemporaryDirectory(prefix="borne-soak-") as work:
        return soak.main(Path(work), options)


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
