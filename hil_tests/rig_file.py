"""A bench rig file (`bench.toml`): the boards on the bench, the broker, the gateway, how a badge is
presented, the power switches. `bench.example.toml` beside this file is a complete example; the
README describes every key. An unknown key is an error, so a typo does not go unnoticed.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from boards.provisioning import READERS, ROLES, SENSORS
from payload_codec.schema import DIRECTIONS

PRESENTERS = ("prompt", "command")
GATEWAY_STARTS = ("suite", "running")


class RigFileError(ValueError):
    """The rig file is missing, unreadable or says something the suite cannot use."""


@dataclass(frozen=True)
class BenchBoard:
    """One board on the bench, as it was flashed (`borne board flash`) and wired."""

    name: str  # its name in the registry: the MQTT topic level
    port: str
    profile: str
    role: str
    device_id: int | None = None
    nfc: str | None = None
    direction: str | None = None
    sensors: tuple[str, ...] = ()
    deep_sleep: bool = False
    telemetry_s: int | None = None
    status_s: int | None = None
    power_off: str | None = None  # a command that cuts its power, e.g. uhubctl … -a off
    power_on: str | None = None
    flashable: bool = False  # the suite may erase it and flash it (`borne board flash --port`), as a new board

    @property
    def power_switch(self) -> bool:
        return self.power_off is not None and self.power_on is not None


@dataclass(frozen=True)
class BenchGateway:
    start: str  # "suite": the suite runs `borne gateway run --config CONFIG`; "running": it already runs
    config: Path | None = None
    name: str | None = None  # the gateway's name in MQTT topics; read from `config` if not given
    stop_command: str | None = None  # for a running gateway, e.g. "ssh pi sudo systemctl stop borne-gateway"
    start_command: str | None = None
    reload_command: str | None = None  # for a running gateway: it reads its registry again (SIGHUP)
    registry: Path | None = None  # its device registry ([gateway] registry_file of `config`)

    @property
    def controllable(self) -> bool:
        return self.start == "suite" or (self.stop_command is not None and self.start_command is not None)

    @property
    def reloadable(self) -> bool:
        """The suite can have it read its registry again: SIGHUP to its own process, a reload command,
        or a restart."""
        return self.controllable or self.reload_command is not None


@dataclass(frozen=True)
class BenchSite:
    """What `borne board flash` needs to flash a board of the bench: the site key file, the registry
    the gateway reads, and the radio settings the site's boards were flashed with."""

    keys: Path | None = None
    registry: Path | None = None
    sf: int | None = None
    freq_khz: int | None = None


@dataclass(frozen=True)
class BadgePresenter:
    kind: str  # "prompt": a person at the terminal; "command": the bench owner's command
    command: str | None = None  # placeholders {board} {port} {uid} {held_s}
    timeout_s: float = 60


@dataclass(frozen=True)
class RigFile:
    path: Path
    name: str
    boards: tuple[BenchBoard, ...]
    broker_host: str
    broker_port: int
    gateway: BenchGateway
    badge: BadgePresenter | None
    udp_port: int | None = None  # a concentrator's packet forwarder sends to the gateway's port
    broker_stop: str | None = None  # commands that stop and start the broker, e.g. systemctl stop mosquitto
    broker_start: str | None = None
    site: BenchSite = BenchSite()

    @property
    def broker_control(self) -> bool:
        return self.broker_stop is not None and self.broker_start is not None

    @property
    def bridge(self) -> BenchBoard | None:
        return next((board for board in self.boards if board.role == "bridge"), None)

    @property
    def nodes(self) -> tuple[BenchBoard, ...]:
        return tuple(board for board in self.boards if board.role == "node")


def load_rig_file(path: Path) -> RigFile:
    """Read and check a rig file; RigFileError names the key to fix."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise RigFileError(
            f"cannot read the rig file {path}: {error.strerror or error}. hil_tests/bench.example.toml describes "
            "a bench of real boards: copy it and write yours"
        ) from error
    except tomllib.TOMLDecodeError as error:
        raise RigFileError(f"{path} is not valid TOML: {error}") from error
    where = str(path)
    _known(data, where, {"name", "broker", "gateway", "badge", "concentrator", "site", "boards"})
    boards = tuple(_board(entry, f"{where} [[boards]] #{i + 1}") for i, entry in enumerate(data.get("boards", [])))
    if not boards:
        raise RigFileError(f"{where}: no [[boards]]: describe each board on the bench (see `borne bench example`)")
    names = [board.name for board in boards]
    if len(set(names)) != len(names):
        raise RigFileError(f"{where}: two boards have the same name: {names}")
    broker = _table(data, "broker", where, {"host", "port", "stop_command", "start_command"})
    if ("stop_command" in broker) != ("start_command" in broker):
        raise RigFileError(f"{where} [broker]: restarting the broker needs both stop_command and start_command")
    concentrator = _table(data, "concentrator", where, {"udp_port"})
    rig = RigFile(
        path=path,
        name=str(data.get("name", path.stem)),
        boards=boards,
        broker_host=str(broker.get("host", "127.0.0.1")),
        broker_port=int(broker.get("port", 1883)),
        gateway=_gateway(_table(data, "gateway", where, set(), required=True), path.parent, where),
        badge=_badge(data["badge"], where) if "badge" in data else None,
        udp_port=int(concentrator["udp_port"]) if "udp_port" in concentrator else None,
        broker_stop=broker.get("stop_command"),
        broker_start=broker.get("start_command"),
    )
    rig = replace(rig, site=_site(_table(data, "site", where, {"keys", "registry", "sf", "freq_khz"}), rig, where))
    if rig.bridge is None and rig.udp_port is None:
        raise RigFileError(f'{where}: neither a board with role = "bridge" nor a [concentrator]: how do frames arrive?')
    return rig


def _known(table: dict[str, Any], where: str, keys: set[str]) -> None:
    unknown = set(table) - keys
    if unknown:
        raise RigFileError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(keys)}")


def _table(data: dict[str, Any], name: str, where: str, keys: set[str], required: bool = False) -> dict[str, Any]:
    if name not in data:
        if required:
            raise RigFileError(f"{where}: a [{name}] table is needed (see `borne bench example`)")
        return {}
    if keys:
        _known(data[name], f"{where} [{name}]", keys)
    return data[name]


def _choice(value: Any, choices: tuple[str, ...], key: str, where: str) -> str:
    if value not in choices:
        raise RigFileError(f"{where}: {key} = {value!r}: one of {', '.join(choices)}")
    return str(value)


def _board(entry: dict[str, Any], where: str) -> BenchBoard:
    _known(entry, where, {f.name for f in BenchBoard.__dataclass_fields__.values()})
    for key in ("name", "port", "profile", "role"):
        if key not in entry:
            raise RigFileError(f"{where}: {key} is needed")
    role = _choice(entry["role"], ROLES, "role", where)
    if role == "node" and "device_id" not in entry:
        raise RigFileError(f"{where}: a node needs its device_id, as registered with `borne device add`")
    if entry.get("nfc") is not None:
        _choice(entry["nfc"], READERS, "nfc", where)
    if entry.get("direction") is not None:
        _choice(entry["direction"], DIRECTIONS, "direction", where)
    for sensor in entry.get("sensors", ()):
        _choice(sensor, SENSORS, "a sensor", where)
    if ("power_off" in entry) != ("power_on" in entry):
        raise RigFileError(f"{where}: a power switch needs both power_off and power_on commands")
    return BenchBoard(**{**entry, "sensors": tuple(entry.get("sensors", ()))})


def _gateway(table: dict[str, Any], base: Path, where: str) -> BenchGateway:
    where = f"{where} [gateway]"
    _known(table, where, {"start", "config", "name", "stop_command", "start_command", "reload_command"})
    start = _choice(table.get("start"), GATEWAY_STARTS, "start", where)
    config = base / table["config"] if "config" in table else None
    if start == "suite" and config is None:
        raise RigFileError(f'{where}: start = "suite" needs config, the gateway.toml it runs with')
    name = table.get("name")
    registry = None
    if config is not None:
        try:
            read = tomllib.loads(config.read_text(encoding="utf-8"))["gateway"]
            name = name or read["name"]
            registry = config.parent / read["registry_file"] if "registry_file" in read else None
        except (OSError, KeyError, tomllib.TOMLDecodeError) as error:
            if name is None:
                said = f"cannot read the gateway's name from {config} ({error}): set name"
                raise RigFileError(f"{where}: {said}") from error
    if name is None:
        raise RigFileError(f"{where}: name is needed (its MQTT topic level) when no config is given")
    if ("stop_command" in table) != ("start_command" in table):
        raise RigFileError(f"{where}: stopping and starting the gateway needs both stop_command and start_command")
    if table.get("reload_command") is not None and start != "running":
        raise RigFileError(f'{where}: reload_command is for start = "running"; the suite sends SIGHUP to its own')
    return BenchGateway(
        start,
        config,
        str(name),
        table.get("stop_command"),
        table.get("start_command"),
        table.get("reload_command"),
        registry,
    )


def _site(table: dict[str, Any], rig: RigFile, where: str) -> BenchSite:
    where = f"{where} [site]"
    keys = rig.path.parent / table["keys"] if "keys" in table else None
    registry = rig.path.parent / table["registry"] if "registry" in table else rig.gateway.registry
    flashable = [board.name for board in rig.boards if board.flashable]
    if flashable and (keys is None or registry is None):
        lacking = "keys (the site key file)" if keys is None else "registry (the gateway's device registry)"
        raise RigFileError(f"{where}: {', '.join(flashable)} may be flashed (flashable = true): set {lacking}")
    radio = {key: int(table[key]) for key in ("sf", "freq_khz") if key in table}
    return BenchSite(keys, registry, **radio)


def _badge(table: dict[str, Any], where: str) -> BadgePresenter:
    where = f"{where} [badge]"
    _known(table, where, {"presenter", "command", "timeout_s"})
    kind = _choice(table.get("presenter"), PRESENTERS, "presenter", where)
    if kind == "command" and not table.get("command"):
        raise RigFileError(f'{where}: presenter = "command" needs command, e.g. "present-badge {{port}} {{uid}}"')
    return BadgePresenter(kind, table.get("command"), float(table.get("timeout_s", 60)))
