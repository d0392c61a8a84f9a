"""The MQTT side: the outbox drained at QoS 1, gateway state, stats, diagnostics, discovery.

Telemetry and status are retained, so a consumer that starts (Home Assistant after a
restart) reads each device's last state at once; check-ins are not, so no badge scan
is ever replayed. A clean stop says `offline` itself: the last will covers crashes only.

The outbox is the source of truth: an event leaves it only when the broker's PUBACK
came back and took it, so a broker outage or a daemon crash costs nothing but a
redelivery under the same event id. The gateway speaks MQTT 5, whose PUBACK says when
the broker refused a message (its access rules, a quota): such an event stays in the
outbox, held a while and tried again. Each connection uses a fresh client: paho's
in-memory session would only add a second, unbounded copy of what the outbox keeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import ssl
import time
from collections.abc import Callable
from typing import Any

import aiomqtt
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.client import MQTT_ERR_SUCCESS
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from boards.registry import Device, Registry

from .config import Config
from .events import device_topic
from .home_assistant import discovery_messages, gateway_discovery_messages
from .pipeline import Pipeline
from .state import GatewayState, OutboxEvent

log = logging.getLogger(__name__)

IN_FLIGHT = 20  # QoS 1 messages awaiting PUBACK at once (mosquitto's default window)
PUBLISH_TIMEOUT_S = 10.0
MAX_BACKOFF_S = 30.0
RETAINED_KINDS = ("telemetry", "status")  # a device's latest state; a check-in is an event
REFUSED_RETRY_S = 60.0  # an event the broker refused is tried again after this, or at the next connection
STATE_RETRY_S = 5.0  # a delivery the state file could not record (a full disk) is recorded again after this
BAD_CREDENTIALS = (0x86, 0x87)  # CONNACK: bad user name or password, not authorized (MQTT 5 section 3.2.2.2)


class Refused(Exception):
    """The broker acknowledged a message without taking it (an MQTT 5 PUBACK reason code of 0x80 or more)."""

    def __init__(self, topic: str, reason: ReasonCode) -> None:
        super().__init__(f"the broker refused {topic}: {reason} (0x{reason.value:02x})")
        self.topic = topic
        self.reason = reason


class Client(aiomqtt.Client):
    """aiomqtt's client, whose QoS 1 publish raises `Refused` when the broker's PUBACK refuses the message.

    aiomqtt 2.5 returns from a publish at the PUBACK whatever its reason code, and gives no way to the
    code: an event refused by an access rule would leave the outbox as if delivered. paho hands the
    code to on_publish, by message id; `publish` does what aiomqtt's does, and keeps the message id to
    look the code up by. It also registers the socket's writer only while the socket is open.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._refusals: dict[int, ReasonCode] = {}  # message id → the PUBACK's refusal, until its publish reads it

    def _on_publish(
        self, client: Any, userdata: Any, mid: int, reason_code: ReasonCode, properties: Properties
    ) -> None:
        if reason_code.is_failure:
            self._refusals[mid] = reason_code
        super()._on_publish(client, userdata, mid, reason_code, properties)

    def _on_socket_register_write(self, client: Any, userdata: Any, sock: Any) -> None:
        # aiomqtt registers the writer in a later callback (paho may call this from its connect thread),
        # by the socket's number as it is now. A connection lost in between (a gateway stopped past its
        # keepalive, then resumed) has closed the socket by then: the registration of its number logged
        # an asyncio traceback ("Bad file descriptor"), or would watch a new socket that took the number.
        def write() -> None:
            try:
                client.loop_write()
            except Exception as error:  # a broken connection: aiomqtt's message loop ends with it
                if not self._disconnected.done():
                    self._disconnected.set_exception(error)

        def register() -> None:
            if sock.fileno() != -1:  # -1 once closed
                self._loop.add_writer(sock.fileno(), write)

        self._loop.call_soon_threadsafe(register)

    async def publish(  # type: ignore[override]
        self, topic: str, payload: str, qos: int = 0, retain: bool = False, timeout: float | None = None
    ) -> None:
        info = self._client.publish(topic, payload, qos, retain)
        if info.rc != MQTT_ERR_SUCCESS:
            raise aiomqtt.MqttCodeError(info.rc, "Could not publish message")
        try:
            if not info.is_published():  # on_publish may have come already (aiomqtt's publish says so too)
                confirmation = asyncio.Event()
                with self._pending_call(info.mid, confirmation, self._pending_publishes):
                    await self._wait_for(confirmation.wait(), timeout=timeout)
        finally:
            refusal = self._refusals.pop(info.mid, None)
        if refusal is not None:
            raise Refused(topic, refusal)


async def send(client: aiomqtt.Client, topic: str, payload: str, qos: int = 1, retain: bool = False) -> None:
    """Publish; for QoS 1 this returns once the broker's PUBACK arrived, and raises `Refused` if it
    refused the message."""
    await client.publish(topic, payload, qos=qos, retain=retain, timeout=PUBLISH_TIMEOUT_S)


def _raise_if_cancelled() -> None:
    """Raise the cancellation a wait swallowed.

    aiomqtt waits with asyncio.wait_for, which on Python 3.11 swallows a cancellation that comes as
    the PUBACK does (CPython gh-86296), and a TaskGroup cancels its tasks only once: a loop that
    swallowed it would publish on forever and the daemon would never stop.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class _QuietAboutInFlight(logging.Filter):
    # aiomqtt warns past 10 publishes awaiting their PUBACK; we keep IN_FLIGHT on purpose.
    def filter(self, record: logging.LogRecord) -> bool:
        return "pending publish calls" not in record.getMessage()


MQTT_LOG = logging.getLogger("gateway_daemon.mqtt.client")
MQTT_LOG.addFilter(_QuietAboutInFlight())


class Publisher:
    """Keeps a connection to the broker and empties the outbox into it."""

    def __init__(
        self,
        config: Config,
        state: GatewayState,
        pipeline: Pipeline,
        registry: Callable[[], Registry],
        extra_stats: Callable[[], dict[str, Any]] = dict,
    ) -> None:
        self.config = config
        self.state = state
        self.pipeline = pipeline
        self.registry = registry
        self.extra_stats = extra_stats
        self.connected = False
        self.published = 0
        self.refused = 0  # messages the broker acknowledged without taking them
        self.reconnects = 0
        self._refused_topics: set[str] = set()  # said once in the log, until the broker takes one again
        self._own_message_refused = asyncio.Event()  # the state or a discovery config: all sent again soon
        self._unrecorded: set[int] = set()  # outbox seqs the broker took whose delivery the state file refused
        self.started = time.monotonic()  # the uptime holds through a step of the wall clock (NTP's first sync)
        self._wake = asyncio.Event()
        self._registry_changed = asyncio.Event()
        gateway = config.gateway.name
        self.topic_base = f"{config.mqtt.topic_prefix}/gateway/{gateway}"
        # Device id → the version its last status named, kept across restarts: the discovery configs
        # announced at start are then those retained, which Home Assistant takes as unchanged.
        self.firmware: dict[int, str] = state.firmware_versions()
        # State topic → the sender (device id and key epoch) and counter of the message retained on it.
        self._retained: dict[str, tuple[str, int]] = {}

    def wake(self) -> None:
        """Something new is waiting: an accepted event or a rejected input."""
        self._wake.set()

    def registry_changed(self) -> None:
        """The registry was reloaded: publish every device's discovery again (new devices, new intervals)."""
        self._registry_changed.set()

    def _client(self) -> Client:
        mqtt = self.config.mqtt
        tls_context = None
        if mqtt.tls:
            tls_context = ssl.create_default_context(cafile=mqtt.ca_file or None)
        return Client(
            mqtt.host,
            mqtt.port,
            protocol=aiomqtt.ProtocolVersion.V5,
            username=mqtt.username or None,
            password=mqtt.password or None,
            identifier=mqtt.client_id or f"borne-{self.config.gateway.name}",
            will=aiomqtt.Will(f"{self.topic_base}/state", "offline", qos=1, retain=True),
            tls_context=tls_context,
            max_queued_outgoing_messages=IN_FLIGHT * 5,
            logger=MQTT_LOG,
            timeout=PUBLISH_TIMEOUT_S,
        )

    async def run(self) -> None:
        """Connect, publish, and reconnect with backoff forever; returns only when cancelled. The backoff
        starts over once a connection has lasted: one that fails at once again and again backs off."""
        backoff = 1.0
        while True:
            connected_at: float | None = None
            try:
                async with self._client() as client:
                    self.connected = True
                    connected_at = time.monotonic()
                    log.info("connected to MQTT broker %s:%s", self.config.mqtt.host, self.config.mqtt.port)
                    try:
                        await self._session(client)
                    except asyncio.CancelledError:
                        await self._say_offline(client)
                        raise
            except* aiomqtt.MqttError as errors:
                self._log_connection_error(errors.exceptions[0], backoff)
            except* Exception:  # a bug must not end publishing: the outbox keeps everything meanwhile
                log.exception("MQTT publishing failed; reconnecting in %.0f s", backoff)
            if connected_at is not None and time.monotonic() - connected_at >= MAX_BACKOFF_S:
                backoff = 1.0  # that connection lasted: its end is news, not the same failure again
            self.connected = False
            self.reconnects += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    def _log_connection_error(self, error: BaseException, backoff: float) -> None:
        broker = f"{self.config.mqtt.host}:{self.config.mqtt.port}"
        code = getattr(getattr(error, "rc", None), "value", None)
        if isinstance(error, MqttConnectError) and code in BAD_CREDENTIALS:
            log.error(
                "MQTT broker %s refused the gateway's credentials (%s): check username and password in the "
                "[mqtt] section of the gateway's configuration against the broker's password file; "
                "nothing is lost meanwhile, retrying in %.0f s",
                broker,
                error,
                backoff,
            )
        elif isinstance(error, MqttConnectError):
            log.error("MQTT broker %s refused the connection (%s); retrying in %.0f s", broker, error, backoff)
        else:
            log.warning("MQTT broker %s unreachable or lost (%s); retrying in %.0f s", broker, error, backoff)

    async def _say_offline(self, client: aiomqtt.Client) -> None:
        """On a clean stop: leaving with a DISCONNECT cancels the last will, so say it ourselves."""
        try:
            await send(client, f"{self.topic_base}/state", "offline", retain=True)
        except aiomqtt.MqttError as error:
            log.warning("could not publish offline before stopping (%s): the broker will not say it either", error)

    async def _session(self, client: aiomqtt.Client) -> None:
        self.state.release_held()  # the broker's rules may have changed: try what it refused again now
        await self._send_or_log(client, f"{self.topic_base}/state", "online")
        ha = self.config.home_assistant
        if ha.enabled:
            await client.subscribe(f"{ha.discovery_prefix}/status")
            # Every node's retained status, ours included: its firmware goes onto its device.
            await client.subscribe(f"{self.config.mqtt.topic_prefix}/+/+/status", qos=1)
            await self._announce(client)
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._drain(client))
            tasks.create_task(self._stats_loop(client))
            tasks.create_task(self._send_own_messages_again(client))
            if ha.enabled:
                tasks.create_task(self._listen(client))
                tasks.create_task(self._announce_on_reload(client))

    async def _send_own_messages_again(self, client: aiomqtt.Client) -> None:
        """The gateway's state and discovery configs, sent again REFUSED_RETRY_S after the broker refused one of
        them, until it takes them all: its access rules may have changed (Home Assistant ignores a config
        it has already)."""
        while True:
            await self._own_message_refused.wait()
            await asyncio.sleep(REFUSED_RETRY_S)
            _raise_if_cancelled()
            self._own_message_refused.clear()
            await self._send_or_log(client, f"{self.topic_base}/state", "online")
            if self.config.home_assistant.enabled:
                await self._announce(client)

    async def _announce(self, client: aiomqtt.Client) -> None:
        """Every discovery config: the gateway's own device, then each registered device's."""
        ha, mqtt = self.config.home_assistant, self.config.mqtt
        gateway = self.config.gateway.name
        for topic, payload in gateway_discovery_messages(
            gateway, mqtt.topic_prefix, ha.discovery_prefix, mqtt.stats_interval_s
        ):
            await self._send_or_log(client, topic, payload)
        await self._announce_devices(client, list(self.registry().devices.values()))

    async def _announce_on_reload(self, client: aiomqtt.Client) -> None:
        while True:
            await self._registry_changed.wait()
            self._registry_changed.clear()
            await self._announce_devices(client, list(self.registry().devices.values()))
            _raise_if_cancelled()

    async def _announce_devices(self, client: aiomqtt.Client, devices: list[Device]) -> None:
        ha, mqtt = self.config.home_assistant, self.config.mqtt
        for topic, payload in discovery_messages(
            devices, self.config.gateway.name, mqtt.topic_prefix, ha.discovery_prefix, self.firmware
        ):
            await self._send_or_log(client, topic, payload)

    async def _listen(self, client: aiomqtt.Client) -> None:
        home_assistant_status = f"{self.config.home_assistant.discovery_prefix}/status"
        async for message in client.messages:
            if message.topic.matches(home_assistant_status):
                if message.payload == b"online":  # Home Assistant restarted: it wants the configs again
                    await self._announce(client)
            else:
                await self._note_firmware(client, str(message.topic), message.payload)
            _raise_if_cancelled()

    async def _note_firmware(self, client: aiomqtt.Client, topic: str, payload: Any) -> None:
        """A node's status: when it names a firmware not yet on the node's device, publish the device again.

        The version is on the firmware sensor's config alone (see `discovery_messages`); this gateway
        announces it before it publishes the status that names it (`_publish`), so that the device's
        version changes with that status. A status another gateway published comes here after it.
        """
        try:
            status = json.loads(payload)
            device = self.registry().devices.get(status["device_id"])
            firmware = str(status["firmware"])
        except (ValueError, TypeError, KeyError):
            return  # not one of ours: another publisher's message on a matching topic
        if device is None or topic != device_topic(self.config.mqtt.topic_prefix, device, "status"):
            return  # a status of another device's topic says nothing of this one
        if self.firmware.get(device.device_id) == firmware:
            return
        self.firmware[device.device_id] = firmware
        self.state.note_firmware(device.device_id, firmware)
        await self._announce_devices(client, [device])

    async def _drain(self, client: aiomqtt.Client) -> None:
        while True:
            _raise_if_cancelled()  # after a batch: what was published is marked delivered first
            await self._publish_diagnostics(client)
            self._record_deliveries()
            batch = self._pending(IN_FLIGHT)
            if batch:
                await asyncio.gather(*(self._publish(client, event) for event in batch))
                continue
            self._wake.clear()
            if not self._pending(1) and not self.pipeline.diagnostics:
                _, released_at = self.state.held()
                due_in = None if released_at is None else max(0.0, released_at - time.time())
                if self._unrecorded:  # try to record them again a while later
                    due_in = STATE_RETRY_S if due_in is None else min(due_in, STATE_RETRY_S)
                with contextlib.suppress(TimeoutError):  # a held event is due again
                    async with asyncio.timeout(due_in):
                        await self._wake.wait()

    def _pending(self, limit: int) -> list[OutboxEvent]:
        """The oldest events to publish, but those the broker took whose delivery is not recorded yet."""
        events = self.state.pending(limit + len(self._unrecorded))
        return [event for event in events if event.seq not in self._unrecorded][:limit]

    def _record_deliveries(self) -> None:
        """Record the deliveries the state file refused to (a full disk): in order, until one fails again."""
        for seq in sorted(self._unrecorded):
            try:
                self.state.delivered(seq)
            except sqlite3.Error:
                return
            self._unrecorded.discard(seq)
            self.state.write_succeeded()

    async def _publish(self, client: aiomqtt.Client, event: OutboxEvent) -> None:
        if event.kind == "status" and self.config.home_assistant.enabled:
            await self._note_firmware(client, event.topic, event.payload)
        try:
            await send(client, event.topic, event.payload, retain=self._retains(event))
        except Refused as refused:
            self.state.hold(event.seq, time.time() + REFUSED_RETRY_S)
            self._note_refused(refused, f"{event.event_id} stays in the outbox, tried again in {REFUSED_RETRY_S:.0f} s")
            return
        self._note_taken(event.topic)
        self.published += 1
        try:
            self.state.delivered(event.seq)
        except sqlite3.Error as error:
            # The broker has it: publishing it again on every reconnection would make consumers see it again
            # and again (a tag scan in Home Assistant). Kept here until the state file takes the record; a
            # restart meanwhile publishes it once more, under the same event id.
            self._unrecorded.add(event.seq)
            self.state.write_failed(error, "events the broker took are kept in memory until it can record them")
        else:
            self.state.write_succeeded()

    async def _send_or_log(self, client: aiomqtt.Client, topic: str, payload: str) -> None:
        """Publish a retained message of the gateway's own (its state, a discovery config): one the broker
        refuses is said in the log and sent again (`_send_own_messages_again`)."""
        try:
            await send(client, topic, payload, retain=True)
        except Refused as refused:
            self._own_message_refused.set()
            self._note_refused(refused, f"sent again in {REFUSED_RETRY_S:.0f} s")
        else:
            self._note_taken(topic)

    def _note_refused(self, refused: Refused, then: str) -> None:
        self.refused += 1
        if refused.topic in self._refused_topics:
            return  # said once per topic: an access rule that refuses a topic refuses each of its messages
        self._refused_topics.add(refused.topic)
        prefixes = [self.config.mqtt.topic_prefix]
        if self.config.home_assistant.enabled:
            prefixes.append(self.config.home_assistant.discovery_prefix)
        log.error(
            "%s: the broker's access rules must let this gateway's user publish on %s; %s",
            refused,
            " and ".join(f"{prefix}/#" for prefix in prefixes),
            then,
        )

    def _note_taken(self, topic: str) -> None:
        if topic in self._refused_topics:
            self._refused_topics.discard(topic)
            log.info("the broker takes %s again", topic)

    def _retains(self, event: OutboxEvent) -> bool:
        """Whether the broker should keep this event as its device's latest state.

        A frame accepted late, by the receive window, is older than what is retained already:
        it is published, but must not replace the newer state. Counters are compared only under
        the same keys: a board flashed with new keys (a new key epoch), or a new device under the
        topic's name, starts its counters at 0 again, and its first report is the newest.
        """
        if event.kind not in RETAINED_KINDS:
            return False
        sender, _, counter_text = event.event_id.partition(":")  # a report's id is `<sender>:<counter>`
        counter = int(counter_text)
        retained = self._retained.get(event.topic)
        if retained is not None and retained[0] == sender and counter < retained[1]:
            return False
        self._retained[event.topic] = (sender, counter)
        return True

    async def _publish_diagnostics(self, client: aiomqtt.Client) -> None:
        # Diagnostics are best effort (QoS 0): they are counted in stats whatever happens.
        while self.pipeline.diagnostics:
            diagnostic = self.pipeline.diagnostics.popleft()
            await send(client, f"{self.topic_base}/rejected", json.dumps(diagnostic.to_json()), qos=0)

    async def _stats_loop(self, client: aiomqtt.Client) -> None:
        while True:
            await send(client, f"{self.topic_base}/stats", json.dumps(self.stats()), qos=0)
            _raise_if_cancelled()
            await asyncio.sleep(self.config.mqtt.stats_interval_s)

    def stats(self) -> dict[str, Any]:
        """Every counter an operator needs at 3 a.m., as published on the stats topic."""
        return {
            "gateway": self.config.gateway.name,
            "uptime_s": round(time.monotonic() - self.started),
            "pipeline": dict(self.pipeline.counters),
            "rejected": dict(self.pipeline.rejected),
            "outbox_depth": self.state.depth(),
            "outbox_dropped": self.state.dropped(),
            "mqtt_published": self.published,
            "mqtt_refused": self.refused,
            "mqtt_reconnects": self.reconnects,
            **self.extra_stats(),
        }
