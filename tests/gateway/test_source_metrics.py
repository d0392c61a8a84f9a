"""Each source's counters, as an operator reads them: on the Prometheus endpoint and on the stats topic, alike."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import jsonschema
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

from gateway_daemon.metrics import source_metrics
from gateway_daemon.sources.semtech_protocol import PushData, rxpk_of
from gateway_daemon.sources.serial_bridge import SerialBridge
from payload_codec import DOWN, open_frame
from simulator.broker import free_port
from simulator.packet_forwarder import PacketForwarder

from .conftest import Subscriber
from .site import config_text, schema, write_registry
from .test_gateway import KEYS, checkin, telemetry
from .test_udp_end_to_end import Daemon

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
DOCS = Path(__file__).parents[2] / "docs" / "mqtt.md"


def assert_documented(samples: Samples) -> None:
    """Every metric exported is in docs/mqtt.md, by its full name."""
    documentation = DOCS.read_text(encoding="utf-8")
    undocumented = {name for name, _ in samples if f"`{name}`" not in documentation}
    assert not undocumented, f"metrics missing from docs/mqtt.md: {sorted(undocumented)}"


def samples_of(exposition: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def scrape(port: int) -> Samples:
    """GET /metrics as Prometheus does; waits for the endpoint to come up."""
    async with asyncio.timeout(15):
        while True:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                break
            except OSError:
                await asyncio.sleep(0.05)
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: gateway\r\n\r\n")
        response = (await reader.read()).decode()
        writer.close()
    head, _, body = response.partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 200 OK"), head
    return samples_of(body)


async def scrape_until(port: int, done, timeout: float = 15.0) -> Samples:
    async with asyncio.timeout(timeout):
        while not done(samples := await scrape(port)):
            await asyncio.sleep(0.1)
    return samples


async def test_a_running_gateway_exports_each_sources_counters_to_prometheus_and_the_stats_topic(tmp_path, broker):
    write_registry(tmp_path / "devices.toml")
    udp_port, metrics_port = free_port(), free_port()
    config = tmp_path / "gateway.toml"
    config.write_text(
        config_text(tmp_path, broker.port, metrics_port=metrics_port) + f"[udp]\nenabled = true\nport = {udp_port}\n"
    )
    daemon = Daemon(config)
    forwarder: PacketForwarder | None = None
    try:
        async with Subscriber(broker.port) as subscriber:
            await daemon.start()
            await scrape_until(metrics_port, lambda s: value(s, "borne_source_connected", source="udp") == 1)
            forwarder = await PacketForwarder.connect(udp_port)
            eui = forwarder.gateway_eui

            forwarder.pull()  # the downlink path, for the ACK
            forwarder.hear(telemetry(1))
            forwarder.hear(checkin(2))  # asks for an ACK: one downlink
            forwarder.send_raw(b"\x03\x00\x01\x00" + eui + b"{}")  # a protocol version no forwarder speaks
            heard_badly = rxpk_of(
                b"\x01", timestamp_us=5, frequency_hz=868_100_000, spreading_factor=9, bandwidth_hz=125_000,
                rssi_dbm=-120, snr_db=-15,
            ) | {"stat": -1}  # fmt: skip
            forwarder.send_raw(PushData(1, eui.hex(), [heard_badly]).encode())
            async with asyncio.timeout(10):
                ack = await forwarder.downlinks.get()
            assert open_frame(ack, KEYS, None, DOWN).message.acked_counter16 == 2
            await subscriber.wait_for(lambda: subscriber.on("/checkin") and subscriber.on("/telemetry"))

            udp = {"source": "udp"}
            samples = await scrape_until(
                metrics_port, lambda s: value(s, "borne_source_transmits_total", **udp, result="sent") == 1
            )
            expected = {
                ("borne_source_frames_received_total", ()): 2,
                ("borne_source_rejected_total", (("reason", "bad_version"),)): 1,
                ("borne_source_rejected_total", (("reason", "crc_failed"),)): 1,
                ("borne_source_transmits_total", (("result", "sent"),)): 1,
                ("borne_source_reconnects_total", ()): 0,
                ("borne_source_connected", ()): 1,
                ("borne_udp_datagrams_total", ()): 6,  # PULL_DATA, 3 PUSH_DATA, version 3, TX_ACK
                ("borne_udp_push_data_total", ()): 3,
                ("borne_udp_pull_data_total", ()): 1,
                ("borne_udp_tx_acks_total", ()): 1,
                ("borne_udp_late_tx_acks_total", ()): 0,
                ("borne_udp_overloaded_total", ()): 0,
            }
            scraped = {key: value(samples, key[0], **udp, **dict(key[1])) for key in expected}
            assert scraped == expected
            each_forwarder = {**udp, "gateway_eui": eui.hex()}
            for name in ("borne_udp_forwarder_heard_age_seconds", "borne_udp_forwarder_push_data_age_seconds"):
                assert 0 <= value(samples, name, **each_forwarder) < 60
            assert_documented(samples)
            assert not [key for key in samples if key[0] == "borne_source_transmits_total" and key != (
                "borne_source_transmits_total", frozenset({"source": "udp", "result": "sent"}.items())
            )]  # fmt: skip

            # The stats topic carries the same numbers, from the same statistics.
            def latest() -> dict:
                stats = subscriber.on("/gateway/gw-test/stats")
                return stats[-1]["sources"]["udp"] if stats else {}

            await subscriber.wait_for(lambda: latest().get("transmits") == {"sent": 1})
            published = subscriber.on("/gateway/gw-test/stats")[-1]
            jsonschema.validate(published, schema("stats"))
            heard = published["sources"]["udp"].pop("forwarders")
            assert list(heard) == [eui.hex()] and heard[eui.hex()]["heard_s_ago"] < 60
            assert published["sources"]["udp"] == {
                "connected": True,
                "received": 2,
                "rejected": {"bad_version": 1, "crc_failed": 1},
                "transmits": {"sent": 1},
                "reconnects": 0,
                "datagrams": 6,
                "push_data": 3,
                "pull_data": 1,
                "tx_acks": 1,
                "late_tx_acks": 0,
                "overloaded": 0,
            }
    finally:
        if forwarder is not None:
            forwarder.close()
        await daemon.stop()


def test_the_bridge_boards_heartbeat_is_exported_with_its_age_and_counters(tmp_path) -> None:
    clock = [1000.0]
    bridge = SerialBridge(str(tmp_path / "ttyUSB0"), clock=lambda: clock[0])
    bridge.stats.heartbeat = {
        "link_version": 1,
        "firmware_major": 1,
        "firmware_minor": 4,
        "firmware_patch": 2,
        "uptime_s": 3600,
        "received": 120,
        "transmitted": 30,
        "radio_errors": 3,
        "records_dropped": 2,
    }
    bridge.stats.heartbeat_at = 990.0
    bridge.stats.records = 7
    samples = samples_of(generate_latest(_registry_of(bridge)).decode())
    source = {"source": bridge.name}
    assert value(samples, "borne_source_heartbeat_age_seconds", **source) == 10.0
    assert value(samples, "borne_bridge_board_info", **source, firmware="1.4.2", link_version="1") == 1
    assert value(samples, "borne_bridge_board_uptime_seconds", **source) == 3600
    assert value(samples, "borne_bridge_board_frames_received_total", **source) == 120
    assert value(samples, "borne_bridge_board_frames_transmitted_total", **source) == 30
    assert value(samples, "borne_bridge_board_radio_errors_total", **source) == 3
    assert value(samples, "borne_bridge_board_records_dropped_total", **source) == 2
    assert value(samples, "borne_bridge_records_total", **source) == 7
    assert value(samples, "borne_source_connected", **source) == 0
    assert_documented(samples)
    entry = bridge.stats.to_json(clock[0])
    assert entry["heartbeat_age_s"] == 10.0
    stats_schema = schema("stats")
    jsonschema.validate(entry, {"$defs": stats_schema["$defs"], "$ref": "#/$defs/source"})


def test_a_source_without_a_heartbeat_exports_no_heartbeat_age(tmp_path) -> None:
    bridge = SerialBridge(str(tmp_path / "ttyUSB0"))
    exposition = generate_latest(_registry_of(bridge)).decode()
    assert f'borne_source_frames_received_total{{source="{bridge.name}"}} 0.0' in exposition
    assert f'borne_source_heartbeat_age_seconds{{source="{bridge.name}"}}' not in exposition


def _registry_of(*sources: SerialBridge) -> CollectorRegistry:
    registry = CollectorRegistry()

    class Sources:
        def collect(self) -> Iterator[Metric]:
            return source_metrics(sources)

    registry.register(Sources())
    return registry
