"""A stand-in for the gateway's pipeline in source tests: it keeps what a source hands on."""

from __future__ import annotations

import asyncio

from gateway_daemon.sources import Reception, Rejected


class RecordingPipeline:
    def __init__(self) -> None:
        self.receptions: asyncio.Queue[Reception] = asyncio.Queue()
        self.rejected: asyncio.Queue[Rejected] = asyncio.Queue()

    async def deliver(self, reception: Reception) -> None:
        await self.receptions.put(reception)

    async def reject(self, rejected: Rejected) -> None:
        await self.rejected.put(rejected)

    def rejected_so_far(self) -> list[Rejected]:
        return [self.rejected.get_nowait() for _ in range(self.rejected.qsize())]
