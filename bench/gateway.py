"""End to end through the gateway into a real mosquitto, against a plain publish loop.

Both sides publish the same number of QoS 1 messages to the same broker with the
same window of messages in flight; the plain loop is the limit the broker and
aiomqtt set, the gateway adds verification, decoding and a durable SQLite commit
per frame (synchronous=FULL: one fsync each).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import aiomqtt

from boards.registry import Device, Registry
from gateway_daemon.config import parse_config
from gateway_daemon.daemon import Gateway
from gateway_daemon.mqtt import IN_FLIGHT, MQTT_LOG
from gateway_daemon.sources import SimulatedRadio
from payload_codec import Telemetry, build_frame, derive_device_keys
from simulator.broker import Broker

FRAMES = 2000
KEYS = derive_device_keys(bytes(range(16)), 1)


async def _plain_loop(port: int, payload: str) -> float:
    async with aiomqtt.Client("127.0.0.1", port, identifier="bench-plain", logger=MQTT_LOG) as client:
        started = time.perf_counter()
        for first in range(0, FRAMES, IN_FLIGHT):
            batch = range(first, min(first + IN_FLIGHT, FRAMES))
            await asyncio.gather(*(client.publish(f"bench/plain/{n}", payload, qos=1) for n in batch))
        return FRAMES / (time.perf_counter() - started)


async def _through_gateway(directory: Path, port: int) -> tuple[float, int]:
    registry = Registry({1: Device(1, "bench", "bench", "", KEYS)})
    registry.save(directory / "devices.toml")
    config = parse_config(
        f'[gateway]\nname = "bench"\nstate_file = "{directory / "state.db"}"\n'
        f'registry_file = "{directory / "devices.toml"}"\ndedup_window_ms = 0\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\n[home_assistant]\nenabled = false\n'
    )
    radio = SimulatedRadio()
    gateway = Gateway(config, sources=[radio])
    frames = [
        build_frame(Telemetry(temperature_c=20.0, co2_ppm=400 + n % 100), 1, n, KEYS) for n in range(1, FRAMES + 1)
    ]
    running = asyncio.create_task(gateway.run())
    await asyncio.sleep(0.5)  # connected
    started = time.perf_counter()
    for frame in frames:
        radio.hear(frame)
    await radio.delivered()
    await gateway.pipeline.drain()
    while gateway.state.depth():
        await asyncio.sleep(0.01)
    rate = FRAMES / (time.perf_counter() - started)
    published = gateway.publisher.published
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    return rate, published


def end_to_end_table() -> str:
    with tempfile.TemporaryDirectory() as folder, Broker(Path(folder)) as broker:
        directory = Path(folder)
        payload = '{"event_id": "1:1", "temperature_c": 20.0, "co2_ppm": 400}'
        plain = asyncio.run(_plain_loop(broker.port, payload))
        gateway, published = asyncio.run(_through_gateway(directory, broker.port))
    return "\n".join(
        [
            f"## Gateway end to end into mosquitto ({FRAMES} telemetry frames, QoS 1, {IN_FLIGHT} in flight)",
            "",
            "| path | messages/s | share of the limit |",
            "|---|---:|---:|",
            f"| plain aiomqtt publish loop (the limit) | {plain:,.0f} | 100 % |",
            f"| gateway: verify, decode, SQLite commit, outbox → PUBACK | {gateway:,.0f} | {gateway / plain:.0%} |",
            "",
            f"Events published by the gateway: {published} of {FRAMES}.",
        ]
    )
