"""The running gateway: sources, pipeline and publisher, under systemd."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from boards.registry import Device, Registry, RegistryError

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


class WatchedRegistry(Registry):
    """The registry file as a running gateway reads it: read again whenever it changed, when the
    next frame's device is looked up, with no SIGHUP needed.

    Why at each lookup: `borne board flash` saves the registry with a device's new key epoch before
    the board runs under the new keys, but a gateway sharing the file may get the new copy later
    than the device's first frame. Read then, the registry gives that very frame its new keys and
    counters (`on_change` starts them over), so it is accepted, not refused as a replay or a bad
    MIC. Why it is cheap: a change shows in the file's inode (`Registry.save` replaces it), size or
    mtime: one stat per frame, a few a second at LoRa rates, beside a SQLite commit per frame.
    A file that cannot be read keeps the devices already loaded, logged once per change.
    """

    def __init__(self, path: Path, on_change: Callable[[], None]) -> None:
        self.path = path
        self._on_change = on_change
        self._seen = _file_signature(path)
        super().__init__(Registry.load(path).devices)  # a broken file at start is the caller's error

    def get(self, device_id: int) -> Device | None:
        self.refresh()
        return super().get(device_id)

    def refresh(self, *, force: bool = False) -> bool:
        """Read the file again if it changed since it was last read (or `force`); True if it was."""
        seen = _file_signature(self.path)  # before reading: a change meanwhile is read next time
        if seen == self._seen and not force:
            return False
        self._seen = seen
        # `Registry.save` replaces the file whole, a header at least: never missing, never empty.
        if (seen is None or seen[1] == 0) and self.devices:
            log.error(
                "the registry %s is gone or empty: keeping the devices already loaded (%d) until it is back (its "
                "offline copy, or `borne device add` for each device)",
                self.path,
                len(self.devices),
            )
            return False
        try:
            self.devices = Registry.load(self.path).devices
        except RegistryError as error:
            log.error("registry not reloaded, keeping the previous one: %s", error)
            return False
        self._on_change()
        return True


def _file_signature(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:  # no file: an empty registry (Registry.load)
        return None
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


class Gateway:
    """Everything one gateway runs, wired together."""

    def __init__(self, config: Config, sources: list[Source] | None = None) -> None:
        self.config = config
        self.registry_path = Path(config.gateway.registry_file)
        self.registry = WatchedRegistry(self.registry_path, self._registry_reloaded)
        if not self.registry_path.exists():
            log.warning(
                "no registry at %s: every frame is refused until devices are registered there (`borne device add "
                "--registry %s`)",
                self.registry_path,
                self.registry_path,
            )
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
        """Re-read the registry now (SIGHUP), changed or not; a broken file keeps the one already loaded.
        A running gateway also reads it by itself when it changes (WatchedRegistry)."""
        self.registry.refresh(force=True)

    def _registry_reloaded(self) -> None:
        self._follow_key_epochs()
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
