"""Prometheus metrics at http://<metrics.host>:<metrics.port>/metrics.

The exposition format comes from `prometheus_client`; the values are read from the
gateway at scrape time, in the event loop (the state's SQLite connection belongs
to it), so the HTTP side is a small asyncio server rather than the library's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric

from .sources import Source
from .sources.semtech_udp import UdpStats

if TYPE_CHECKING:
    from .daemon import Gateway

# The bridge board's report of itself, from its heartbeat: field, metric, help. Its counters start
# again from 0 when the board restarts, which Prometheus' rate() takes for a counter reset.
BOARD_GAUGES = (("uptime_s", "borne_bridge_board_uptime_seconds", "Seconds since the bridge board started"),)
BOARD_COUNTERS = (
    ("received", "borne_bridge_board_frames_received_total", "Frames the bridge board's radio received"),
    ("transmitted", "borne_bridge_board_frames_transmitted_total", "Frames the bridge board's radio sent"),
    ("radio_errors", "borne_bridge_board_radio_errors_total", "Errors the bridge board's radio reported"),
    ("records_dropped", "borne_bridge_board_records_dropped_total", "Records the bridge board could not write to us"),
)


class GatewayCollector:
    """Every counter of the stats topic (each source's too), plus per-device signal and freshness."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def collect(self) -> Iterator[Metric]:
        stats = self.gateway.publisher.stats()
        pipeline = CounterMetricFamily("borne_pipeline", "Frames and events through the pipeline", labels=["what"])
        for what, count in stats["pipeline"].items():
            pipeline.add_metric([what], count)
        yield pipeline
        rejected = CounterMetricFamily("borne_rejected", "Inputs refused, by reason", labels=["reason"])
        for reason, count in stats["rejected"].items():
            rejected.add_metric([reason], count)
        yield rejected
        dropped = CounterMetricFamily("borne_outbox_dropped", "Events the full outbox dropped", labels=["reason"])
        for reason, count in stats["outbox_dropped"].items():
            dropped.add_metric([reason], count)
        yield dropped
        yield GaugeMetricFamily("borne_outbox_depth", "Events waiting for the broker", value=stats["outbox_depth"])
        yield CounterMetricFamily(
            "borne_mqtt_published", "Events the broker acknowledged", value=stats["mqtt_published"]
        )
        yield CounterMetricFamily(
            "borne_mqtt_refused",
            "Messages the broker acknowledged without taking them: refused events wait in the outbox",
            value=stats["mqtt_refused"],
        )
        yield CounterMetricFamily(
            "borne_mqtt_reconnects",
            "Broker connections that failed to open or were lost: each is retried",
            value=stats["mqtt_reconnects"],
        )
        yield GaugeMetricFamily(
            "borne_mqtt_connected", "1 when connected to the broker", value=int(self.gateway.publisher.connected)
        )
        now = time.time()
        seen = GaugeMetricFamily(
            "borne_device_last_seen_age_seconds", "Seconds since a device was heard", labels=["device"]
        )
        rssi = GaugeMetricFamily("borne_device_rssi_dbm", "RSSI of the device's last frame", labels=["device"])
        snr = GaugeMetricFamily("borne_device_snr_db", "SNR of the device's last frame", labels=["device"])
        lost = GaugeMetricFamily(
            "borne_device_lost_frames", "Frames missing from the counter sequence", labels=["device"]
        )
        for device in self.gateway.state.devices():
            label = [str(device.device_id)]
            if device.last_seen is not None:
                seen.add_metric(label, now - device.last_seen)
            if device.rssi_dbm is not None:
                rssi.add_metric(label, device.rssi_dbm)
                snr.add_metric(label, device.snr_db or 0.0)
            lost.add_metric(label, device.lost_frames)
        yield from (seen, rssi, snr, lost)
        yield from source_metrics(self.gateway.sources)


def source_metrics(sources: Iterable[Source]) -> Iterator[Metric]:
    """Each source's statistics labelled by its name: the numbers of the stats topic's `sources`."""
    received = CounterMetricFamily(
        "borne_source_frames_received_total", "Frames a source handed to the pipeline", labels=["source"]
    )
    rejected = CounterMetricFamily(
        "borne_source_rejected_total", "Inputs a source refused, by reason", labels=["source", "reason"]
    )
    transmits = CounterMetricFamily(
        "borne_source_transmits_total", "Downlinks by result: sent, or why not", labels=["source", "result"]
    )
    reconnects = CounterMetricFamily(
        "borne_source_reconnects_total", "Connections opened again after one was lost or failed", labels=["source"]
    )
    connected = GaugeMetricFamily("borne_source_connected", "1 when the source's connection is open", labels=["source"])
    heartbeat_age = GaugeMetricFamily(
        "borne_source_heartbeat_age_seconds", "Seconds since the bridge board's last heartbeat", labels=["source"]
    )
    forwarder_heard = GaugeMetricFamily(
        "borne_udp_forwarder_heard_age_seconds",
        "Seconds since a packet forwarder's last PUSH_DATA or PULL_DATA",
        labels=["source", "gateway_eui"],
    )
    forwarder_pushed = GaugeMetricFamily(
        "borne_udp_forwarder_push_data_age_seconds",
        "Seconds since a packet forwarder's last PUSH_DATA (frames, stat reports)",
        labels=["source", "gateway_eui"],
    )
    kind_counters: dict[str, CounterMetricFamily] = {}
    board_info = InfoMetricFamily("borne_bridge_board", "The bridge board's firmware and link", labels=["source"])
    board_gauges = {field: GaugeMetricFamily(name, text, labels=["source"]) for field, name, text in BOARD_GAUGES}
    board_counters = {field: CounterMetricFamily(name, text, labels=["source"]) for field, name, text in BOARD_COUNTERS}
    for source in sources:
        stats, label = source.stats, [source.name]
        received.add_metric(label, stats.received)
        for reason, count in stats.rejected.items():
            rejected.add_metric([source.name, reason], count)
        for result, count in stats.transmits.items():
            transmits.add_metric([source.name, result], count)
        reconnects.add_metric(label, stats.reconnects)
        connected.add_metric(label, int(stats.connected))
        for each in stats.kind_counters():
            family = kind_counters.setdefault(
                each.metric, CounterMetricFamily(each.metric, each.help, labels=["source"])
            )
            family.add_metric(label, each.value)
        now = source.clock()
        if isinstance(stats, UdpStats):
            for eui, at in stats.heard_at.items():
                forwarder_heard.add_metric([source.name, eui], max(0.0, now - at))
            for eui, at in stats.pushed_at.items():
                forwarder_pushed.add_metric([source.name, eui], max(0.0, now - at))
        age = stats.heartbeat_age_s(now)
        if stats.heartbeat is not None and age is not None:
            heartbeat_age.add_metric(label, age)
            beat = stats.heartbeat
            version = [beat.get(f"firmware_{part}") for part in ("major", "minor", "patch")]
            firmware = ".".join(str(number) for number in version) if None not in version else "unknown"
            board_info.add_metric(label, {"firmware": firmware, "link_version": str(beat.get("link_version"))})
            for field, board_metric in (board_gauges | board_counters).items():
                if isinstance(beat.get(field), int):  # a scrape must not fail on another link version's heartbeat
                    board_metric.add_metric(label, beat[field])
    yield from (received, rejected, transmits, reconnects, connected, heartbeat_age, forwarder_heard, forwarder_pushed)
    yield from kind_counters.values()
    yield from (board_info, *board_gauges.values(), *board_counters.values())


async def serve_metrics(gateway: Gateway, host: str, port: int) -> None:
    """Answer GET /metrics until cancelled."""
    registry = CollectorRegistry()
    registry.register(GatewayCollector(gateway))

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
            if request.startswith(b"GET /metrics"):
                body, status = generate_latest(registry), b"200 OK"
            else:
                body, status = b"try /metrics\n", b"404 Not Found"
            writer.write(
                b"HTTP/1.1 " + status + b"\r\nContent-Type: text/plain; version=0.0.4\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body
            )
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, host, port)
    async with server:
        await server.serve_forever()
