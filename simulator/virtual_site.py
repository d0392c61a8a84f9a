"""A site in a box: virtual boards running the real firmware, a radio medium, the gateway, a broker.

    with VirtualSite(work, [DOOR, ROOM]) as site:
        site.present_badge("entrance", bytes.fromhex("04a1b2c3"))

Every board is a `VirtualBoard` (the real MicroPython VM) provisioned as `borne board flash`
provisions a real one, on one `RadioMedium`. A bridge board hears them; the real gateway daemon
(`borne gateway run`, a process of its own) reads the bridge over its pty, as it reads
/dev/ttyUSB0 on a Raspberry Pi, and publishes to a real mosquitto on a loopback port.
"""

from __future__ import annotations

import contextlib
import logging
import random
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from boards.profiles import load_profile
from boards.provisioning import SENSOR_FIELDS, NodeOptions, build_config, secrets_from_master, stage
from boards.registry import DEFAULT_REPORT_INTERVAL_S, DEFAULT_STATUS_INTERVAL_S, Device, Registry
from payload_codec import derive_device_keys
from simulator.broker import Broker, free_port
from simulator.children import start_child
from simulator.concentrator import Concentrator
from simulator.mqtt_log import MqttLog
from simulator.test_keys import TEST_MASTER_KEY
from simulator.virtual_board import RadioMedium, VirtualBoard
from simulator.virtual_board.board import PN532_ADDRESS, radio_wiring

log = logging.getLogger(__name__)

GATEWAY_START_S = 60
GATEWAY_NAME = "virtual-gateway"  # its MQTT topic level
STATS_INTERVAL_S = 5  # the gateway's counters on MQTT: often, on a rig
_BRIDGE_CONNECTED = b"bridge board connected"  # what the gateway logs once it has the bridge's port


@dataclass(frozen=True)
class NodeSpec:
    """One node of the site: its id and name in the registry, its board, what it reads."""

    device_id: int
    name: str
    board: str = "heltec_v2"
    nfc: str | None = None  # "pn532" on the I2C bus, or "mfrc522" on the profile's nfc_spi
    direction: str | None = None  # "in", "out"
    sensors: tuple[str, ...] = ()
    telemetry_s: int | None = None
    status_s: int | None = None
    facility: str = "town_hall"
    deep_sleep: bool = False
    battery_mv: int = 3900  # what the battery input reads (through the profile's divider)
    retry_max_s: int | None = None  # the longest wait between check-in retries; None: the firmware's
    blank: bool = False  # registered but not flashed: MicroPython alone, for `borne board flash --port` to install


class VirtualSite:
    """Start with `with` (or start()/stop()); boards, gateway and broker stop with it."""

    def __init__(
        self,
        work: Path,
        nodes: Sequence[NodeSpec],
        *,
        site: str = "town-hall",
        radio: Mapping[str, int | str] | None = None,
        seed: int = 1,
        bridge_board: str = "heltec_v2",
        gateway_log: Path | None = None,
        record_mqtt: bool = False,
        concentrator: bool = False,
        gateway: bool = True,
    ) -> None:
        """`gateway=False`: the gateway's configuration is written but the daemon is left to whoever
        serves the site as a bench (`bench_site.py`), who starts it from that file."""
        work = work.resolve()  # the boards and the gateway run in folders of their own: a relative path misses
        self.work = work
        self.specs = {spec.name: spec for spec in nodes}
        self.profiles = {spec.name: load_profile(spec.board) for spec in nodes}  # read once: pins are asked often
        self.site = site
        self.radio = radio or {}
        self.bridge_board = bridge_board
        self.medium = RadioMedium(random.Random(seed))
        (work / "broker").mkdir(parents=True, exist_ok=True)
        self.broker = Broker(work / "broker")
        self.boards: dict[str, VirtualBoard] = {}
        self.gateway: subprocess.Popen[bytes] | None = None
        self.gateway_log = gateway_log or work / "gateway.log"
        self.registry_file = work / "devices.toml"
        self.keys_file = work / "site-keys.toml"  # the site key file, as `borne site init` writes it
        self.config_file = work / "gateway.toml"
        self.record_mqtt = record_mqtt
        self.run_gateway = gateway
        self.udp_port = free_port() if concentrator else None
        self.concentrator: Concentrator | None = None  # a second path to the gateway, over Semtech UDP
        self.mqtt: MqttLog | None = None  # with record_mqtt: all published from before the first boot

    def __enter__(self) -> VirtualSite:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def mqtt_port(self) -> int:
        return self.broker.port

    def start(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        self.broker.start()
        if self.record_mqtt:
            self.mqtt = MqttLog(self.broker.port).start()
        self._write_registry()
        self.keys_file.write_text(f'master_key = "{TEST_MASTER_KEY.hex()}"\n', encoding="utf-8")
        self.keys_file.chmod(0o600)
        bridge_config = build_config(load_profile(self.bridge_board), "bridge", self.site, radio=self.radio)
        bridge = self._board("bridge", bridge_config)
        bridge.wire_power_chip(bridge_config["board"])
        bridge.start()
        self._write_gateway_config(bridge.port)
        if self.run_gateway:
            self.start_gateway()  # before the nodes: what they send at boot is not acknowledged
        if self.udp_port is not None:
            self.concentrator = Concentrator(self.medium, self.udp_port)
            self.concentrator.start()
        for spec in self.specs.values():
            node = self._board(spec.name, self._node_config(spec), install=not spec.blank)
            self._wire(spec)  # before power-on, as on a real board: the firmware finds its chips at boot
            node.start()

    def start_gateway(self) -> None:
        """Start `borne gateway run`, its output appended to `gateway_log`."""
        with self.gateway_log.open("ab") as output:
            log_start = output.tell()
            command = [sys.executable, "-m", "borne", "gateway", "run", "--config", str(self.config_file)]
            self.gateway = start_child(command, stdout=output, stderr=subprocess.STDOUT)
        self._wait_for_gateway(log_start)

    def _wait_for_gateway(self, log_start: int) -> None:
        """Until the gateway has the bridge's port open: what the bridge writes before is lost."""
        assert self.gateway is not None
        deadline = time.monotonic() + GATEWAY_START_S
        said = b""
        with self.gateway_log.open("rb") as log:
            log.seek(log_start)  # this run of the gateway's lines only
            while _BRIDGE_CONNECTED not in said:
                if self.gateway.poll() is not None:
                    raise RuntimeError(f"the gateway stopped (exit {self.gateway.returncode}); see {self.gateway_log}")
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"the gateway did not open the bridge within {GATEWAY_START_S} s; see {self.gateway_log}"
                    )
                time.sleep(0.1)
                said += log.read()  # only what was written since the last look

    def reload_gateway(self) -> None:
        """Have the gateway read its device registry again (SIGHUP), as after `borne board flash`."""
        if self.gateway is not None:
            self.gateway.send_signal(signal.SIGHUP)

    def stop_gateway(self) -> None:
        """Stop the gateway as systemd does (SIGTERM), or kill it if it lingers."""
        if self.gateway is None:
            return
        self.gateway.terminate()
        try:
            self.gateway.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.gateway.kill()
            self.gateway.wait()
        self.gateway = None

    def stop(self) -> None:
        if self.concentrator is not None:
            self.concentrator.stop()
            self.concentrator = None
        self.stop_gateway()
        for board in self.boards.values():
            board.close()
        self.boards.clear()
        self.medium.close()
        if self.mqtt is not None:
            self.mqtt.stop()
            self.mqtt = None
        with contextlib.suppress(Exception):
            self.broker.stop()

    # What happens at the site.

    def present_badge(self, node: str, uid: bytes, tag_type: str = "mifare_classic") -> None:
        self.boards[node].present_badge(uid, tag_type, **self._reader(node))

    def remove_badge(self, node: str) -> None:
        self.boards[node].remove_badge(**self._reader(node))

    def present_badge_until_read(self, node: str, uid: bytes, timeout: float) -> float | None:
        """Hold a badge at `node`'s reader as a visitor does, until the door's LED flashes (the firmware
        flashes it once the check-in is in its journal), then take it away. Returns when it flashed
        (time.time()), or None if it had not within `timeout` s: a door that is off or still booting."""
        led = self.profiles[node]["led"]
        if not led:
            raise ValueError(f"{node}'s board ({self.specs[node].board}) has no LED to show a badge was read")
        board, pin, lit = self.boards[node], led["pin"], 1 if led["active_high"] else 0
        flashes = board.times_driven(pin, lit)
        self.present_badge(node, uid)
        try:
            return time.time() if board.wait_driven(pin, lit, flashes + 1, timeout) else None
        finally:
            self.remove_badge(node)

    def _reader(self, node: str) -> dict[str, int]:
        spec = self.specs[node]
        if spec.nfc == "mfrc522":
            return {"cs": self.profiles[node]["nfc_spi"]["cs"]}
        return {"address": PN532_ADDRESS}

    def set_air(
        self,
        node: str,
        *,
        temperature_c: float | None = None,
        humidity_pct: float | None = None,
        pressure_hpa: float | None = None,
        co2_ppm: int | None = None,
    ) -> None:
        """Set what the node's environmental sensors measure; None leaves a quantity as it is."""
        self.boards[node].set_air(
            temperature_c=temperature_c, humidity_pct=humidity_pct, pressure_hpa=pressure_hpa, co2_ppm=co2_ppm
        )

    def cut_power(self, node: str) -> None:
        """Unplug the board: its VM stops and its serial port disappears, as a USB board's does."""
        self.boards[node].close()

    def restore_power(self, node: str) -> None:
        """Plug it back: it boots with PWRON_RESET over the same flash and NVS."""
        self.boards[node].start()

    # Setting it up.

    def _node_config(self, spec: NodeSpec) -> dict:
        options = NodeOptions(
            nfc=spec.nfc,
            direction=spec.direction,
            sensors=spec.sensors,
            telemetry_s=spec.telemetry_s,
            status_s=spec.status_s,
            deep_sleep=spec.deep_sleep,
        )
        secrets = secrets_from_master(TEST_MASTER_KEY, spec.device_id)
        profile = self.profiles[spec.name]
        config = build_config(
            profile, "node", self.site, device_id=spec.device_id, secrets=secrets, options=options, radio=self.radio
        )
        if spec.retry_max_s is not None and config["nfc"] is not None:
            config["nfc"]["retry_max_s"] = spec.retry_max_s
        return config

    def _board(self, name: str, config: dict, install: bool = True) -> VirtualBoard:
        """The board `name` is; with `install`, the firmware and `config` on its flash, else a blank one."""
        flash = self.work / "boards" / name / "flash"
        flash.mkdir(parents=True, exist_ok=True)
        if install:
            stage(config, flash)
        unique_id = bytes.fromhex("240ac4") + len(self.boards).to_bytes(3, "big")
        board = VirtualBoard(
            self.work / "boards" / name / "tty",
            flash,
            radio=config["board"]["radio"]["chip"],
            radio_wiring=radio_wiring(config["board"]["radio"]),
            mcu=config["board"]["mcu"],
            console=config["board"]["console"],
            medium=self.medium,
            unique_id=unique_id,
        )
        self.boards[name] = board
        return board

    def _wire(self, spec: NodeSpec) -> None:
        board = self.boards[spec.name]
        profile = self.profiles[spec.name]
        board.wire_parts(profile, spec.sensors, spec.nfc)
        if "battery" in spec.sensors:
            battery = profile["battery"]
            board.set_adc(battery["pin"], round(spec.battery_mv * 1000 / battery["ratio"]))

    def _write_registry(self) -> None:
        registry = Registry({})
        for spec in self.specs.values():
            fields = tuple(dict.fromkeys(f for sensor in spec.sensors for f in SENSOR_FIELDS[sensor]))
            registry.add(
                Device(
                    device_id=spec.device_id,
                    name=spec.name,
                    site=self.site,
                    facility=spec.facility,
                    keys=derive_device_keys(TEST_MASTER_KEY, spec.device_id),
                    report_interval_s=spec.telemetry_s or DEFAULT_REPORT_INTERVAL_S,
                    status_interval_s=spec.status_s or DEFAULT_STATUS_INTERVAL_S,
                    sensors=fields,
                    nfc=spec.nfc is not None,
                    battery=spec.deep_sleep,
                )
            )
        registry.save(self.registry_file)

    def _write_gateway_config(self, bridge_port: Path) -> None:
        self.config_file.write_text(
            "\n".join(
                [
                    "[gateway]",
                    f'name = "{GATEWAY_NAME}"',
                    f'state_file = "{self.work / "state.db"}"',
                    f'registry_file = "{self.registry_file}"',
                    "[serial]",
                    f'port = "{bridge_port}"',
                    "[mqtt]",
                    'host = "127.0.0.1"',
                    f"port = {self.broker.port}",
                    f"stats_interval_s = {STATS_INTERVAL_S}",
                    *(["[udp]", "enabled = true", f"port = {self.udp_port}"] if self.udp_port is not None else []),
                    "",
                ]
            ),
            encoding="utf-8",
        )
        self.config_file.chmod(0o600)
