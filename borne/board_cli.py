"""`borne board …` (install a real board) and the provisioning options of `borne sim board`."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from boards import provisioning
from boards.installer import BoardFacts, EnrolledBadge, Installer, InstallError, enroll_badges
from boards.profiles import BoardError, for_board, load_profile, profile_names, strapping_warnings, wiring
from boards.provisioning import NodeOptions, ProvisioningError
from boards.registry import Device
from gateway_daemon.cli import DEFAULT_REGISTRY, REGISTRY_HELP
from payload_codec.schema import DIRECTIONS
from simulator.provision import DEFAULT_BOARD as SIM_DEFAULT_BOARD
from simulator.provision import provision_virtual_board
from simulator.virtual_board import __main__ as virtual_board
from simulator.virtual_board.board import VirtualBoardError, install_vm, radio_wiring

ENROL_TIMEOUT_S = 120
CSV_HEADER = ("badge_token", "tag_type")  # badge_token as check-ins carry it on MQTT
ERRORS = (BoardError, InstallError, ProvisioningError, VirtualBoardError)
SIM_DESCRIPTION = (
    f"{virtual_board.DESCRIPTION} Unless --blank, the firmware and a test configuration (keys from the test "
    f"master key, board {SIM_DEFAULT_BOARD} unless --board) are installed on it first. With --blank nothing is: "
    "--board, --nfc and --sensors still say which board it is and which chips are wired to it, to practise "
    "`borne board flash` and `borne board check` on."
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
        description="Install the firmware (its radio drivers included: no network needed) and its config.json on "
        "a MicroPython board over USB, with mpremote. A node's keys derive from the site key file for its device "
        "id, which must be in the gateway's registry.",
    )
    flash.add_argument("--port", required=True, help="the board's serial port, e.g. /dev/ttyUSB0")
    flash.add_argument("--board", required=True, metavar="NAME", help="its profile (`borne board profiles`)")
    flash.add_argument("--role", required=True, choices=provisioning.ROLES)
    flash.add_argument("--device", type=_number, metavar="ID", help="a node's device id, as registered")
    flash.add_argument("--site", help="a bridge's site (a node's comes from the registry)")
    flash.add_argument("--keys", type=Path, metavar="SITE_KEYS_TOML", help="the site key file (a node needs it)")
    flash.add_argument("--registry", type=Path, default=DEFAULT_REGISTRY, metavar="DEVICES_TOML", help=REGISTRY_HELP)
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
    flash.add_argument("--dry-run", action="store_true", help="check and show the configuration; touch no board")
    flash.set_defaults(run=_flash)

    check = actions.add_parser(
        "check",
        help="run a flashed board's self-test: configuration, radio, reader, sensors, flash, counters",
        description="Stop the firmware, read the configuration back (keys not shown), check that the radio, the "
        "badge reader and each sensor answer with plausible values, the flash's free space and the frame counters, "
        "then start the firmware again. Exit code 1 if a check fails, with what to do.",
    )
    check.add_argument("--port", required=True, help="the board's serial port, e.g. /dev/ttyUSB0")
    check.add_argument(
        "--show-config", action="store_true", help="also print the configuration read back (keys not shown)"
    )
    check.set_defaults(run=_check)

    badge = commands.add_parser("badge", help="badges on a door board: their tokens for the facility's directory")
    badge_actions = badge.add_subparsers(dest="action", required=True, metavar="ACTION")
    enroll = badge_actions.add_parser(
        "enroll",
        help="print the token of each badge tapped on a door board's reader",
        description="Stop the firmware of a flashed door board and print the token of each badge tapped on its "
        "reader, once per badge: the token its check-ins carry (the board computes it with the site's badge key), "
        "never the badge's UID. The firmware starts again at the end.",
    )
    enroll.add_argument("--port", required=True, help="the board's serial port, e.g. /dev/ttyUSB0")
    enroll.add_argument(
        "--csv", type=Path, metavar="FILE", help="also write the tokens there (added to a file from an earlier session)"
    )
    enroll.add_argument("--count", type=_positive, metavar="N", help="stop after N badges")
    enroll.add_argument(
        "--timeout", type=_positive, default=ENROL_TIMEOUT_S, metavar="S", help="stop after S seconds (%(default)s)"
    )
    enroll.set_defaults(run=_enroll)


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


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value}: give a number above 0")
    return value


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
    device: Device | None = None
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
        config = _node_config(profile, device, secrets, options, args)
    else:
        if args.register:
            raise ProvisioningError("a bridge is not in the device registry (it only relays frames): drop --register")
        if args.keys is not None:
            raise ProvisioningError("a bridge carries no keys (the gateway checks the frames): drop --keys")
        config = provisioning.build_config(
            profile, "bridge", args.site or "", device_id=args.device, options=options, radio=_radio(args)
        )
    wired = ["nfc_spi"] if (config.get("nfc") or {}).get("reader") == "mfrc522" else []
    wired += ["pulse"] if "pulse" in config.get("sensors", ()) else []
    for warning in strapping_warnings(profile, wired):
        print(f"warning: {warning}")
    if args.dry_run:
        print(f"dry run: would install on {args.port}: {provisioning.summary(config)}")
        print(json.dumps(provisioning.redacted(config), indent=2))
        return 0
    print(f"installing on {args.port}: {provisioning.summary(config)}")
    installer = Installer(args.port)
    try:
        facts = installer.probe_for(profile["mcu"])
        if device is not None:
            config = _rekeyed(profile, device, facts, options, args) or config
        installer.install(config, facts=facts)
    except InstallError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"done. Its console: mpremote connect {args.port} repl (Ctrl-] to leave)")
    return 0


def _check(args: argparse.Namespace) -> int:
    print(f"checking the board on {args.port} (its firmware stops for the test, then starts again)")
    try:
        checked = Installer(args.port).check()
    except InstallError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    width = max(len(result.name) for result in checked.results)
    for result in checked.results:
        print(f"{result.name:<{width}}  {'pass' if result.ok else 'FAIL'}  {result.found}")
        if not result.ok:
            print(f"{'':<{width}}  -> {result.advice}")
    failed = sum(not result.ok for result in checked.results)
    if failed:
        print(f"{failed} of {len(checked.results)} checks failed: fix them, then run `borne board check` again")
    else:
        print(f"all {len(checked.results)} checks passed")
    if args.show_config and checked.config is not None:
        print(json.dumps(checked.config, indent=2, sort_keys=True))
    return 1 if failed else 0


def _enroll(args: argparse.Namespace) -> int:
    listed = _listed_tokens(args.csv) if args.csv else set()
    new: list[EnrolledBadge] = []

    def on_badge(badge: EnrolledBadge) -> None:
        counted = f"{len(new) + 1}/{args.count}" if args.count else f"{len(new) + 1}"
        if badge.token in listed:
            print(f"{counted:>7}  {badge.token}  {badge.tag_type}  (already in {args.csv})")
        else:
            print(f"{counted:>7}  {badge.token}  {badge.tag_type}")
            if args.csv:
                _append_csv(args.csv, badge)
            listed.add(badge.token)
        new.append(badge)

    print(f"enrolling badges on {args.port} (its firmware stops meanwhile, then starts again)")
    try:
        enroll_badges(args.port, on_badge=on_badge, count=args.count, timeout_s=args.timeout)
    except InstallError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    written = f"; tokens in {args.csv}" if args.csv else ""
    if not new:
        print(f"no badge read in {args.timeout} s: tap each badge flat on the reader, then run this again")
        return 1
    print(f"done, badges read: {len(new)}{written}")
    return 0


def _listed_tokens(path: Path) -> set[str]:
    """The tokens already in an enrolment CSV, if it exists."""
    if not path.exists():
        return set()
    with path.open(newline="", encoding="utf-8") as f:
        return {row["badge_token"] for row in csv.DictReader(f) if row.get("badge_token")}


def _append_csv(path: Path, badge: EnrolledBadge) -> None:
    """One row per badge, written as it comes: a session cut short keeps what it read."""
    new_file = not path.exists()
    with path.open("a", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        if new_file:
            writer.writerow(CSV_HEADER)
        writer.writerow((badge.token, badge.tag_type))


def _node_config(
    profile: dict, device: Device, secrets: provisioning.NodeSecrets, options: NodeOptions, args: argparse.Namespace
) -> dict:
    return provisioning.build_config(
        profile,
        "node",
        device.site,
        device_id=device.device_id,
        secrets=secrets,
        options=options,
        radio=_radio(args),
        key_epoch=device.key_epoch,
    )


def _rekeyed(
    profile: dict, device: Device, facts: BoardFacts, options: NodeOptions, args: argparse.Namespace
) -> dict | None:
    """The node's configuration in a new key epoch if this board cannot go on with its counters, else None;
    the registry records the board either way."""
    if facts.unique_id is None:
        raise InstallError(
            f"the board on {args.port} did not say its unique id (machine.unique_id()), which tells one board from "
            "another: update MicroPython on it, then run this again"
        )
    holds = facts.holds_counters_of(device.site, device.device_id, device.key_epoch)
    moved, secrets, reason = provisioning.flash_onto(device, args.keys, args.registry, facts.unique_id, holds)
    if reason is None:
        return None
    print(
        f"device {device.device_id} moves to key epoch {moved.key_epoch} ({reason}): new keys, its counters start "
        f"over; {args.registry} is updated: running gateways that read it see the change at the device's next frame"
    )
    return _node_config(profile, moved, secrets, options, args)


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


# What only an installation sets: a blank board takes its profile (--board) and the chips wired to it
# (--nfc, --sensors), to practise `borne board flash` and `check` on, but none of these.
_INSTALL_OPTIONS = ("role", "device", "direction", "sf", "freq_khz", "telemetry_s")


def run_sim_board(args: argparse.Namespace) -> int:
    """`borne sim board`: install the firmware and a test configuration, unless --blank; then run the board."""
    if args.blank:
        given = [name for name in _INSTALL_OPTIONS if getattr(args, name) is not None]
        given += ["deep_sleep"] * args.deep_sleep
        if given:
            options = ", ".join("--" + name.replace("_", "-") for name in given)
            raise ProvisioningError(f"--blank leaves the board erased, with nothing installed: drop {options}")
        profile = for_board(load_profile(args.board or SIM_DEFAULT_BOARD))
    else:
        installed = provision_virtual_board(
            args.flash,
            board=args.board,
            role=args.role,
            device_id=args.device,
            options=_options(args),
            radio=_radio(args),
        )
        profile = installed.config["board"]
        print(f"installed in {args.flash}: {installed.summary()}", file=sys.stderr)
    # The virtual board is built as the profile says: its radio chip on the same lines, its MCU's heap,
    # its console (a UART, or native USB), its power chip.
    args.radio_chip = str(profile["radio"]["chip"])
    args.radio_wiring = radio_wiring(profile["radio"])
    args.board_profile = profile
    args.mcu = str(profile["mcu"])
    args.console = str(profile["console"])
    install_vm()
    return virtual_board.run(args)
