"""The simulated radio medium's receiver: the test rig and the demo put frames on the air here."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from .base import Deliver, Downlink, Reception, Reject, Source


class SimulatedRadio(Source[None]):
    """A receiver on a simulated medium. `hear` puts a frame on the air as this receiver
    heard it; downlinks are handed to `on_transmit` (the medium) and kept in `sent`."""

    def __init__(self, name: str = "sim", on_transmit: Callable[[Downlink], None] | None = None) -> None:
        super().__init__(name)
        self.on_transmit = on_transmit
        self.sent: list[Downlink] = []
        self._air: asyncio.Queue[Reception] = asyncio.Queue()
        self._clock_us = 0

    def hear(
        self,
        frame: bytes,
        *,
        rssi_dbm: float = -80.0,
        snr_db: float = 8.0,
        frequency_hz: int = 868_100_000,
        spreading_factor: int = 9,
        bandwidth_hz: int = 125_000,
        timestamp_us: int | None = None,
    ) -> Reception:
        """Queue a frame as heard now; returns the Reception the pipeline will get."""
        self._clock_us = (self._clock_us + 1_000_000) & 0xFFFFFFFF if timestamp_us is None else timestamp_us
        reception = Reception(
            frame=frame,
            source=self.name,
            received_at=time.time(),
            frequency_hz=frequency_hz,
            spreading_factor=spreading_factor,
            bandwidth_hz=bandwidth_hz,
            rssi_dbm=rssi_dbm,
            snr_db=snr_db,
            timestamp_us=self._clock_us,
        )
        self._air.put_nowait(reception)
        return reception

    async def _connect(self) -> None:
        """The air is always there."""

    async def _serve(self, connection: None, deliver: Deliver, reject: Reject) -> None:
        while True:
            reception = await self._air.get()
            try:
                await deliver(reception)
            finally:
                self._air.task_done()

    async def delivered(self) -> None:
        """Wait until every frame heard so far has been handed to the pipeline."""
        await self._air.join()

    async def _send(self, downlink: Downlink) -> None:
        self.sent.append(downlink)
        if self.on_transmit is not None:
            self.on_transmit(downlink)
