"""`borne board …` (install a real board) and the provisioning options of `borne sim board`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from boards import provisioning
from boards.installer import Installer, InstallError
from boards.profiles import BoardError, load_profile, profile_names, wiring
from boards.provisioning import NodeOptions, ProvisioningError
from boards.registry import Device
from payload_codec.schema import DIRECTIONS
from simulator.provision import DEFAULT_BOARD as SIM_DEFAULT_BOARD
from simulator.provision import provision_virtual_board
from simulator.virtual_board import __main__ as virtual_board
from simulator.virtual_board.board import VirtualBoardError, install_vm

DEFAULT_REGISTRY = Path("/etc/borne/devices.toml")  # as `borne device add`
ERRORS = (BoardError, InstallError, ProvisioningError, VirtualBoardError)
SIM_DESCRIPTION = (
    f"{virtual_board.DESCRIPTION} Unless --blank, the firmware and a test configuration (keys from the test "
    f"master key, board {SIM_DEFAULT_BOARD} unless --board) are installed on it first."
)


def add_commands(commands: argparse._SubParsersAction) -> None:
    board = commands.add_parser("board", help="install the firmware on a board; list the supported boards")
    actions = board.add_subparsers(dest="action", required=True, metavar="ACTION")
    profiles = actions.add_parser("profiles", help="the supported boards, with their description")
    profiles.set_defaults(run=_profiles)
    wiring_help = "what to wire to a board and on which GPIOs (the installer's guides hold the same tables)"
    board_wiring = actions.add_parser("wiring", help=wiring_help, description=wiring_help + ".")
    board_wiring.add_argument("board", metavar="NAME", help="its profile (`borne board profiles`)")
    board_wiring.set_defaults(run=_wiring)

    flash = actions.add_parser(
        "flash",
        help="install the firmware and a configuration on a board with mpremote",
        description="Install the firmware and its config.json on a MicroPython board over USB, with mpremote; "
        "install the radio drivers with mip if the board lacks them. A node's keys derive from the site key "
        "file for its device id, which must be in the gateway's registry.",
    )
    flash.add_argument("--port", required=True, help="the board's serial port, e.g. /dev/ttyUSB0")
    flash.add_argument("--board", required=True, metavar="NAME", help="its profile (`borne board profiles`)")
    flash.add_argument("--role", required=True, choices=provisioning.ROLES)
    flash.add_argument("--device", type=_number, metavar="ID", help="a node's device id, as registered")
    flash.add_argument("--site", help="a bridge's site (a node's comes from the registry)")
    flash.add_argument("--keys", type=Path, metavar="SITE_KEYS_TOML", help="the site key file (a node needs it)")
    flash.add_argument(
        "--registry", type=Path, default=DEFAULT_REGISTRY, metavar="DEVICES_TOML", help="default: %(default)s"
    )
    add_node_options(flash)
    flash.add_argument(
        "--register",
        action="store_true",
        help="add the node to the registry first (with --name, --site, and --facility, --battery if you like), "
        "as `borne device add` would",
    )
    flash.add_argument("--name", help="with --register: the node's name in MQTT topics (a-z, 0-9, - and _)")
    flash.add_argument("--facility", default="", help="with --register: free text, e.g. school, gym")
    flash.add_argument("--battery", action="store_true", help="with --register: it runs on a battery")
    flash.add_argument("--mip-index", metavar="URL_OR_DIR", help="where mip gets the radio drivers: a mirror")
    flash.add_argument("--dry-run", action="store_true", help="check and show the configuration; touch no board")
    flash.set_defaults(run=_flash)


def add_node_options(parser: argparse.ArgumentParser) -> None:
    """The choices an installer makes for a board, shared by `borne board flash` and `borne sim board`."""
    parser.add_argument("--nfc", choices=provisioning.READERS, help="a badge reader: pn532 (I2C) or mfrc522 (SPI)")
    parser.add_argument("--direction", choices=DIRECTIONS, help="what a check-in at this door means (default none)")
    parser.add_argument(
        "--sensors", type=_names, default=(), help=f"comma-separated, among {','.join(provisioning.SENSORS)}"
    )
    parser.add_argument("--sf", type=int, help=f"spreading factor (default {provisioning.RADIO_DEFAULTS['sf']})")
    parser.add_argument(
        "--freq-khz", type=int, help=f"channel (default {provisioning.RADIO_DEFAULTS['freq_khz']}, EU868)"
    )
    default_s = provisioning.INTERVAL_DEFAULTS["telemetry_s"]
    parser.add_argument(
        "--telemetry-s", type=int, help=f"seconds between reports (default: the registry's, else {default_s})"
    )
    parser.add_argument("--deep-sleep", action="store_true", help="sleep between reports (battery nodes, no NFC)")


def add_sim_options(parser: argparse.ArgumentParser) -> None:
    """`borne sim board`: the virtual board's options, and what to install on it."""
    virtual_board.add_arguments(parser)
    parser.add_argument("--board", metavar="NAME", help=f"the board profile to install (default {SIM_DEFAULT_BOARD})")
    parser.add_argument("--role", choices=provisioning.ROLES, help="default node")
    parser.add_argument("--device", type=_number, metavar="ID", help="a node's device id (default 1)")
    add_node_options(parser)
    parser.set_defaults(run=run_sim_board)


def _number(text: str) -> int:
    return int(text, 0)


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _options(args: argparse.Namespace) -> NodeOptions:
    return NodeOptions(
        nfc=args.nfc,
        direction=args.direction,
        sensors=args.sensors,
        telemetry_s=args.telemetry_s,
        deep_sleep=args.deep_sleep,
    )


def _radio(args: argparse.Namespace) -> dict[str, int | str]:
    given = {"sf": args.sf, "freq_khz": args.freq_khz}
    return {name: value for name, value in given.items() if value is not None}


def _profiles(args: argparse.Namespace) -> int:
    for name in profile_names():
        profile = load_profile(name)
        print(f"{name:<18} {profile['description']}")
    return 0


def _wiring(args: argparse.Namespace) -> int:
    profile = load_profile(args.board)
    print(f"{args.board}: {profile['description']}")
    for part, pins in wiring(profile):
        print(f"  {part:<34} {pins}")
    print("  power each part from the board's 3V3 and GND pins")
    return 0


def _flash(args: argparse.Namespace) -> int:
    profile = load_profile(args.board)
    options = _options(args)
    if args.role == "node":
        if args.device is None:
            raise ProvisioningError("a node needs its device id: --device ID, as registered with `borne device add`")
        if args.keys is None:
            raise ProvisioningError("a node needs the site key file (--keys FILE) to derive its keys")
        pending = _register(args) if args.register else None
        device, secrets = provisioning.registered_node(args.device, args.keys, args.registry, pending)
        if args.site is not None and args.site != device.site:
            registered = f"device {args.device} is in site {device.site!r} in the registry"
            raise ProvisioningError(f"{registered}, not {args.site!r}: drop --site, or register it again")
        options, warnings = provisioning.settle_with_registry(device, options)
        for warning in warnings:
            print(f"warning: {warning}")
        config = provisioning.build_config(
            profile, "node", device.site, device_id=args.device, secrets=secrets, options=options, radio=_radio(args)
        )
    else:
        if args.register:
            raise ProvisioningError("a bridge is not in the device registry (it only relays frames): drop --register")
        if args.keys is not None:
            raise ProvisioningError("a bridge carries no keys (the gateway checks the frames): drop --keys")
        config = provisioning.build_config(
            profile, "bridge", args.site or "", device_id=args.device, options=options, radio=_radio(args)
        )
    if args.dry_run:
        print(f"dry run: would install on {args.port}: {provisioning.summary(config)}")
        print(json.dumps(provisioning.redacted(config), indent=2))
        return 0
    print(f"installing on {args.port}: {provisioning.summary(config)}")
    try:
        Installer(args.port, mip_index=args.mip_index).install(config)
    except InstallError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"done. Its console: python -m mpremote connect {args.port} repl (Ctrl-] to leave)")
    return 0


def _register(args: argparse.Namespace) -> Device:
    """`--register`: the node's registry entry, saved unless this is a dry run."""
    if args.name is None or args.site is None:
        raise ProvisioningError("--register needs the node's --name and --site: its registry entry is made of them")
    registration = provisioning.Registration(
        name=args.name,
        site=args.site,
        facility=args.facility,
        sensors=args.sensors,
        nfc=args.nfc is not None,
        battery=args.battery or args.deep_sleep,
        report_interval_s=args.telemetry_s or provisioning.INTERVAL_DEFAULTS["telemetry_s"],
    )
    device = provisioning.register_device(args.device, registration, args.keys, args.registry, save=not args.dry_run)
    done = "dry run: would register" if args.dry_run else "registered"
    print(f"{done} device {device.device_id} as {device.site}/{device.name} in {args.registry}")
    return device


_PROVISIONING_OPTIONS = ("board", "role", "device", "nfc", "direction", "sf", "freq_khz", "telemetry_s")


def run_sim_board(args: argparse.Namespace) -> int:
    """`borne sim board`: install the firmware and a test configuration, unless --blank; then run the board."""
    if args.blank:
        given = [name for name in _PROVISIONING_OPTIONS if getattr(args, name) is not None]
        given += ["sensors"] * bool(args.sensors) + ["deep_sleep"] * args.deep_sleep
        if given:
            options = ", ".join("--" + name.replace("_", "-") for name in given)
            raise ProvisioningError(f"--blank leaves the board erased, with nothing installed: drop {options}")
    else:
        installed = provision_virtual_board(
            args.flash,
            board=args.board,
            role=args.role,
            device_id=args.device,
            options=_options(args),
            radio=_radio(args),
        )
        args.radio_chip = installed.radio_chip
        args.mcu = installed.mcu
        print(f"installed in {args.flash}: {installed.summary()}", file=sys.stderr)
    install_vm()
    return virtual_board.run(args)
