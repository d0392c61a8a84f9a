"""The gateway's one configuration file (TOML).

`EXAMPLE` is both the documentation printed by `borne gateway config --example` and
the source of every default: a key missing from a user's file takes the value shown
there, and a key the example does not have is an error, so a typo never passes
silently.
"""

from __future__ import annotations

import json
import logging
import ssl
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EXAMPLE = """\
# Borne gateway configuration. Every key is shown with its default value.

[gateway]
# This gateway's name in MQTT topics and messages (a-z, 0-9, - and _).
name = "gateway"
# Counters and the outbox (SQLite). Keep it on storage that survives a reboot.
state_file = "/var/lib/borne/state.db"
# The device registry, written by `borne device add`; several gateways may share it.
registry_file = "/etc/borne/devices.toml"
# Copies of one frame heard by several sources within this window are published once. A frame
# waits only until every receiver (the bridge, each forwarder heard from) gave its copy.
dedup_window_ms = 200
# Events kept while the broker is away (a 50-node site makes about 15,000 a day);
# when full, telemetry and status are dropped before check-ins, and counted.
max_outbox_events = 500000
# The largest jump ahead of a device's frame counter accepted (frames lost in a row).
max_counter_gap = 16384
# Check-ins carry badge tokens: one sent unencrypted is refused ("unencrypted_checkin" on
# <prefix>/gateway/<name>/rejected). true accepts them, for debugging on a bench only; the
# daemon then logs a warning when it starts.
allow_unencrypted_checkins = false

[radio]
# ACKs start this long after the end of the uplink, in the node's receive window.
ack_delay_ms = 1000
# ACKs go out in the 869.4-869.65 MHz sub-band, where 10 % duty cycle is allowed.
ack_frequency_hz = 869525000
ack_tx_power_dbm = 14

[serial]
# The bridge board's serial port, e.g. "/dev/ttyUSB0"; empty: no bridge board.
port = ""
baudrate = 115200

[udp]
# A Semtech UDP packet forwarder (SX1302 concentrator). The protocol has no
# authentication: keep it on loopback unless the forwarder runs on another host.
enabled = false
host = "127.0.0.1"
port = 1700

[mqtt]
host = "localhost"
port = 1883
# Credentials; empty: anonymous.
username = ""
password = ""
# TLS to the broker; ca_file empty: the system's trusted authorities.
tls = false
ca_file = ""
# Topics: <prefix>/<site>/<device>/{checkin,telemetry,status}, <prefix>/gateway/<name>/...
topic_prefix = "borne"
# Empty: "borne-<gateway name>". Must be unique on the broker.
client_id = ""
# How often the gateway publishes its counters on <prefix>/gateway/<name>/stats.
stats_interval_s = 60

[home_assistant]
# Publish MQTT discovery configs so Home Assistant finds every device by itself.
enabled = true
discovery_prefix = "homeassistant"

[metrics]
# Prometheus metrics at http://<host>:<port>/metrics; port 0: off.
host = "127.0.0.1"
port = 0
"""


log = logging.getLogger(__name__)


# The kinds of value a setting takes, as TOML writes them.
_KINDS = {bool: "true or false", int: "a whole number (no quotes)", str: "text in quotes"}


class ConfigError(Exception):
    """A configuration file that cannot be used; the message says what to fix."""


@dataclass(frozen=True)
class GatewaySection:
    name: str
    state_file: str
    registry_file: str
    dedup_window_ms: int
    max_outbox_events: int
    max_counter_gap: int
    allow_unencrypted_checkins: bool


@dataclass(frozen=True)
class RadioSection:
    ack_delay_ms: int
    ack_frequency_hz: int
    ack_tx_power_dbm: int


@dataclass(frozen=True)
class SerialSection:
    port: str
    baudrate: int


@dataclass(frozen=True)
class UdpSection:
    enabled: bool
    host: str
    port: int


@dataclass(frozen=True)
class MqttSection:
    host: str
    port: int
    username: str
    password: str
    tls: bool
    ca_file: str
    topic_prefix: str
    client_id: str
    stats_interval_s: int


@dataclass(frozen=True)
class HomeAssistantSection:
    enabled: bool
    discovery_prefix: str


@dataclass(frozen=True)
class MetricsSection:
    host: str
    port: int


@dataclass(frozen=True)
class Config:
    gateway: GatewaySection
    radio: RadioSection
    serial: SerialSection
    udp: UdpSection
    mqtt: MqttSection
    home_assistant: HomeAssistantSection
    metrics: MetricsSection


_SECTIONS: dict[str, type] = {
    "gateway": GatewaySection,
    "radio": RadioSection,
    "serial": SerialSection,
    "udp": UdpSection,
    "mqtt": MqttSection,
    "home_assistant": HomeAssistantSection,
    "metrics": MetricsSection,
}


def parse_config(text: str, where: str = "configuration") -> Config:
    """A Config from TOML text: the example's defaults overlaid with what `text` sets."""
    defaults = tomllib.loads(EXAMPLE)
    try:
        given = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{where}: not valid TOML: {error}") from None
    unknown = set(given) - set(_SECTIONS)
    if unknown:
        raise ConfigError(f"{where}: unknown section(s) {', '.join(sorted(unknown))}; known: {', '.join(_SECTIONS)}")
    sections: dict[str, Any] = {}
    for name, section_class in _SECTIONS.items():
        values = dict(defaults[name])
        overrides = given.get(name, {})
        if not isinstance(overrides, dict):
            raise ConfigError(f"{where}: [{name}] must be a table")
        for key, value in overrides.items():
            if key not in values:
                raise ConfigError(f"{where}: unknown key {name}.{key}; known: {', '.join(values)}")
            if type(value) is not type(values[key]):
                expected = _KINDS[type(values[key])]
                raise ConfigError(f"{where}: {name}.{key} must be {expected}, got {value!r}")
            values[key] = value
        sections[name] = section_class(**values)
    return _check(Config(**sections), where)


# An ACK is sent once its frame's dedup window closed, and must reach the concentrator before its time:
# lora_pkt_fwd's jitqueue.c takes a downlink only 42.5 ms ahead or more (TX_START_DELAY, TX_MARGIN_DELAY,
# TX_JIT_DELAY); the rest is for the daemon and the forwarder's link.
ACK_LEAD_MS = 100


def _check(config: Config, where: str) -> Config:
    latest = config.radio.ack_delay_ms - ACK_LEAD_MS
    if not 0 <= config.gateway.dedup_window_ms <= latest:
        raise ConfigError(
            f"{where}: gateway.dedup_window_ms must be from 0 to {latest} (radio.ack_delay_ms − {ACK_LEAD_MS}): "
            "a frame's ACK waits for its window to close, and a concentrator needs it 43 ms before it goes out"
        )
    if not 0 < config.gateway.max_counter_gap <= 0x8000:
        raise ConfigError(f"{where}: gateway.max_counter_gap must be from 1 to 32768")
    if config.gateway.max_outbox_events < 1000:
        raise ConfigError(f"{where}: gateway.max_outbox_events below 1000 cannot ride out a broker outage")
    return config


def site_config(gateway_name: str, registry_file: Path, state_file: Path) -> str:
    """The example configuration with this gateway's name and files set: what `borne site init` writes."""
    text = EXAMPLE
    defaults = tomllib.loads(EXAMPLE)["gateway"]
    for key, value in (("name", gateway_name), ("registry_file", str(registry_file)), ("state_file", str(state_file))):
        default = f'{key} = "{defaults[key]}"'
        assert default in text, f"the example configuration lost its {key} line"
        text = text.replace(default, f"{key} = {json.dumps(value)}", 1)
    parse_config(text, "the site's gateway configuration")
    return text


def load_config(path: Path) -> Config:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such file; give the gateway's configuration with --config (`borne site init` wrote one "
            f"in the site's folder), or `borne gateway config --example > {path}` writes one"
        ) from None
    config = parse_config(text, str(path))
    ca_file = config.mqtt.ca_file
    if config.mqtt.tls and ca_file:
        if not Path(ca_file).exists():
            raise ConfigError(
                f"{path}: mqtt.ca_file {ca_file}: no such file; give the certificate (PEM) of the authority that "
                "signed the broker's, or leave ca_file empty to trust the system's authorities"
            )
        try:
            ssl.create_default_context(cafile=ca_file)  # as the gateway reads it at each connection
        except (OSError, ssl.SSLError) as error:
            raise ConfigError(
                f"{path}: mqtt.ca_file {ca_file}: not a certificate the gateway can read ({error}); give the "
                "certificate (PEM) of the authority that signed the broker's"
            ) from None
    if config.mqtt.password and path.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH):
        log.warning("%s holds the MQTT password and other users can read it: chmod 600 %s", path, path)
    return config
