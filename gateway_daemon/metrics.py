"""Prometheus metrics at http://<metrics.host>:<metrics.port>/metrics.

The exposition format comes from `prometheus_client`; the values are read from the
gateway at scrape time, in the event loop (the state's SQLite connection belongs
to it), so the HTTP side is a small asyncio server rather than the library's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from .daemon import Gateway


class GatewayCollector:
    """Every counter of the stats topic, plus per-device signal and freshness."""

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
            "borne_mqtt_reconnects", "Connections to the broker lost", value=stats["mqtt_reconnects"]
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
