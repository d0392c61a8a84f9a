"""A gateway wired to simulated receivers, a registry and a real broker, for tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

from boards.registry import Device, Registry
from gateway_daemon.config import parse_config
from gateway_daemon.daemon import Gateway
from gateway_daemon.sources import SimulatedRadio, Source
from payload_codec import derive_device_keys
from payload_codec.vectorgen import DEVICE_ID, TEST_MASTER_KEY

SCHEMAS = Path(__file__).parents[2] / "docs" / "mqtt"


def schema(name: str) -> dict:
    return json.loads((SCHEMAS / f"{name}.schema.json").read_text(encoding="utf-8"))


def write_registry(path: Path, device_ids=(DEVICE_ID,), key_epoch: int = 0) -> Registry:
    registry = Registry(
        {
            device_id: Device(
                device_id=device_id,
                name=f"door-{device_id}",
                site="ecole-jaures",
                facility="school",
                keys=derive_device_keys(TEST_MASTER_KEY, device_id, key_epoch),
                key_epoch=key_epoch,
                battery=True,
                sensors=("temperature_c", "co2_ppm"),
                nfc=True,
            )
            for device_id in device_ids
        }
    )
    registry.save(path)
    return registry


def config_text(
    directory: Path, broker_port: int, metrics_port: int = 0, mqtt: str = "", radio: str = "", **gateway
) -> str:
    gateway = {"dedup_window_ms": 100} | gateway
    extra = "".join(f"{key} = {json.dumps(value)}\n" for key, value in gateway.items())
    return (
        f'[gateway]\nname = "gw-test"\nstate_file = "{directory / "state.db"}"\n'
        f'registry_file = "{directory / "devices.toml"}"\n{extra}'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {broker_port}\nstats_interval_s = 1\n{mqtt}'
        f"[metrics]\nport = {metrics_port}\n[radio]\n{radio}"
    )


async def until(condition, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


class Site:
    """A running gateway with two simulated receivers (`radio`, `radio2`)."""

    def __init__(
        self,
        directory: Path,
        broker_port: int,
        extra_sources: tuple[Source, ...] = (),
        mqtt: str = "",
        radio: str = "",
        **gateway,
    ) -> None:
        self.directory = directory
        if not (directory / "devices.toml").exists():
            write_registry(directory / "devices.toml")
        self.config = parse_config(config_text(directory, broker_port, mqtt=mqtt, radio=radio, **gateway))
        self.radio = SimulatedRadio("sim")
        self.radio2 = SimulatedRadio("sim2")
        self.gateway = Gateway(self.config, sources=[self.radio, self.radio2, *extra_sources])
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> Site:
        self._task = asyncio.create_task(self.gateway.run())
        return self

    def last_counter(self) -> int | None:
        return self.gateway.state.last_counter(DEVICE_ID)

    async def feed(self, cases: list[dict], hear) -> set[str]:
        """Hear each uplink vector through `hear`, waiting for each to be accepted; the event ids due.

        A vector whose counter is past 16 bits needs the gateway to know the counter before it.
        """
        due: set[str] = set()
        for case in cases:
            if case["last_counter"] is not None:
                self.gateway.state.accept(DEVICE_ID, case["last_counter"], b"seed", [], seen_at=0, rssi_dbm=0, snr_db=0)
            hear(bytes.fromhex(case["frame_hex"]))
            await until(lambda counter=case["counter"]: self.last_counter() == counter)
            if case["type"] == "checkin":
                # The vectors number their check-ins on from one case to the next: the same full numbers.
                first = case["fields"]["first_number16"]
                due |= {f"{DEVICE_ID}:checkin:{first + i}" for i in range(len(case["fields"]["checkins"]))}
            else:
                due.add(f"{DEVICE_ID}:{case['counter']}")
        return due

    async def settle(self) -> None:
        """Wait until every frame heard so far went through the pipeline."""
        async with asyncio.timeout(10):
            await self.radio.delivered()
            await self.radio2.delivered()
            await self.gateway.pipeline.drain()

    async def __aexit__(self, *exc) -> None:
        await self.settle()
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
