"""`borne …`: argument parsing only; each subcommand calls into the layer it belongs to."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from boards.keyfile import KeyFileError
from gateway_daemon import cli as gateway_cli
from hil_tests import bench
from hil_tests.rig_file import RigFileError
from simulator import bench_site, demo, soak
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
    add_bench_site_commands(sim_actions)
    board_cli.add_commands(commands)
    add_demo_command(commands)
    add_bench_commands(commands)
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
    parser.add_argument(
        "--every",
        type=float,
        default=defaults.visitor_every_s,
        help="seconds between two visitors at a door (%(default)s: within a door's duty cycle)",
    )
    parser.add_argument("--concentrator", action="store_true", help="a concentrator beside the bridge: two receivers")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--work", type=Path, help="where the boards' flash, the state and logs go (a temp dir)")
    parser.set_defaults(run=_run_soak)


def _run_soak(args: argparse.Namespace) -> int:
    options = soak.SoakOptions(
        checkins=args.checkins,
        doors=args.doors,
        faults_per_kind=args.faults_per_kind,
        outage_s=args.outage,
        seed=args.seed,
        concentrator=args.concentrator,
        visitor_every_s=args.every,
    )
    install_vm()
    if args.work is not None:
        return soak.main(args.work, options)
    with tempfile.TemporaryDirectory(prefix="borne-soak-") as work:
        return soak.main(Path(work), options)


def add_bench_site_commands(sim_actions: argparse._SubParsersAction) -> None:
    """What a bench owner's scripts would do at a bench, done to a virtual site served as one."""
    badge = sim_actions.add_parser(
        "badge",
        help="hold a badge at a board's reader on a bench site",
        description="Hold a badge at the reader of a board of a bench site (python -m simulator.bench_site), "
        "then take it away: a rig file's badge presenter for a bench of virtual boards.",
    )
    badge.add_argument("--control", type=Path, required=True, help="the bench site's control socket")
    badge.add_argument("--board", required=True, help="the board's name")
    badge.add_argument("--uid", type=bytes.fromhex, required=True, help="the badge's UID in hex, e.g. 04a1b2c3")
    badge.add_argument("--held", type=float, default=bench_site.HELD_S, help="seconds held (default %(default)s)")
    badge.set_defaults(run=_present_badge)
    power = sim_actions.add_parser(
        "power",
        help="cut or restore a board's power on a bench site",
        description="Cut or restore the power of a board of a bench site: a rig file's power switch.",
    )
    power.add_argument("--control", type=Path, required=True, help="the bench site's control socket")
    power.add_argument("--board", required=True, help="the board's name")
    power.add_argument("state", choices=("on", "off"))
    power.set_defaults(run=_set_power)
    broker = sim_actions.add_parser(
        "broker",
        help="stop or start the broker of a bench site",
        description="Stop or start the MQTT broker of a bench site: a rig file's broker control commands.",
    )
    broker.add_argument("--control", type=Path, required=True, help="the bench site's control socket")
    broker.add_argument("state", choices=("stop", "start"))
    broker.set_defaults(run=_set_broker)


def _present_badge(args: argparse.Namespace) -> int:
    bench_site.present_badge(args.control, args.board, args.uid, args.held)
    return 0


def _set_power(args: argparse.Namespace) -> int:
    bench_site.set_power(args.control, args.board, args.state == "on")
    return 0


def _set_broker(args: argparse.Namespace) -> int:
    bench_site.set_broker(args.control, args.state == "start")
    return 0


def add_bench_commands(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("bench", help="the hardware-in-the-loop suite on a bench of real boards")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = actions.add_parser(
        "check", help="which scenarios the bench can run, and why others will skip", description=bench.__doc__
    )
    check.add_argument("--rig", type=Path, required=True, help="the bench's rig file (`borne bench example`)")
    check.set_defaults(run=lambda args: print(bench.check(args.rig)) or 0)
    example = actions.add_parser(
        "example", help="print a complete, commented rig file to start from: borne bench example > bench.toml"
    )
    example.set_defaults(run=lambda args: print(bench.EXAMPLE.read_text(encoding="utf-8"), end="") or 0)
    run = actions.add_parser("run", help="run the suite on the bench; with --report, write its report")
    run.add_argument("--rig", type=Path, required=True, help="the bench's rig file")
    run.add_argument("--report", type=Path, metavar="DIR", help="where junit.xml and summary.md go")
    run.add_argument("-k", metavar="EXPRESSION", help="only the scenarios whose names match, as pytest's -k")
    run.set_defaults(run=lambda args: bench.run(args.rig, args.report, ["-k", args.k] if args.k else []))


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
        code = args.run(args)
        sys.stdout.flush()  # here, not at exit: a reader that stopped early (`| head`) is met below
        return code
    except (
        KeyFileError,
        RigFileError,
        bench.BenchError,
        bench_site.BenchSiteError,
        *gateway_cli.ERRORS,
        *board_cli.ERRORS,
    ) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader stopped early (`| head`): what it read is whole. Python's own flush at exit would
        # fail on the closed pipe too, so stdout goes to /dev/null (the signal module's docs do this).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
