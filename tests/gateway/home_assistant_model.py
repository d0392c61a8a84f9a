"""What Home Assistant's MQTT integration makes of the gateway's messages, on a real broker.

The rules modelled, from Home Assistant's MQTT integration (2024.x) and its documentation
(integrations/sensor.mqtt, binary_sensor.mqtt, tag.mqtt, mqtt#discovery):

- Discovery: configs on `<discovery prefix>/<component>/[<node id>/]<object id>/config`; a
  config for an entity already set up updates it, unless it is the same (mqtt/mixins.py:
  "Ignoring unchanged update"); each config's `device` goes into the device registry, merged by
  its identifiers (a key a config leaves out stays as it was).
- Subscriptions: an entity subscribes to its state and availability topics once it is set up,
  so it receives their retained message then, once; later messages reach every entity of the topic.
- Templates: Jinja2 in a sandbox that forbids mutation, with `value` (the payload) and
  `value_json` (the payload parsed as JSON, undefined if it is not JSON). An undefined variable
  renders empty and logs `Template variable warning`; using one otherwise is an error.
- Sensor: a rendered empty string is ignored (the last value stays), `None` makes the state
  unknown, anything else is the state (a number for a sensor with a unit or state class).
  Every message restarts `expire_after`; past it the sensor is unavailable until the next one. A
  sensor with `expire_after` set up again by a changed config starts expired (mqtt/sensor.py,
  `_setup_from_config`), and its topic's retained message is not sent again: it is unavailable
  until its next message. Home Assistant sets it up in a task of its own, after the messages
  already received, so a state message right behind the config may come before the set-up and
  leave it expired (seen on 2024.1.6): the model applies a config at once, and counts each
  set-up (`set_up_again`), for tests to hold at zero where none must happen.
- Binary sensor: the payload is compared with `payload_on`/`payload_off`; another is ignored
  with a warning.
- Availability: unavailable until `payload_available` (`online`) arrives on the availability
  topic, and again after `payload_not_available` (`offline`).
- Tag: every message on its topic renders the tag id; a non-empty one fires `tag_scanned`.
- On connecting it publishes its birth message, `online` on `<discovery prefix>/status`.

Time is the model's: `state(..., at=...)` answers for a later moment, so expiry is checked
without waiting for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

DISCOVERY_TOPIC = re.compile(r"(?P<component>\w+)/(?:(?P<node_id>[\w-]+)/)?(?P<object_id>[\w-]+)/config")
PAYLOAD_NONE = "None"
UNAVAILABLE, UNKNOWN = "unavailable", "unknown"
_client_ids = itertools.count(1)


def template_environment(warnings: list[str]) -> jinja2.Environment:
    """Home Assistant's template sandbox: an undefined value renders empty, with a warning."""

    class WarningUndefined(jinja2.Undefined):
        def _warn(self) -> None:
            warnings.append(f"Template variable warning: {self._undefined_message}")

        def __str__(self) -> str:
            self._warn()
            return ""

        def __bool__(self) -> bool:
            self._warn()
            return False

        def __iter__(self):
            self._warn()
            return iter(())

    return ImmutableSandboxedEnvironment(undefined=WarningUndefined)


@dataclass
class Entity:
    component: str  # sensor, binary_sensor, tag
    discovery_id: str
    config: dict[str, Any]
    value: str | None = None  # None: unknown
    updated_at: float | None = None  # when its last state message came, on the model's clock
    had_retained: bool = False  # its state topic's retained message was delivered to it
    set_up_again: int = 0  # changed configs it took: each one expires a sensor with expire_after

    @property
    def state_topic(self) -> str:
        return self.config["topic"] if self.component == "tag" else self.config["state_topic"]

    @property
    def device_identifier(self) -> str | None:
        device = self.config.get("device")
        return device["identifiers"][0] if device else None


@dataclass
class TagScan:
    tag_id: str
    device: str | None  # the identifier of the device that scanned it


@dataclass
class HomeAssistantModel:
    port: int
    discovery_prefix: str = "homeassistant"
    entities: dict[str, Entity] = field(default_factory=dict)  # unique id, or discovery id without one
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)  # first identifier → merged info
    tag_scans: list[TagScan] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._environment = template_environment(self.warnings)
        self._availability: dict[str, str] = {}  # topic → last payload seen on it
        self._task: asyncio.Task | None = None
        self._ready = asyncio.Event()

    async def __aenter__(self) -> HomeAssistantModel:
        self._task = asyncio.create_task(self._run())
        async with asyncio.timeout(10):
            await self._ready.wait()
        return self

    async def __aexit__(self, *exc) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        identifier = f"home-assistant-model-{next(_client_ids)}"
        async with aiomqtt.Client("127.0.0.1", self.port, identifier=identifier) as client:
            await client.subscribe(f"{self.discovery_prefix}/#", qos=1)
            await client.publish(f"{self.discovery_prefix}/status", "online", qos=1)
            self._ready.set()
            async for message in client.messages:
                topic = str(message.topic)
                payload = message.payload.decode() if isinstance(message.payload, bytes) else str(message.payload)
                if topic.startswith(f"{self.discovery_prefix}/"):
                    discovery = DISCOVERY_TOPIC.fullmatch(topic.removeprefix(f"{self.discovery_prefix}/"))
                    if discovery:
                        await self._discover(client, discovery, payload)
                else:
                    self._receive(topic, payload, message.retain)

    # --- discovery ----------------------------------------------------------------------------
    async def _discover(self, client: aiomqtt.Client, discovery: re.Match, payload: str) -> None:
        config = json.loads(payload)
        component = discovery["component"]
        discovery_id = "/".join(part for part in discovery.group("component", "node_id", "object_id") if part)
        key = config.get("unique_id", discovery_id)
        if device := config.get("device"):
            self.devices.setdefault(device["identifiers"][0], {}).update(device)
        if key in self.entities:  # an update of an entity already set up: no new subscription
            entity = self.entities[key]
            if config != entity.config:
                entity.config = config
                entity.set_up_again += 1
                if entity.component == "sensor" and config.get("expire_after"):
                    entity.updated_at = None  # expired until its next message
            return
        entity = Entity(component, discovery_id, config)
        self.entities[key] = entity
        # Subscribing again makes the broker send the topic's retained message; only the new
        # entity takes it (see `_receive`), as in Home Assistant.
        for topic in (entity.state_topic, config.get("availability_topic")):
            if topic:
                await client.subscribe(topic, qos=1)

    # --- state messages -----------------------------------------------------------------------
    def _receive(self, topic: str, payload: str, retained: bool) -> None:
        if any(e.config.get("availability_topic") == topic for e in self.entities.values()):
            self._availability[topic] = payload
        for entity in self.entities.values():
            if entity.state_topic != topic or (retained and entity.had_retained):
                continue
            entity.had_retained |= retained
            {"sensor": self._sensor, "binary_sensor": self._binary_sensor, "tag": self._tag}[entity.component](
                entity, payload
            )

    def render(self, template: str, payload: str) -> str:
        """A value template rendered as Home Assistant renders it; an error is logged and raised."""
        variables: dict[str, Any] = {"value": payload}
        with contextlib.suppress(ValueError):
            variables["value_json"] = json.loads(payload)
        try:
            return self._environment.from_string(template).render(variables)
        except jinja2.TemplateError as error:
            self.errors.append(f"Template variable error: {error} rendering {template!r}")
            raise

    def _sensor(self, entity: Entity, payload: str) -> None:
        entity.updated_at = time.monotonic()  # expiry restarts on every message, rendered or not
        try:
            template = entity.config.get("value_template")
            rendered = payload if template is None else self.render(template, payload)
        except jinja2.TemplateError:
            return
        if rendered == "":
            return  # Home Assistant ignores an empty state: the last value stays
        if rendered == PAYLOAD_NONE:
            entity.value = None
            return
        if "unit_of_measurement" in entity.config or "state_class" in entity.config:
            try:
                float(rendered)
            except ValueError:
                self.errors.append(f"{entity.discovery_id}: non-numeric value {rendered!r} for a numeric sensor")
                return
        entity.value = rendered

    def _binary_sensor(self, entity: Entity, payload: str) -> None:
        entity.updated_at = time.monotonic()
        states = {entity.config.get("payload_on", "ON"): "on", entity.config.get("payload_off", "OFF"): "off"}
        if payload == PAYLOAD_NONE:
            entity.value = None
        elif payload in states:
            entity.value = states[payload]
        else:
            self.warnings.append(f"{entity.discovery_id}: no matching payload found for {payload!r}")

    def _tag(self, entity: Entity, payload: str) -> None:
        try:
            tag_id = self.render(entity.config["value_template"], payload).strip()
        except jinja2.TemplateError:
            return
        if tag_id:
            self.tag_scans.append(TagScan(tag_id, entity.device_identifier))

    # --- what a person sees -------------------------------------------------------------------
    def state(self, key: str, at: float | None = None) -> str:
        """The entity's state as Home Assistant shows it, now or at a later `at` (monotonic seconds)."""
        entity = self.entities[key]
        config = entity.config
        if (topic := config.get("availability_topic")) and self._availability.get(topic) != config.get(
            "payload_available", "online"
        ):
            return UNAVAILABLE
        if expire_after := config.get("expire_after"):
            now = time.monotonic() if at is None else at
            if entity.updated_at is None or now - entity.updated_at > expire_after:
                return UNAVAILABLE
        return UNKNOWN if entity.value is None else entity.value

    def device_entities(self, identifier: str) -> dict[str, Entity]:
        return {key: e for key, e in self.entities.items() if e.device_identifier == identifier}

    async def until(self, condition, timeout: float = 15.0) -> None:
        """Poll `condition` until it holds; fail after `timeout` seconds."""
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.05)
