"""Everything published under `borne/#`, recorded from a thread of its own: what a consumer saw."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
import time
from collections.abc import Callable

import aiomqtt


class MqttLog:
    """Subscribes at start() (QoS 1) and records every message until stop(); `wait_for` polls it."""

    def __init__(
        self, port: int, topic: str = "borne/#", host: str = "127.0.0.1", *, session: str | None = None
    ) -> None:
        """`session`: a client id whose subscription the broker keeps across disconnections and its own
        restarts (a persistent session), so that nothing published meanwhile is missed."""
        self.host = host
        self.port = port
        self.topic = topic
        self.session = session
        self.messages: list[tuple[str, object]] = []  # (topic, JSON payload, or its text if not JSON)
        self.arrivals: list[float] = []  # time.monotonic() at each message's arrival, in the same order
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._done = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._task: concurrent.futures.Future[None] | None = None  # cancelling it cancels _listen() in the loop

    def start(self, timeout: float = 15) -> MqttLog:
        self._thread.start()
        self._task = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        if not self._subscribed.wait(timeout):
            raise TimeoutError(f"could not subscribe to the broker at {self.host}:{self.port} within {timeout} s")
        return self

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._done.wait(5)  # the client disconnects before its loop stops
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    async def _listen(self) -> None:
        try:
            await self._record()
        finally:
            self._done.set()

    async def _record(self) -> None:
        while True:  # rides out broker restarts, as a consumer should
            try:
                # With a session: its client id, and the broker keeps the session (None: aiomqtt's defaults).
                async with aiomqtt.Client(
                    self.host,
                    self.port,
                    identifier=self.session or None,
                    clean_session=False if self.session else None,
                ) as client:
                    await client.subscribe(self.topic, qos=1)
                    self._subscribed.set()
                    async for message in client.messages:
                        text = message.payload.decode(errors="replace")
                        try:
                            payload: object = json.loads(text)
                        except ValueError:
                            payload = text
                        with self._lock:
                            self.messages.append((str(message.topic), payload))
                            self.arrivals.append(time.monotonic())
            except aiomqtt.MqttError:
                await asyncio.sleep(0.2)

    def on(self, suffix: str) -> list[dict]:
        """The JSON payloads of the messages whose topic ends with `suffix`."""
        with self._lock:
            return [p for t, p in self.messages if t.endswith(suffix) and isinstance(p, dict)]

    def arrived(self, suffix: str, predicate: Callable[[dict], bool]) -> float | None:
        """When (time.monotonic()) the first message on a topic ending with `suffix` that satisfies
        `predicate` arrived, or None if none has yet."""
        with self._lock:
            for (topic, payload), at in zip(self.messages, self.arrivals, strict=True):
                if topic.endswith(suffix) and isinstance(payload, dict) and predicate(payload):
                    return at
        return None

    def wait_for(self, predicate: Callable[[], object], timeout: float, what: str = "") -> None:
        """Poll `predicate` until true; TimeoutError, with what was published, after `timeout` s."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                with self._lock:
                    seen = [t for t, _ in self.messages]
                raise TimeoutError(f"{what or 'the condition'} not met within {timeout} s; published: {seen}")
            time.sleep(0.1)
