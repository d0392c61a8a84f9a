"""A real mosquitto per test, and an MQTT subscriber that records what it sees."""

from __future__ import annotations

import asyncio
import contextlib
import json

import aiomqtt
import pytest

from simulator.broker import Broker, BrokerMissing, mosquitto_binary


@pytest.fixture
def broker(tmp_path):
    try:
        mosquitto_binary()
    except BrokerMissing as missing:
        pytest.fail(str(missing))
    with Broker(tmp_path) as broker:
        yield broker


class Subscriber:
    """Records every message on `borne/#` and `homeassistant/#`; `wait_for` polls it with a deadline."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.messages: list[aiomqtt.Message] = []
        self._task: asyncio.Task | None = None
        self._subscribed = asyncio.Event()

    async def __aenter__(self) -> Subscriber:
        self._task = asyncio.create_task(self._listen())
        async with asyncio.timeout(10):
            await self._subscribed.wait()
        return self

    async def __aexit__(self, *exc) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _listen(self) -> None:
        while True:  # rides out broker restarts, like any consumer should
            try:
                async with aiomqtt.Client(
                    "127.0.0.1", self.port, identifier="test-subscriber", clean_session=False
                ) as client:
                    await client.subscribe("borne/#", qos=1)
                    await client.subscribe("homeassistant/#", qos=1)
                    self._subscribed.set()
                    async for message in client.messages:
                        self.messages.append(message)
            except aiomqtt.MqttError:
                await asyncio.sleep(0.2)

    def on(self, suffix: str) -> list[dict]:
        """JSON payloads of the messages whose topic ends with `suffix`."""
        return [json.loads(m.payload) for m in self.messages if str(m.topic).endswith(suffix)]

    async def wait_for(self, predicate, timeout: float = 15.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.05)
