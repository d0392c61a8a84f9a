"""The rig a run of the suite talks to: the virtual one (the default) or a bench from a rig file.

A scenario sees a `Site`: the nodes it asked for by their `NodeSpec` (a name and what is wired),
and what it can do to them: present a badge, cut and restore a board's power, erase and flash a
board over its serial port (the real mpremote, `borne board flash --port`) and read back what it
holds, stop, start and SIGKILL the gateway, stop and start the broker; and what was published on
MQTT. `VirtualRig` runs a `VirtualSite` for each module; `BenchRig` maps each spec to a board of the
rig file, and reaches the boards only through the bench owner's commands and their serial ports, the
gateway only through its CLI, its process or commands, and MQTT.

What a scenario needs beyond its nodes it names with `@pytest.mark.rig(needs=[...])`, among `NEEDS`
(`power_switch:<node>` for a node's power); `Rig.lacks` says what is missing, before anything runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from boards.registry import Registry
from hil_tests.rig_file import BenchBoard, RigFile
from simulator.children import start_child
from simulator.mqtt_log import MqttLog
from simulator.virtual_site import GATEWAY_NAME, NodeSpec, VirtualSite

GATEWAY_CONTROL = "gateway_control"
GATEWAY_PROCESS = "gateway_process"
BROKER_CONTROL = "broker_control"
BRIDGE = "bridge"
CONCENTRATOR = "concentrator"
SIMULATOR = "simulator"
POWER_SWITCH = "power_switch"
BADGES_AT_ONCE = "badges_at_once"
NEEDS = {
    GATEWAY_CONTROL: 'a gateway the suite can stop and start ([gateway] start = "suite", or stop/start commands)',
    GATEWAY_PROCESS: 'a gateway process the suite owns, to SIGKILL ([gateway] start = "suite")',
    BROKER_CONTROL: "a broker the suite can stop and start ([broker] stop_command and start_command)",
    BRIDGE: 'a bridge board (a board with role = "bridge")',
    CONCENTRATOR: "a concentrator ([concentrator] udp_port)",
    SIMULATOR: "the simulator's world (the air, pin levels, radio links, boot counts): the virtual rig only",
    POWER_SWITCH: "a power switch (power_off and power_on commands)",
    BADGES_AT_ONCE: (
        'badges presented at several readers at the same moment ([badge] presenter = "command"; '
        "a person holds one badge at a time)"
    ),
}
BRIDGE_NODE = "bridge"  # `power_switch:bridge`: the bridge board's power
GATEWAY_START_S = 60
FLASH_TIMEOUT_S = 300  # `borne board flash`: about ten seconds on a board, minutes on a loaded machine
MPREMOTE_TIMEOUT_S = 60
MPREMOTE_PATIENCE_S = 60  # a board whose firmware is starting lets mpremote in a moment later
_BRIDGE_CONNECTED = "bridge board connected"  # what the gateway logs once it has the bridge's port


class RigError(RuntimeError):
    """The rig cannot do what a scenario asked (a command failed, a badge was not presented in time)."""


def describe(spec: NodeSpec) -> str:
    """What a scenario asks of a node, as `bench check` names it."""
    wired = [f"{spec.nfc} reader" if spec.nfc else "", f"direction {spec.direction}" if spec.direction else ""]
    wired += [f"sensors {','.join(spec.sensors)}" if spec.sensors else "", "deep sleep" if spec.deep_sleep else ""]
    wired += [f"telemetry every {spec.telemetry_s} s or less" if spec.telemetry_s else ""]
    wired += [f"status every {spec.status_s} s or less" if spec.status_s else ""]
    wired += ["that the suite may erase and flash (flashable = true)" if spec.blank else ""]
    return f"a node like {spec.name!r} ({'; '.join(w for w in wired if w) or 'no reader, no sensor'})"


# What the rig does over a board's serial port: the real mpremote and `borne board flash`, as an installer.

# Leaves MicroPython alone on the board, as a new one comes: the firmware's counters and queue forgotten (if
# it has them), every file removed from its filesystem ('/' on an ESP32), its RTC memory cleared (the firmware
# counts its crashes there, and a reset keeps it: only a power-on clears it), then a hard reset, which also
# stops a running watchdog.
_ERASE = """import os, machine
try:
    import borne.identity
    borne.identity.forget()
except Exception:
    pass
def erase(folder):
    for entry in os.ilistdir(folder):
        path = folder.rstrip('/') + '/' + entry[0]
        if entry[1] == 0x4000:
            erase(path)
            os.rmdir(path)
        else:
            os.remove(path)
erase(os.getcwd())
machine.RTC().memory(b'')
print('erased')"""


def _mpremote(port: str, what: str, *arguments: str) -> str:
    """`python -m mpremote connect PORT ARGUMENTS`'s output, tried again while the board does not let it in
    (its firmware restarting); RigError if it fails."""
    deadline = time.monotonic() + MPREMOTE_PATIENCE_S
    while True:
        command = [sys.executable, "-m", "mpremote", "connect", port, *arguments]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=MPREMOTE_TIMEOUT_S)
        except subprocess.TimeoutExpired as error:
            silent = f"the board on {port} did not answer mpremote within {MPREMOTE_TIMEOUT_S} s"
            raise RigError(f"{what}: {silent}") from error
        if done.returncode == 0:
            return done.stdout
        if "raw repl" not in (done.stdout + done.stderr).lower() or time.monotonic() > deadline:
            raise RigError(f"{what}: mpremote exited {done.returncode}: {(done.stderr or done.stdout).strip()[-1000:]}")
        time.sleep(1)


def erase_board(port: str) -> None:
    """Make the board on `port` blank, MicroPython alone, as a new board comes: through mpremote."""
    said = _mpremote(port, f"erasing the board on {port}", "exec", _ERASE, "+", "reset")
    if "erased" not in said:
        raise RigError(f"erasing the board on {port}: it did not say it was done; it said: {said[-500:]}")


def board_config(port: str) -> dict[str, Any]:
    """The config.json the board on `port` holds, read through mpremote; the board restarts after."""
    said = _mpremote(port, f"reading config.json of the board on {port}", "fs", "cat", ":config.json", "+", "reset")
    try:
        return dict(json.loads(said))
    except ValueError as error:
        raise RigError(f"config.json of the board on {port} is not JSON: {said[-500:]}") from error


def flash_node(
    port: str,
    profile: str,
    device_id: int,
    wired: NodeSpec | BenchBoard,
    keys: Path,
    registry: Path,
    radio: dict[str, int],
    register_in: str | None = None,
) -> str:
    """`borne board flash --port PORT` a node, as an installer does; what it printed. `wired`: its reader,
    direction, sensors and reports; `register_in`: register it first, in site `register_in` (a registry
    of its own, with other keys). RigError with its output if it fails."""
    command = [sys.executable, "-m", "borne", "board", "flash", "--port", port, "--board", profile, "--role", "node"]
    command += ["--device", str(device_id), "--keys", str(keys), "--registry", str(registry)]
    command += ["--nfc", wired.nfc] if wired.nfc else []
    command += ["--direction", wired.direction] if wired.direction else []
    command += ["--sensors", ",".join(wired.sensors)] if wired.sensors else []
    command += ["--telemetry-s", str(wired.telemetry_s)] if wired.telemetry_s else []
    command += ["--deep-sleep"] if wired.deep_sleep else []
    command += [arg for key, value in radio.items() for arg in (f"--{key.replace('_', '-')}", str(value))]
    if register_in is not None:
        command += ["--register", "--name", f"node-{device_id}", "--site", register_in]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=FLASH_TIMEOUT_S)
    except subprocess.TimeoutExpired as error:
        raise RigError(f"flashing the board on {port}: not done within {FLASH_TIMEOUT_S} s") from error
    if done.returncode != 0:
        raise RigError(f"flashing the board on {port} failed (exit {done.returncode}):\n{done.stdout}{done.stderr}")
    return done.stdout


def _registered_site(registry: Path, device_id: int) -> str:
    device = Registry.load(registry).get(device_id)
    if device is None:
        raise RigError(f"device {device_id} is not in {registry}: register it (`borne device add`) before the run")
    return device.site


@dataclass(frozen=True)
class Flashing:
    """What `borne board flash` needs to flash a node of a site, as the rig knows it."""

    port: str
    profile: str
    device_id: int
    wired: NodeSpec | BenchBoard  # its reader, direction, sensors and reports
    keys: Path  # the site key file
    registry: Path  # the registry the gateway reads
    radio: dict[str, int]
    work: Path  # where a registry of another site's keys goes


class Site:
    """What a scenario talks to. `simulated` is the VirtualSite behind it on the virtual rig, else None:
    only a scenario that needs SIMULATOR touches it."""

    mqtt: MqttLog
    gateway_name: str
    simulated: VirtualSite | None = None

    def topic_name(self, node: str) -> str:
        """The name the node `node` (a spec's name) publishes under."""
        raise NotImplementedError

    def device_id(self, node: str) -> int:
        """The device id the node `node` is registered under."""
        raise NotImplementedError

    def present_badge(self, node: str, uid: bytes, held_s: float) -> None:
        """Hold the badge `uid` at the reader of `node` for `held_s`, then take it away."""
        raise NotImplementedError

    def cut_power(self, node: str) -> None:
        raise NotImplementedError

    def restore_power(self, node: str) -> None:
        raise NotImplementedError

    def stop_gateway(self) -> None:
        raise NotImplementedError

    def start_gateway(self) -> None:
        raise NotImplementedError

    def kill_gateway(self) -> None:
        """SIGKILL the gateway's process, as the kernel's OOM killer would; `start_gateway` starts it again."""
        raise NotImplementedError

    def stop_broker(self) -> None:
        raise NotImplementedError

    def start_broker(self) -> None:
        raise NotImplementedError

    def erase(self, node: str) -> None:
        """Make the board of `node` blank (MicroPython alone), through its serial port."""
        erase_board(self.flashing(node).port)

    def flash(self, node: str, keys: Path | None = None) -> str:
        """`borne board flash --port` the board of `node` with the site's key file, then have the gateway
        read its registry again; what the command printed. `keys`: another site key file instead, the
        device registered anew in a registry of its own (the gateway's is not touched)."""
        how = self.flashing(node)
        if keys is None:
            said = flash_node(how.port, how.profile, how.device_id, how.wired, how.keys, how.registry, how.radio)
            self.reload_gateway()
            return said
        registry = how.work / f"registry-{keys.stem}.toml"
        Registry({}).save(registry)  # empty, as `borne site init` writes a new site's
        site = _registered_site(how.registry, how.device_id)
        return flash_node(how.port, how.profile, how.device_id, how.wired, keys, registry, how.radio, site)

    def board_config(self, node: str) -> dict[str, Any]:
        """The config.json the board of `node` holds, read through its serial port (the board restarts)."""
        return board_config(self.flashing(node).port)

    def flashing(self, node: str) -> Flashing:
        raise NotImplementedError

    def reload_gateway(self) -> None:
        """Have the gateway read its device registry again."""
        raise NotImplementedError


class Rig:
    """Chosen at the start of a run; opens a Site for each module's nodes."""

    name: str

    def lacks(self, needs: Sequence[str], nodes: Sequence[NodeSpec]) -> list[str]:
        """What the rig lacks for a scenario needing `needs` on `nodes`: empty if it can run it."""
        raise NotImplementedError

    def site(self, work: Path, nodes: Sequence[NodeSpec], **virtual: Any) -> contextlib.AbstractContextManager[Site]:
        """The module's site; `virtual`: VirtualSite's options (the radio, a concentrator), for the virtual rig."""
        raise NotImplementedError

    def boards(self) -> list[dict[str, object]]:
        """The boards, for the report."""
        raise NotImplementedError

    def messages(self) -> list[tuple[str, object]]:
        """Every message the rig saw published, for the report's figures."""
        raise NotImplementedError

    def close(self) -> None:
        pass


# The virtual rig.


class _VirtualSiteView(Site):
    def __init__(self, site: VirtualSite) -> None:
        assert site.mqtt is not None
        self.simulated = site
        self.mqtt = site.mqtt
        self.gateway_name = GATEWAY_NAME

    def topic_name(self, node: str) -> str:
        return node

    def device_id(self, node: str) -> int:
        assert self.simulated is not None
        return self.simulated.specs[node].device_id

    def present_badge(self, node: str, uid: bytes, held_s: float) -> None:
        assert self.simulated is not None
        self.simulated.present_badge(node, uid)
        time.sleep(held_s)
        self.simulated.remove_badge(node)

    def cut_power(self, node: str) -> None:
        assert self.simulated is not None
        self.simulated.cut_power(node)

    def restore_power(self, node: str) -> None:
        assert self.simulated is not None
        self.simulated.restore_power(node)

    def stop_gateway(self) -> None:
        assert self.simulated is not None
        self.simulated.stop_gateway()

    def start_gateway(self) -> None:
        assert self.simulated is not None
        self.simulated.start_gateway()

    def kill_gateway(self) -> None:
        assert self.simulated is not None and self.simulated.gateway is not None
        self.simulated.gateway.kill()
        self.simulated.gateway.wait()
        self.simulated.gateway = None

    def stop_broker(self) -> None:
        assert self.simulated is not None
        self.simulated.broker.stop()

    def start_broker(self) -> None:
        assert self.simulated is not None
        self.simulated.broker.start()

    def flashing(self, node: str) -> Flashing:
        site = self.simulated
        assert site is not None
        spec, port = site.specs[node], str(site.boards[node].port)
        radio = {key: int(value) for key, value in site.radio.items() if key in ("sf", "freq_khz")}
        return Flashing(port, spec.board, spec.device_id, spec, site.keys_file, site.registry_file, radio, site.work)

    def reload_gateway(self) -> None:
        assert self.simulated is not None
        self.simulated.reload_gateway()


class VirtualRig(Rig):
    """A VirtualSite for each module, with exactly its nodes: it lacks nothing."""

    name = "virtual"

    def __init__(self) -> None:
        self._seen: list[VirtualSite] = []
        self._messages: list[tuple[str, object]] = []

    def lacks(self, needs: Sequence[str], nodes: Sequence[NodeSpec]) -> list[str]:
        return []

    @contextlib.contextmanager
    def site(self, work: Path, nodes: Sequence[NodeSpec], **virtual: Any) -> Iterator[Site]:
        with VirtualSite(work, nodes, record_mqtt=True, **virtual) as site:
            self._seen.append(site)
            try:
                yield _VirtualSiteView(site)
            finally:
                assert site.mqtt is not None
                self._messages += site.mqtt.messages

    def boards(self) -> list[dict[str, object]]:
        listed: list[dict[str, object]] = []
        for site in self._seen:
            listed.append({"name": "bridge", "port": "virtual pty", "profile": site.bridge_board, "role": "bridge"})
            for spec in site.specs.values():
                listed.append(
                    {
                        "name": spec.name,
                        "port": "virtual pty",
                        "profile": spec.board,
                        "role": "node",
                        "device": spec.device_id,
                    }
                )
        return listed

    def messages(self) -> list[tuple[str, object]]:
        return list(self._messages)


# A bench.


def _run(command: str, what: str, timeout: float) -> None:
    """Run a bench owner's command (a shell line); RigError with its output if it fails."""
    try:
        done = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as error:
        raise RigError(f"{what}: `{command}` did not finish within {timeout} s") from error
    if done.returncode != 0:
        raise RigError(f"{what}: `{command}` exited {done.returncode}: {done.stderr.strip() or done.stdout.strip()}")


class _BenchSiteView(Site):
    def __init__(self, rig: BenchRig, assigned: dict[str, BenchBoard]) -> None:
        self.rig = rig
        self.assigned = assigned
        self.mqtt = rig.mqtt
        self.gateway_name = str(rig.file.gateway.name)

    def topic_name(self, node: str) -> str:
        return self.assigned[node].name

    def device_id(self, node: str) -> int:
        device_id = self.assigned[node].device_id
        assert device_id is not None  # a node's is required in the rig file
        return device_id

    def present_badge(self, node: str, uid: bytes, held_s: float) -> None:
        self.rig.present_badge(self.assigned[node], uid, held_s)

    def _board(self, node: str) -> BenchBoard:
        bridge = self.rig.file.bridge
        return bridge if node == BRIDGE_NODE and bridge is not None else self.assigned[node]

    def cut_power(self, node: str) -> None:
        board = self._board(node)
        assert board.power_off is not None
        _run(board.power_off, f"cutting the power of {board.name}", 30)

    def restore_power(self, node: str) -> None:
        board = self._board(node)
        assert board.power_on is not None
        _run(board.power_on, f"restoring the power of {board.name}", 30)

    def stop_gateway(self) -> None:
        self.rig.stop_gateway()

    def start_gateway(self) -> None:
        self.rig.start_gateway()

    def kill_gateway(self) -> None:
        self.rig.kill_gateway()

    def stop_broker(self) -> None:
        assert self.rig.file.broker_stop is not None
        _run(self.rig.file.broker_stop, "stopping the broker", GATEWAY_START_S)

    def start_broker(self) -> None:
        assert self.rig.file.broker_start is not None
        _run(self.rig.file.broker_start, "starting the broker", GATEWAY_START_S)

    def flashing(self, node: str) -> Flashing:
        board, site = self.assigned[node], self.rig.file.site
        assert board.device_id is not None and site.keys is not None and site.registry is not None  # rig_file's
        radio = {key: value for key, value in (("sf", site.sf), ("freq_khz", site.freq_khz)) if value is not None}
        work = self.rig.work
        return Flashing(board.port, board.profile, board.device_id, board, site.keys, site.registry, radio, work)

    def reload_gateway(self) -> None:
        self.rig.reload_gateway()


class BenchRig(Rig):
    """The boards of a rig file. MQTT is recorded from the first site on; a gateway the suite starts
    runs from then until the end of the run."""

    def __init__(
        self, file: RigFile, work: Path, terminal: Callable[[], contextlib.AbstractContextManager[Any]] | None = None
    ) -> None:
        self.file = file
        self.name = f"bench {file.name} ({file.path})"
        self.work = work  # the gateway's log, registries of other keys
        work.mkdir(parents=True, exist_ok=True)
        self.terminal = terminal or contextlib.nullcontext  # pytest's capture, suspended while a person is asked
        self.gateway: subprocess.Popen[bytes] | None = None
        self.gateway_log = work / "gateway.log"
        self._mqtt: MqttLog | None = None

    @property
    def mqtt(self) -> MqttLog:
        if self._mqtt is None:
            self._mqtt = MqttLog(self.file.broker_port, host=self.file.broker_host).start()
        return self._mqtt

    def assign(self, nodes: Sequence[NodeSpec]) -> tuple[dict[str, BenchBoard], list[str]]:
        """Each spec's board (one board per spec), and the specs no board of the bench fits."""
        assigned: dict[str, BenchBoard] = {}
        missing = []
        for spec in nodes:
            board = next((b for b in self.file.nodes if _fits(b, spec) and b not in assigned.values()), None)
            if board is None:
                missing.append(describe(spec))
            else:
                assigned[spec.name] = board
        return assigned, missing

    def lacks(self, needs: Sequence[str], nodes: Sequence[NodeSpec]) -> list[str]:
        assigned, missing = self.assign(nodes)
        if any(spec.nfc for spec in nodes) and self.file.badge is None:
            missing.append("a way to present a badge ([badge] presenter)")
        if any(spec.blank for spec in nodes) and not self.file.gateway.reloadable:
            missing.append("a gateway the suite can have read its registry again ([gateway] reload_command)")
        for need in needs:
            kind, _, node = need.partition(":")
            if kind == POWER_SWITCH:
                board = self.file.bridge if node == BRIDGE_NODE else assigned.get(node)
                if node == BRIDGE_NODE and board is None:
                    missing.append(NEEDS[BRIDGE])
                elif board is not None and not board.power_switch:
                    missing.append(f"{NEEDS[POWER_SWITCH]} on {board.name}")
            elif kind == GATEWAY_CONTROL and not self.file.gateway.controllable:
                missing.append(NEEDS[GATEWAY_CONTROL])
            elif kind == GATEWAY_PROCESS and self.file.gateway.start != "suite":
                missing.append(NEEDS[GATEWAY_PROCESS])
            elif kind == BROKER_CONTROL and not self.file.broker_control:
                missing.append(NEEDS[BROKER_CONTROL])
            elif kind == BRIDGE and self.file.bridge is None:
                missing.append(NEEDS[BRIDGE])
            elif kind == CONCENTRATOR and self.file.udp_port is None:
                missing.append(NEEDS[CONCENTRATOR])
            elif kind == BADGES_AT_ONCE and (self.file.badge is None or self.file.badge.kind != "command"):
                missing.append(NEEDS[BADGES_AT_ONCE])
            elif kind == SIMULATOR:
                missing.append(NEEDS[SIMULATOR])
        return missing

    @contextlib.contextmanager
    def site(self, work: Path, nodes: Sequence[NodeSpec], **virtual: Any) -> Iterator[Site]:
        assigned, missing = self.assign(nodes)
        assert not missing, missing  # lacks() was asked first
        for board in (*assigned.values(), *filter(None, [self.file.bridge])):
            if not Path(board.port).exists():
                raise RigError(f"{board.name}'s serial port {board.port} does not exist: is it plugged in and powered?")
        self.mqtt  # noqa: B018 -- recording starts before the gateway publishes anything
        if self.gateway is None and self.file.gateway.start == "suite":
            self.start_gateway()
        yield _BenchSiteView(self, assigned)

    def present_badge(self, board: BenchBoard, uid: bytes, held_s: float) -> None:
        badge = self.file.badge
        assert badge is not None
        if badge.kind == "command":
            assert badge.command is not None
            values = {"board": board.name, "port": board.port, "uid": uid.hex(), "held_s": held_s}
            command = badge.command.format(**{key: shlex.quote(str(value)) for key, value in values.items()})
            _run(command, f"presenting badge {uid.hex()} at {board.name}", badge.timeout_s + held_s)
        else:
            self._prompt(
                f"Hold the badge {uid.hex().upper()} at the reader of {board.name} ({board.port})", badge.timeout_s
            )

    def _prompt(self, asked: str, timeout_s: float) -> None:
        """Ask the person at the bench, on the terminal, and wait for Enter (RigError after `timeout_s`)."""
        import select

        try:
            # The terminal itself, not a file object: Python's text files want a tty opened "r+" to be seekable.
            tty = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
        except OSError as error:
            raise RigError(f'no terminal to ask a person on ({error}): use [badge] presenter = "command"') from error
        try:
            with self.terminal():
                os.write(tty, f"\n{asked}, then press Enter (within {timeout_s:.0f} s): ".encode())
                deadline = time.monotonic() + timeout_s
                while True:  # the terminal hands over a line once Enter is pressed
                    left = deadline - time.monotonic()
                    if left <= 0 or not select.select([tty], [], [], left)[0]:
                        raise RigError(f"nobody answered within {timeout_s:.0f} s: {asked}")
                    line = os.read(tty, 1024)
                    if not line:
                        raise RigError(f"the terminal was closed before anybody answered: {asked}")
                    if line.endswith(b"\n"):
                        return
        finally:
            os.close(tty)

    def start_gateway(self) -> None:
        gateway = self.file.gateway
        if gateway.start == "running":
            assert gateway.start_command is not None
            seen = len(self.mqtt.messages)
            _run(gateway.start_command, "starting the gateway", GATEWAY_START_S)
            self._wait_online(seen)
            return
        self.work.mkdir(parents=True, exist_ok=True)
        with self.gateway_log.open("ab") as output:
            log_start = output.tell()
            command = [sys.executable, "-m", "borne", "gateway", "run", "--config", str(gateway.config)]
            self.gateway = start_child(command, stdout=output, stderr=subprocess.STDOUT)
        if self.file.bridge is not None:
            self._wait_for_bridge(log_start)

    def _wait_for_bridge(self, log_start: int) -> None:
        assert self.gateway is not None
        deadline = time.monotonic() + GATEWAY_START_S
        while _BRIDGE_CONNECTED not in self.gateway_log.read_bytes()[log_start:].decode(errors="replace"):
            if self.gateway.poll() is not None:
                raise RigError(f"the gateway stopped (exit {self.gateway.returncode}); see {self.gateway_log}")
            if time.monotonic() > deadline:
                raise RigError(
                    f"the gateway did not open the bridge within {GATEWAY_START_S} s; see {self.gateway_log}"
                )
            time.sleep(0.2)

    def _wait_online(self, seen: int) -> None:
        """Until the gateway says it is online on MQTT (its state topic), after the message number `seen`."""
        state = f"/gateway/{self.file.gateway.name}/state"
        self.mqtt.wait_for(
            lambda: any(t.endswith(state) and p == "online" for t, p in self.mqtt.messages[seen:]),
            GATEWAY_START_S,
            f"the gateway {self.file.gateway.name} online on {state} after its start command",
        )

    def reload_gateway(self) -> None:
        """Have the gateway read its registry again: SIGHUP to the suite's, else the reload command, else a restart."""
        gateway = self.file.gateway
        if gateway.start == "suite":
            if self.gateway is not None:
                self.gateway.send_signal(signal.SIGHUP)
        elif gateway.reload_command is not None:
            _run(gateway.reload_command, "reloading the gateway's registry", GATEWAY_START_S)
        else:
            self.stop_gateway()
            self.start_gateway()

    def kill_gateway(self) -> None:
        assert self.gateway is not None, "the suite's gateway runs from the first site on"
        os.kill(self.gateway.pid, signal.SIGKILL)
        self.gateway.wait()
        self.gateway = None

    def stop_gateway(self) -> None:
        if self.file.gateway.start == "running":
            assert self.file.gateway.stop_command is not None
            _run(self.file.gateway.stop_command, "stopping the gateway", GATEWAY_START_S)
            return
        if self.gateway is None:
            return
        self.gateway.terminate()
        try:
            self.gateway.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.gateway.kill()
            self.gateway.wait()
        self.gateway = None

    def boards(self) -> list[dict[str, object]]:
        return [
            {"name": b.name, "port": b.port, "profile": b.profile, "role": b.role, "device": b.device_id}
            for b in self.file.boards
        ]

    def messages(self) -> list[tuple[str, object]]:
        return list(self._mqtt.messages) if self._mqtt is not None else []

    def close(self) -> None:
        if self.file.gateway.start == "suite":
            self.stop_gateway()
        if self._mqtt is not None:
            self._mqtt.stop()
            self._mqtt = None


def _fits(board: BenchBoard, spec: NodeSpec) -> bool:
    """The board can stand for the spec: same reader, direction and sleep, every sensor, reports as often;
    a board the suite may flash stands only for a blank one, which the scenario flashes."""
    return (
        board.flashable == spec.blank
        and board.nfc == spec.nfc
        and board.direction == spec.direction
        and board.deep_sleep == spec.deep_sleep
        and set(spec.sensors) <= set(board.sensors)
        and _as_often(board.telemetry_s, spec.telemetry_s)
        and _as_often(board.status_s, spec.status_s)
    )


def _as_often(board_s: int | None, spec_s: int | None) -> bool:
    return spec_s is None or (board_s is not None and board_s <= spec_s)
