"""Running the gateway as an operator does: TLS and passwords, systemd, SIGHUP, last will, Home Assistant."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import ipaddress
import json
import logging
import os
import signal
import socket
import ssl
import subprocess
import sys

import aiomqtt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from boards.registry import Device, Registry
from gateway_daemon import mqtt as gateway_mqtt
from payload_codec import Telemetry, build_frame, derive_device_keys
from payload_codec.vectorgen import DEVICE_ID, TEST_MASTER_KEY
from simulator.broker import Broker, free_port
from simulator.packet_forwarder import PacketForwarder

from .conftest import Subscriber
from .site import Site, config_text, until, write_registry
from .test_gateway import checkin
from .test_udp_end_to_end import Daemon

STATE = "borne/gateway/gw-test/state"


def _certificate(subject: str, key, issuer_key, issuer_name, *, ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer_name or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write_tls_files(directory):
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("borne test CA", ca_key, ca_key, None, ca=True)
    server = _certificate("localhost", server_key, ca_key, ca.subject, ca=False)
    pem = serialization.Encoding.PEM
    (directory / "ca.pem").write_bytes(ca.public_bytes(pem))
    (directory / "server.pem").write_bytes(server.public_bytes(pem))
    (directory / "server.key").write_bytes(
        server_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return directory / "ca.pem"


async def test_tls_and_a_password_are_configuration_not_code(tmp_path):
    ca_file = _write_tls_files(tmp_path)
    passwords = tmp_path / "passwords"
    passwords.touch()
    subprocess.run(["mosquitto_passwd", "-b", str(passwords), "gateway", "s3cret"], check=True, timeout=30)
    subprocess.run(["mosquitto_passwd", "-b", str(passwords), "reader", "r3ader"], check=True, timeout=30)
    tls = f"cafile {ca_file}\ncertfile {tmp_path / 'server.pem'}\nkeyfile {tmp_path / 'server.key'}\n"
    with Broker(tmp_path, listener_settings=tls, password_file=passwords) as broker:
        mqtt = f'username = "gateway"\npassword = "s3cret"\ntls = true\nca_file = "{ca_file}"\n'
        context = ssl.create_default_context(cafile=str(ca_file))
        reader = aiomqtt.Client("127.0.0.1", broker.port, username="reader", password="r3ader", tls_context=context)
        async with reader, Site(tmp_path, broker.port, mqtt=mqtt):
            await reader.subscribe("borne/gateway/gw-test/state")
            async with asyncio.timeout(15):
                async for message in reader.messages:
                    assert message.payload == b"online"
                    break


def _passwords(directory):
    passwords = directory / "passwords"
    passwords.touch()
    for user, password in (("gateway", "s3cret"), ("reader", "r3ader")):
        subprocess.run(["mosquitto_passwd", "-b", str(passwords), user, password], check=True, timeout=30)
    return passwords


GATEWAY_USER = 'username = "gateway"\npassword = "s3cret"\n'
# What the gateway's user may do on a broker with access rules, but publish a device's check-ins.
RULES = """user gateway
topic write borne/gateway/#
topic write homeassistant/#
topic read homeassistant/status
topic read borne/+/+/status
topic write borne/ecole-jaures/door-258/telemetry
topic write borne/ecole-jaures/door-258/status
{more}
user reader
topic read #
"""


# The gateway's user may publish its events, not its discovery configs.
NO_DISCOVERY = "user gateway\ntopic readwrite borne/#\ntopic read homeassistant/status\n\nuser reader\ntopic read #\n"


async def test_a_check_in_the_brokers_rules_refuse_waits_in_the_outbox_until_they_let_it_through(
    tmp_path, monkeypatch, caplog
):
    # mosquitto acknowledges a PUBLISH its access rules deny: only MQTT 5's PUBACK reason code (0x87) says so.
    monkeypatch.setattr(gateway_mqtt, "REFUSED_RETRY_S", 1.0)
    caplog.set_level(logging.INFO, logger="gateway_daemon.mqtt")
    rules = tmp_path / "acl"
    rules.write_text(RULES.format(more=""))
    with Broker(tmp_path, f"acl_file {rules}\n", _passwords(tmp_path)) as broker:
        reader = aiomqtt.Client("127.0.0.1", broker.port, username="reader", password="r3ader")
        async with reader, Site(tmp_path, broker.port, mqtt=GATEWAY_USER) as site:
            await reader.subscribe("borne/+/+/checkin", qos=1)
            site.radio.hear(checkin(7, ack=False))
            await site.settle()
            publisher = site.gateway.publisher
            await until(lambda: publisher.refused >= 2)  # refused, held, and refused again a second later
            assert site.gateway.state.depth() == 1 and publisher.published == 0
            assert site.gateway.state.held()[0] == 1
            refusals = [r.getMessage() for r in caplog.records if "refused borne/ecole-jaures" in r.getMessage()]
            assert len(refusals) == 1, refusals  # once for the topic, however often it is tried
            assert "Not authorized" in refusals[0] and "publish on borne/# and homeassistant/#" in refusals[0]
            assert "258:checkin:7 stays in the outbox" in refusals[0]
            config = tmp_path / "gateway.toml"
            config.write_text(config_text(tmp_path, broker.port, mqtt=GATEWAY_USER))
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "borne", "gateway", "status", "--config", str(config), stdout=subprocess.PIPE
            )
            output = (await process.communicate())[0].decode()
            assert "outbox: 1 events waiting for the broker (1 refused by the broker's access rules" in output

            rules.write_text(RULES.format(more="topic write borne/#"))
            broker.process.send_signal(signal.SIGHUP)  # mosquitto reads its access rules again
            async with asyncio.timeout(15):
                async for message in reader.messages:
                    assert json.loads(message.payload)["event_id"] == "258:checkin:7"
                    break
            await until(lambda: site.gateway.state.depth() == 0)
            assert publisher.stats()["mqtt_refused"] == publisher.refused and publisher.published == 1
            taken_again = "the broker takes borne/ecole-jaures/door-258/checkin again"
            assert any(taken_again in record.getMessage() for record in caplog.records)


async def test_discovery_configs_the_brokers_rules_refuse_are_sent_again_once_they_let_them_through(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(gateway_mqtt, "REFUSED_RETRY_S", 1.0)
    rules = tmp_path / "acl"
    rules.write_text(NO_DISCOVERY)
    with Broker(tmp_path, f"acl_file {rules}\n", _passwords(tmp_path)) as broker:
        reader = aiomqtt.Client("127.0.0.1", broker.port, username="reader", password="r3ader")
        async with reader, Site(tmp_path, broker.port, mqtt=GATEWAY_USER) as site:
            await reader.subscribe("homeassistant/#", qos=1)
            publisher = site.gateway.publisher
            await until(lambda: publisher.refused >= 2)
            rules.write_text(RULES.format(more="topic write borne/#"))
            broker.process.send_signal(signal.SIGHUP)
            async with asyncio.timeout(15):  # sent again within REFUSED_RETRY_S, without a new connection
                async for message in reader.messages:
                    assert str(message.topic).endswith("/config")
                    break
            assert publisher.reconnects == 0


async def test_credentials_the_broker_refuses_are_an_error_naming_the_settings_and_lose_nothing(tmp_path, caplog):
    with Broker(tmp_path, password_file=_passwords(tmp_path)) as broker:
        async with Site(tmp_path, broker.port, mqtt='username = "gateway"\npassword = "wrong"\n') as site:
            site.radio.hear(checkin(7, ack=False))
            await site.settle()
            await until(lambda: any("credentials" in r.getMessage() for r in caplog.records))
            assert site.gateway.state.depth() == 1
        (record,) = [r for r in caplog.records if "credentials" in r.getMessage()][:1]
        assert record.levelname == "ERROR"
        assert "check username and password in the [mqtt] section" in record.getMessage()
        assert "nothing is lost meanwhile" in record.getMessage()


async def test_a_socket_closed_before_its_writer_is_registered_is_left_alone():
    # A gateway stopped past its keepalive, then resumed: paho asks for the socket's writer, and the
    # broker's closed connection closes the socket before the event loop registers it. The loop must
    # neither log a "Bad file descriptor" traceback nor watch a new socket under the old number.
    loop = asyncio.get_running_loop()
    errors: list[dict] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    client = gateway_mqtt.Client(hostname="127.0.0.1")
    mine, theirs = socket.socketpair()
    with theirs:
        client._on_socket_register_write(client._client, None, mine)
        mine.close()
        await asyncio.sleep(0.05)  # the registration's callback runs
    assert errors == []


async def test_systemd_readiness_watchdog_sighup_and_last_will(tmp_path, broker):
    write_registry(tmp_path / "devices.toml")
    udp_port = free_port()
    config = tmp_path / "gateway.toml"
    config.write_text(config_text(tmp_path, broker.port) + f"[udp]\nenabled = true\nport = {udp_port}\n")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.setblocking(False)
    os.environ.update(NOTIFY_SOCKET=str(tmp_path / "notify"), WATCHDOG_USEC="200000")
    daemon = Daemon(config)
    try:
        async with Subscriber(broker.port) as subscriber:
            await daemon.start()
            messages = await _notifications(notify, until={"READY=1", "WATCHDOG=1"})
            assert {"READY=1", "WATCHDOG=1"} <= messages

            # A device registered while the daemon runs is heard once SIGHUP reloads the registry.
            registry = Registry.load(tmp_path / "devices.toml")
            registry.add(Device(600, "door-600", "ecole-jaures", "school", derive_device_keys(TEST_MASTER_KEY, 600)))
            registry.save(tmp_path / "devices.toml")
            daemon.process.send_signal(signal.SIGHUP)
            await asyncio.sleep(0.5)
            forwarder = await PacketForwarder.connect(udp_port)
            frame = build_frame(Telemetry(co2_ppm=700), 600, 1, derive_device_keys(TEST_MASTER_KEY, 600))
            forwarder.hear(frame)
            await subscriber.wait_for(lambda: any(p["device_id"] == 600 for p in subscriber.on("/telemetry")))
            forwarder.close()
            # ... and Home Assistant is told of it at once, not at the next reconnection.
            await subscriber.wait_for(
                lambda: any(str(m.topic).startswith("homeassistant/sensor/borne_600/") for m in subscriber.messages)
            )

            # Killed without a goodbye, the gateway is marked offline by its last will.
            await daemon.kill()
            state = "borne/gateway/gw-test/state"
            await subscriber.wait_for(
                lambda: [m.payload for m in subscriber.messages if str(m.topic) == state][-1:] == [b"offline"]
            )
    finally:
        os.environ.pop("NOTIFY_SOCKET")
        os.environ.pop("WATCHDOG_USEC")
        notify.close()
        await daemon.stop()


async def test_a_running_gateway_follows_a_new_key_epoch_saved_in_its_registry_without_a_sighup(tmp_path, broker):
    registry_file = tmp_path / "devices.toml"
    write_registry(registry_file, device_ids=(DEVICE_ID, 601))
    udp_port = free_port()
    config = tmp_path / "gateway.toml"
    config.write_text(config_text(tmp_path, broker.port) + f"[udp]\nenabled = true\nport = {udp_port}\n")
    old_keys, other_keys = (derive_device_keys(TEST_MASTER_KEY, device_id) for device_id in (DEVICE_ID, 601))
    new_keys = derive_device_keys(TEST_MASTER_KEY, DEVICE_ID, 1)
    daemon = Daemon(config)
    forwarder = None
    try:
        async with Subscriber(broker.port) as subscriber:
            await daemon.start()
            await subscriber.wait_for(lambda: [m.payload for m in subscriber.messages if m.topic.matches(STATE)])
            forwarder = await PacketForwarder.connect(udp_port)

            def co2(device_id: int) -> list[int]:
                return [p["co2_ppm"] for p in subscriber.on("/telemetry") if p["device_id"] == device_id]

            forwarder.hear(build_frame(Telemetry(co2_ppm=500), DEVICE_ID, 500, old_keys))
            forwarder.hear(build_frame(Telemetry(co2_ppm=640), 601, 40, other_keys))
            await subscriber.wait_for(lambda: co2(DEVICE_ID) == [500] and co2(601) == [640])

            # `borne board flash` moves the device onto another board: it saves the registry with
            # the device's new key epoch, and the board counts from 0 under the new keys.
            registry = Registry.load(registry_file)
            moved = dataclasses.replace(registry.devices[DEVICE_ID], key_epoch=1, keys=new_keys)
            registry.devices[DEVICE_ID] = moved
            registry.save(registry_file)
            forwarder.hear(build_frame(Telemetry(co2_ppm=700), DEVICE_ID, 0, new_keys))
            await subscriber.wait_for(lambda: co2(DEVICE_ID) == [500, 700])  # its very first frame: none lost

            # The other device's counters are kept: its counter 40 is still taken, 41 is next.
            forwarder.hear(build_frame(Telemetry(co2_ppm=666), 601, 40, other_keys))
            forwarder.hear(build_frame(Telemetry(co2_ppm=641), 601, 41, other_keys))
            await subscriber.wait_for(lambda: co2(601)[-1:] == [641])
            assert co2(601) == [640, 641]
    finally:
        if forwarder is not None:
            forwarder.close()
        await daemon.stop()


async def _notifications(notify: socket.socket, until: set[str]) -> set[str]:
    seen: set[str] = set()
    async with asyncio.timeout(15):
        while not until <= seen:
            try:
                seen.add(notify.recv(100).decode())
            except BlockingIOError:
                await asyncio.sleep(0.05)
    return seen


async def test_home_assistant_coming_online_gets_the_discovery_again(tmp_path, broker):
    async with Subscriber(broker.port) as subscriber, Site(tmp_path, broker.port):
        configs = lambda: [m for m in subscriber.messages if str(m.topic).endswith("/config")]  # noqa: E731
        await subscriber.wait_for(lambda: len(configs()) >= 6)
        await asyncio.sleep(0.3)
        first = len(configs())
        async with aiomqtt.Client("127.0.0.1", broker.port) as home_assistant:
            await home_assistant.publish("homeassistant/status", "online")
        await subscriber.wait_for(lambda: len(configs()) >= 2 * first)
