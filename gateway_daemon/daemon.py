"""The running gateway: sources, pipeline and publisher, under systemd."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Any

from boards.registry import Registry, RegistryError

from . import systemd
from .config import Config, ConfigError
from .mqtt import Publisher
from .pipeline import Pipeline
from .sources import Source
from .state import GatewayState

log = logging.getLogger(__name__)


def sources_from(config: Config) -> list[Source]:
    """The sources the configuration enables."""
    sources: list[Source] = []
    if config.serial.port:
        from .sources.serial_bridge import SerialBridge

        sources.append(SerialBridge(config.serial.port, config.serial.baudrate))
    if config.udp.enabled:
        from .sources.semtech_udp import SemtechUdp

        sources.append(SemtechUdp(config.udp.host, config.udp.port))
    return sources


class Gateway:
    """Everything one gateway runs, wired together."""

    def __init__(self, config: Config, sources: list[Source] | None = None) -> None:
        self.config = config
        self.registry_path = Path(config.gateway.registry_file)
        self.registry = Registry.load(self.registry_path)
        self.state = GatewayState(Path(config.gateway.state_file), config.gateway.max_outbox_events)
        self._follow_key_epochs()
        self.sources = sources_from(config) if sources is None else sources
        if not self.sources:
            raise ConfigError("no source of frames: set serial.port or udp.enabled = true in the configuration")
        self.pipeline = Pipeline(config, self.registry, self.state, self.sources, wake_publisher=self._wake_publisher)
        self.publisher = Publisher(config, self.state, self.pipeline, lambda: self.registry, self._source_stats)

    def _wake_publisher(self) -> None:
        self.publisher.wake()

    def _source_stats(self) -> dict[str, Any]:
        """Each source's counters for the stats message, from the statistics Prometheus reads too."""
        return {"sources": {source.name: source.stats.to_json(source.clock()) for source in self.sources}}

    def reload_registry(self) -> None:
        """Re-read the registry (SIGHUP); a broken file keeps the one already loaded."""
        try:
            self.registry = Registry.load(self.registry_path)
        except RegistryError as error:
            log.error("registry not reloaded, keeping the previous one: %s", error)
            return
        self._follow_key_epochs()
        self.pipeline.registry = self.registry
        self.publisher.registry_changed()
        log.info("registry reloaded: %d devices", len(self.registry.devices))

    def _follow_key_epochs(self) -> None:
        epochs = {device.device_id: device.key_epoch for device in self.registry.devices.values()}
        for device_id in self.state.follow_key_epochs(epochs):
            log.warning("device %s has new keys (key epoch %s): its counters start over", device_id, epochs[device_id])

    async def run(self) -> None:
        """Run until cancelled (SIGTERM/SIGINT cancel it when started by `borne gateway run`)."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self.reload_registry)
        tasks = [asyncio.create_task(self.publisher.run(), name="publisher"), asyncio.create_task(self._watchdog())]
        # Each source reconnects by itself and counts what it hands on (see sources/base.py).
        tasks += [
            asyncio.create_task(source.run(self.pipeline.deliver, self.pipeline.reject), name=source.name)
            for source in self.sources
        ]
        if self.config.metrics.port:
            from .metrics import serve_metrics

            tasks.append(asyncio.create_task(serve_metrics(self, self.config.metrics.host, self.config.metrics.port)))
        if self.config.gateway.allow_unencrypted_checkins:
            log.warning(
                "gateway.allow_unencrypted_checkins is on: check-ins sent in clear are accepted. "
                "For a bench only: badge tokens are readable on air; turn it off in production"
            )
        systemd.notify("READY=1")
        log.info("gateway %s running with %s", self.config.gateway.name, [s.name for s in self.sources])
        try:
            await asyncio.gather(*tasks)
        finally:
            systemd.notify("STOPPING=1")
            loop.remove_signal_handler(signal.SIGHUP)
            await _stop(tasks)
            self.state.close()

    async def _watchdog(self) -> None:
        interval = systemd.watchdog_interval_s()
        if interval is None:
            return
        while True:
            # Only a live event loop gets here: a hung daemon stops petting and systemd restarts it.
            systemd.notify("WATCHDOG=1")
            await asyncio.sleep(interval)


async def _stop(tasks: list[asyncio.Task]) -> None:
    """Cancel until every task has ended.

    Once is not always enough: aiomqtt waits with asyncio.wait_for, which on Python
    3.11 can swallow a cancellation that arrives as its wait completes (CPython
    gh-86296), and a task that swallowed it would keep the daemon from stopping.
    """
    while pending := [task for task in tasks if not task.done()]:
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=1.0)
