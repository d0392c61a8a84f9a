"""`borne gateway …` and `borne device …`: run the daemon, configure it, see its state, register devices."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import signal
import sys
import time
from pathlib import Path

from boards import provisioning
from boards.keyfile import create_key_file
from boards.registry import NAME_PATTERN, Registry, RegistryError
from payload_codec import Config
from payload_codec.schema import DIRECTIONS

from . import logs
from .config import EXAMPLE, ConfigError, load_config, site_config
from .daemon import Gateway
from .device_config import ConfigRefused, pending_changes, queue_config
from .state import GatewayState, StateError

CONFIG_DIR = Path("/etc/borne")
DEFAULT_CONFIG = CONFIG_DIR / "gateway.toml"
DEFAULT_STATE = Path("/var/lib/borne/state.db")  # as the example configuration's
SITE_FILES = ("site-keys.toml", "devices.toml", "gateway.toml")
DEFAULT_REGISTRY = CONFIG_DIR / "devices.toml"
REGISTRY_HELP = "the site's device registry, which the gateway reads (default: %(default)s)"


def add_commands(commands: argparse._SubParsersAction) -> None:
    gateway = commands.add_parser("gateway", help="run and inspect the gateway daemon")
    actions = gateway.add_subparsers(dest="action", required=True, metavar="ACTION")
    run = actions.add_parser("run", help="run the daemon in the foreground (systemd starts it so)")
    run.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG, help=f"configuration file (default {DEFAULT_CONFIG})"
    )
    run.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    run.add_argument("--log-json", action="store_true", help="one JSON object a line, for log shippers")
    run.set_defaults(run=_run)
    config = actions.add_parser("config", help="print an example configuration, every setting commented (--example)")
    config.add_argument("--example", action="store_true", required=True, help="a complete commented example")
    config.set_defaults(run=lambda args: print(EXAMPLE, end="") or 0)
    status = actions.add_parser("status", help="devices last seen, signal, battery, lost frames, outbox depth")
    status.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    status.set_defaults(run=_status)

    site = commands.add_parser("site", help="a new site: its key file, device registry and gateway configuration")
    site_actions = site.add_subparsers(dest="action", required=True, metavar="ACTION")
    init = site_actions.add_parser(
        "init",
        help="create a site's key file, an empty registry and a gateway configuration",
        description="Create, in one folder, the site's key file (a random master key, readable by its owner only), "
        "an empty device registry and a gateway configuration that names them. Refuses to overwrite any of them.",
    )
    init.add_argument("name", help="the site's name, as MQTT topics show it (a-z, 0-9, - and _)")
    init.add_argument("--dir", type=Path, default=CONFIG_DIR, help="where the three files go (default: %(default)s)")
    init.set_defaults(run=_site_init)

    device = commands.add_parser("device", help="register and list devices")
    device_actions = device.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = device_actions.add_parser("add", help="register a device; its keys derive from the site key file")
    add.add_argument("device_id", type=lambda text: int(text, 0), help="device id, 0-65535")
    add.add_argument("--name", required=True, help="short name, becomes the MQTT topic level (a-z, 0-9, -, _)")
    add.add_argument("--site", required=True, help="site name, becomes the MQTT topic level")
    add.add_argument("--facility", default="", help="free text: school, gym, town hall…")
    add.add_argument("--keys", type=Path, required=True, help="site key file (master_key)")
    add.add_argument("--battery", action="store_true", help="runs on battery (Home Assistant expires its values)")
    add.add_argument("--report-interval", type=int, default=300, help="seconds between telemetry reports")
    add.add_argument(
        "--status-interval",
        type=int,
        default=provisioning.INTERVAL_DEFAULTS["status_s"],
        help="seconds between status reports (%(default)s); `borne board flash` gives the board this",
    )
    add.add_argument(
        "--sensors",
        default="",
        help=f"the chips wired to it, comma-separated, among {','.join(provisioning.SENSORS)} (as `borne board flash`)",
    )
    add.add_argument("--nfc", action="store_true", help="has a badge reader")
    add.add_argument("--registry", type=Path, default=DEFAULT_REGISTRY, metavar="DEVICES_TOML", help=REGISTRY_HELP)
    add.set_defaults(run=_device_add)
    listing = device_actions.add_parser("list", help="list registered devices (keys shortened)")
    listing.add_argument("--registry", type=Path, default=DEFAULT_REGISTRY, metavar="DEVICES_TOML", help=REGISTRY_HELP)
    listing.set_defaults(run=_device_list)
    remove = device_actions.add_parser("remove", help="unregister a device")
    remove.add_argument("device_id", type=lambda text: int(text, 0))
    remove.add_argument("--registry", type=Path, default=DEFAULT_REGISTRY, metavar="DEVICES_TOML", help=REGISTRY_HELP)
    remove.set_defaults(run=_device_remove)
    configure = device_actions.add_parser(
        "configure",
        help="change a node's settings over the air",
        description="Queue a config downlink in the gateway's state. The gateway sends it in the receive window "
        "after the node's next status and again after each status until one shows it applied; "
        "`borne gateway status` lists what is pending. Works while the daemon runs.",
    )
    configure.add_argument("device_id", type=lambda text: int(text, 0), help="device id, 0-65535")
    configure.add_argument("--report-interval", type=int, metavar="S", help="seconds between telemetry reports")
    configure.add_argument("--status-interval", type=int, metavar="S", help="seconds between status reports")
    configure.add_argument("--sf", type=int, metavar="N", help="spreading factor (every receiver must hear it)")
    configure.add_argument("--power", type=int, metavar="DBM", help="transmit power, up to the sub-band's legal ERP")
    configure.add_argument("--retap-delay", type=int, metavar="S", help="seconds before the same badge checks in again")
    configure.add_argument("--direction", choices=DIRECTIONS[1:], help="what this door's check-ins mean")
    configure.add_argument("--reboot", action="store_true", help="restart the node once it has the change")
    configure.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG, help=f"gateway configuration (default {DEFAULT_CONFIG})"
    )
    configure.set_defaults(run=_device_configure)


def _run(args: argparse.Namespace) -> int:
    logs.configure(args.log_level, args.log_json)
    config = load_config(args.config)
    gateway = Gateway(config)

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for stop in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(stop, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await gateway.run()

    asyncio.run(main())
    return 0


def _status(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    registry = Registry.load(Path(config.gateway.registry_file))
    state = GatewayState(Path(config.gateway.state_file), config.gateway.max_outbox_events)
    now = time.time()
    print(
        f"{'device':>6}  {'name':<20} {'last seen':>10} {'RSSI':>6} {'SNR':>6} {'battery':>8} {'frames':>7} {'lost':>5}"
    )
    heard = state.devices()
    for seen in heard:
        device = registry.get(seen.device_id)
        name = f"{device.site}/{device.name}" if device else "(unregistered)"
        ago = "never" if seen.last_seen is None else f"{now - seen.last_seen:.0f} s ago"
        battery = "-" if seen.battery_mv is None else f"{seen.battery_mv} mV"
        print(
            f"{seen.device_id:>6}  {name:<20} {ago:>10} {seen.rssi_dbm or 0:>6.0f} {seen.snr_db or 0:>6.1f} "
            f"{battery:>8} {seen.frames:>7} {seen.lost_frames:>5}"
        )
    unheard = sorted(set(registry.devices) - {seen.device_id for seen in heard})
    if unheard:
        names = ", ".join(f"{device_id} {registry.devices[device_id].name}" for device_id in unheard[:10])
        more = f" and {len(unheard) - 10} more" if len(unheard) > 10 else ""
        print(f"registered, not heard yet: {names}{more} (each appears above with its first frame)")
    held, _ = state.held()
    refused = f" ({held} refused by the broker's access rules, tried again every minute)" if held else ""
    print(f"outbox: {state.depth()} events waiting for the broker{refused}; dropped: {state.dropped() or 'none'}")
    pending = state.pending_configs()
    print(f"config downlinks pending: {len(pending) or 'none'}")
    for waiting in pending:
        device = registry.get(waiting.device_id)
        name = f"{device.site}/{device.name}" if device else "(unregistered)"
        tried = "not sent yet" if waiting.last_try_at is None else f"last sent {now - waiting.last_try_at:.0f} s ago"
        print(
            f"{waiting.device_id:>6}  {name:<20} since {now - waiting.queued_at:.0f} s, tries {waiting.tries} "
            f"({tried}): {_changes_text(pending_changes(waiting))}"
        )
    state.close()
    return 0


def _device_configure(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    registry_file = Path(config.gateway.registry_file)
    registry = Registry.load(registry_file)
    device = registry.get(args.device_id)
    if device is None:
        raise ConfigRefused(f"device {args.device_id} is not in {registry_file}: register it with `borne device add`")
    changes = Config(
        report_interval_s=args.report_interval,
        status_interval_s=args.status_interval,
        spreading_factor=args.sf,
        tx_power_dbm=args.power,
        badge_retap_s=args.retap_delay,
        checkin_direction=args.direction,
        reboot=args.reboot,
    )
    if changes == Config():
        raise ConfigRefused("nothing to change: give at least one of the options (see --help)")
    if (args.retap_delay is not None or args.direction is not None) and not device.nfc:
        raise ConfigRefused(f"device {args.device_id} has no badge reader: --retap-delay and --direction are for doors")
    state = GatewayState(Path(config.gateway.state_file), config.gateway.max_outbox_events)
    try:
        queued = queue_config(state, args.device_id, changes, time.time())
    finally:
        state.close()
    # Home Assistant's expiry follows the registry's intervals: keep them as the node is told.
    report_interval_s = args.report_interval or device.report_interval_s
    status_interval_s = args.status_interval or device.status_interval_s
    registry_note = ""
    if (report_interval_s, status_interval_s) != (device.report_interval_s, device.status_interval_s):
        registry.devices[device.device_id] = dataclasses.replace(
            device, report_interval_s=report_interval_s, status_interval_s=status_interval_s
        )
        registry.save(registry_file)
        registry_note = f"; {registry_file} has the new intervals: running gateways read it at their next frame"
    print(
        f"device {args.device_id} ({device.site}/{device.name}): queued {_changes_text(queued)}; it goes out after "
        f"the node's next status (`borne gateway status` shows it until the node reports it applied){registry_note}"
    )
    return 0


def _changes_text(config: Config) -> str:
    return ", ".join(f"{name} {value}" if value is not True else name for name, value in config.to_json().items())


def _site_init(args: argparse.Namespace) -> int:
    if not NAME_PATTERN.match(args.name):
        raise ConfigError(f"site name {args.name!r}: use 1-63 of a-z, 0-9, - and _ (it becomes an MQTT topic level)")
    folder = args.dir.absolute()
    keys, registry, config = (folder / name for name in SITE_FILES)
    existing = [str(path) for path in (keys, registry, config) if path.exists()]
    if existing:
        raise ConfigError(
            f"{', '.join(existing)} exist(s) already: `borne site init` never overwrites a site's files. "
            "Choose another --dir, or keep using them"
        )
    state = DEFAULT_STATE if folder == CONFIG_DIR else folder / "state.db"
    text = site_config(f"{args.name}-gateway", registry, state)
    create_key_file(keys)
    Registry({}).save(registry)
    config.write_text(text, encoding="utf-8")
    config.chmod(0o600)  # it will hold the MQTT password
    where = "" if folder == CONFIG_DIR else f" --registry {registry}"
    print(
        f"site {args.name}: created in {folder}\n"
        f"  {keys.name:<16} the master key, readable by you only: keep a copy offline, never on a board\n"
        f"  {registry.name:<16} the device registry, empty\n"
        f"  {config.name:<16} the gateway's configuration: set [serial] port or [udp], and [mqtt]\n"
        "next:\n"
        f"  borne device add 1 --name entrance --site {args.name} --keys {keys}{where} --nfc\n"
        f"  borne board flash --port /dev/ttyUSB0 --board heltec_v2 --role node --device 1 --keys {keys}{where} "
        "--nfc pn532 --direction in\n"
        f"  borne board flash --port /dev/ttyUSB1 --board heltec_v3 --role bridge --site {args.name}\n"
        f"  borne gateway run --config {config}"
    )
    return 0


def _device_add(args: argparse.Namespace) -> int:
    registration = provisioning.Registration(
        name=args.name,
        site=args.site,
        facility=args.facility,
        sensors=tuple(name.strip() for name in args.sensors.split(",") if name.strip()),
        nfc=args.nfc,
        battery=args.battery,
        report_interval_s=args.report_interval,
        status_interval_s=args.status_interval,
    )
    device = provisioning.register_device(args.device_id, registration, args.keys, args.registry)
    fields = ", ".join(device.sensors) or "no telemetry"
    print(
        f"registered device {args.device_id} as {args.site}/{args.name} ({fields}) in {args.registry}; "
        "running gateways read it at their next frame (SIGHUP: at once)"
    )
    return 0


def _device_list(args: argparse.Namespace) -> int:
    provisioning.check_registry_exists(args.registry)
    registry = Registry.load(args.registry)
    if not registry.devices:
        print(f"no device registered in {args.registry}")
    for device in sorted(registry.devices.values(), key=lambda d: d.device_id):
        flags = ", ".join(filter(None, ["battery" if device.battery else "", "nfc" if device.nfc else ""]))
        print(
            f"{device.device_id:>6}  {device.site}/{device.name:<24} {device.facility:<12} key {device.redacted_key()}"
            f"  {','.join(device.sensors) or '-'}  {flags}"
        )
    return 0


def _device_remove(args: argparse.Namespace) -> int:
    provisioning.check_registry_exists(args.registry)
    registry = Registry.load(args.registry)
    if registry.devices.pop(args.device_id, None) is None:
        print(f"error: device {args.device_id} is not registered in {args.registry}", file=sys.stderr)
        return 1
    registry.save(args.registry)
    print(
        f"removed device {args.device_id} from {args.registry}; running gateways read it at their next frame "
        "(SIGHUP: at once)"
    )
    return 0


ERRORS = (ConfigError, RegistryError, provisioning.ProvisioningError, ConfigRefused, StateError)
