"""The one interface every source of frames implements, and the part all of them share.

A kind of source (`SerialBridge`, `SemtechUdp`, `SimulatedRadio`) says how to open its connection,
how to serve it and how to send a downlink on it. `Source` does the rest the same way for each:
it opens the connection again when it fails, keeps a pipeline's bug from costing the connection,
and counts every result in typed statistics (`SourceStats`) that the stats topic and the
Prometheus metrics both read.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any, Generic, TypeVar


@dataclass(frozen=True)
class Reception:
    """One frame as one receiver heard it, with the radio's metadata.

    `timestamp_us` is the receiver's own microsecond clock at the end of the frame
    (it wraps at 2^32); a downlink in the node's receive window is timed against it.
    """

    frame: bytes
    source: str  # e.g. "bridge:/dev/ttyUSB0", "udp:0016c001ff10a235"
    received_at: float  # gateway's Unix time, seconds
    frequency_hz: int
    spreading_factor: int
    bandwidth_hz: int
    rssi_dbm: float
    snr_db: float
    timestamp_us: int

    def metadata(self) -> dict:
        """The reception as published on MQTT (everything but the frame itself)."""
        return {
            "source": self.source,
            "received_at": self.received_at,
            "frequency_hz": self.frequency_hz,
            "spreading_factor": self.spreading_factor,
            "bandwidth_hz": self.bandwidth_hz,
            "rssi_dbm": self.rssi_dbm,
            "snr_db": self.snr_db,
        }


@dataclass(frozen=True)
class Rejected:
    """Input a source could not turn into a Reception: counted and reported, never raised."""

    source: str
    reason: str  # a codec reason (bad_crc, bad_cobs, …) or a source's own (bad_json, crc_failed, …)
    detail: str = ""
    raw: bytes = b""


@dataclass(frozen=True)
class Downlink:
    """A frame to send in a node's receive window, after the reception it answers."""

    frame: bytes
    answers: Reception
    delay_us: int  # start this long after the end of `answers`, on the receiver's clock
    frequency_hz: int
    spreading_factor: int
    bandwidth_hz: int = 125_000
    tx_power_dbm: int = 14
    extra: dict = field(default_factory=dict)


class TransmitError(Exception):
    """A downlink the source could not send; `reason` says why (too_late, duty_cycle, …)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


Deliver = Callable[[Reception], Awaitable[None]]
Reject = Callable[[Rejected], Awaitable[None]]


# --- statistics -------------------------------------------------------------------------------


def counter(metric: str, help: str) -> Any:
    """A counter only one kind of source keeps: a field of its `SourceStats` subclass, published
    on the stats topic under the field's name and exported to Prometheus as `metric`."""
    return field(default=0, metadata={"metric": metric, "help": help})


@dataclass(frozen=True)
class KindCounter:
    """One counter of a kind of source, as `SourceStats.kind_counters` lists it."""

    name: str  # its key on the stats topic
    metric: str  # its Prometheus name
    help: str
    value: int


@dataclass
class SourceStats:
    """What every source counts. The stats topic (`to_json`) and the Prometheus metrics read these
    same numbers; a kind of source that counts more subclasses it with `counter` fields."""

    received: int = 0  # frames handed to the pipeline
    rejected: Counter[str] = field(default_factory=Counter)  # inputs refused, by reason
    transmits: Counter[str] = field(default_factory=Counter)  # downlinks by result: "sent", or a TransmitError reason
    reconnects: int = 0  # connections opened again after one was lost or could not be opened
    connected: bool = False
    heartbeat: dict[str, Any] | None = None  # the far end's last report of itself (the bridge board's), as sent
    heartbeat_at: float | None = None  # when that report came, on the source's clock

    def kind_counters(self) -> Iterator[KindCounter]:
        """The counters of this kind of source (the `counter` fields of a subclass)."""
        for each in fields(self):
            if "metric" in each.metadata:
                yield KindCounter(each.name, each.metadata["metric"], each.metadata["help"], getattr(self, each.name))

    def heartbeat_age_s(self, now: float) -> float | None:
        """Seconds since the last heartbeat at `now` (on the source's clock); None before the first."""
        return None if self.heartbeat_at is None else max(0.0, now - self.heartbeat_at)

    def to_json(self, now: float) -> dict[str, Any]:
        """The source's entry in the stats message (see docs/mqtt.md)."""
        message: dict[str, Any] = {
            "connected": self.connected,
            "received": self.received,
            "rejected": dict(self.rejected),
            "transmits": dict(self.transmits),
            "reconnects": self.reconnects,
        }
        message |= {each.name: each.value for each in self.kind_counters()}
        age = self.heartbeat_age_s(now)
        if self.heartbeat is not None and age is not None:
            message["heartbeat"] = {**self.heartbeat, "seen_at": self.heartbeat_at}
            message["heartbeat_age_s"] = round(age, 1)
        return message


# --- the interface ------------------------------------------------------------------------------

ConnectionT = TypeVar("ConnectionT")


class Source(abc.ABC, Generic[ConnectionT]):
    """A path frames arrive by, over a connection of type `ConnectionT` (an open serial port, a
    listening socket).

    `run` lasts until cancelled and survives every fault: it opens the connection (`_connect`),
    serves it (`_serve`) until it fails, lets go of it (`_disconnect`) and opens it again
    `reconnect_delay_s` later. What the source hands on and every downlink's result are counted in
    `stats`. A kind of source implements `_connect`, `_serve`, `_send` and, if it holds anything,
    `_disconnect`; its advice to an operator goes in `_cannot_connect` and `_lost`.
    """

    # A bridge board's radio listens on the one spreading factor it was flashed with; a
    # concentrator demodulates every SF at once. Config downlinks that change a node's SF ask it.
    listens_on_one_sf: bool = False

    def __init__(
        self,
        name: str,
        stats: SourceStats | None = None,
        *,
        reconnect_delay_s: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.stats = SourceStats() if stats is None else stats
        self.reconnect_delay_s = reconnect_delay_s
        self.clock = clock
        self._log = logging.getLogger(type(self).__module__)  # each kind logs under its own module's name
        self._down_since: float | None = None

    @property
    def connected(self) -> bool:
        """Whether the connection is open now."""
        return self.stats.connected

    async def run(self, deliver: Deliver, reject: Reject) -> None:
        """Hand every frame heard to `deliver` and everything unusable to `reject`, forever."""
        counted_deliver, counted_reject = self._counting(deliver, reject)
        while True:
            try:
                connection = await self._connect()
            except Exception as error:
                self._outage(self._cannot_connect(error), error)
            else:
                self._up()
                try:
                    await self._serve(connection, counted_deliver, counted_reject)
                    ended: Exception = ConnectionError("the connection ended")
                except Exception as error:
                    ended = error
                finally:
                    self.stats.connected = False
                    await self._disconnect(connection)
                self._outage(self._lost(ended), ended)
            await asyncio.sleep(self.reconnect_delay_s)

    def receivers(self) -> set[str]:
        """The receivers this source has now, as their receptions name them: those a copy of a frame
        may still come from. A source with one receiver has it while connected; a source with
        several (the UDP source's forwarders) says which it hears from."""
        return {self.name} if self.connected else set()

    def heard(self, reception: Reception) -> bool:
        """Whether this source heard `reception`: its name is the reception's source, or prefixes it
        (a UDP source named "udp" hears "udp:<gateway EUI>")."""
        return reception.source == self.name or reception.source.startswith(self.name + ":")

    async def transmit(self, downlink: Downlink) -> None:
        """Send a downlink on this path; raises TransmitError if it cannot go out, `bad_request` when it
        answers a reception another receiver heard (its timestamp is on that receiver's clock)."""
        try:
            if not self.heard(downlink.answers):
                raise TransmitError("bad_request", f"answers a reception from {downlink.answers.source}")
            await self._send(downlink)
        except TransmitError as error:
            self.stats.transmits[error.reason] += 1
            raise
        self.stats.transmits["sent"] += 1

    # --- what a kind of source implements -------------------------------------------------------

    @abc.abstractmethod
    async def _connect(self) -> ConnectionT:
        """Open the connection; raise (an OSError, ideally) when it cannot be opened."""

    @abc.abstractmethod
    async def _serve(self, connection: ConnectionT, deliver: Deliver, reject: Reject) -> None:
        """Read from `connection` until it fails, handing on what arrives; raise why it ended."""

    async def _disconnect(self, connection: ConnectionT) -> None:
        """Let go of `connection` after `_serve` ended, however it ended; must not raise."""

    @abc.abstractmethod
    async def _send(self, downlink: Downlink) -> None:
        """Send `downlink`, which answers a reception this source heard; raise TransmitError if it cannot go out."""

    def _cannot_connect(self, error: Exception) -> str:
        """What to tell an operator when the connection cannot be opened."""
        return f"cannot connect ({error})"

    def _lost(self, error: Exception) -> str:
        """What to tell an operator when an open connection failed."""
        return f"lost the connection ({error})"

    # --- the part every source shares ------------------------------------------------------------

    def _counting(self, deliver: Deliver, reject: Reject) -> tuple[Deliver, Reject]:
        async def counted_deliver(reception: Reception) -> None:
            self.stats.received += 1
            await self._hand_on(deliver, reception)

        async def counted_reject(rejected: Rejected) -> None:
            self.stats.rejected[rejected.reason] += 1
            await self._hand_on(reject, rejected)

        return counted_deliver, counted_reject

    async def _hand_on(self, step: Callable[[Any], Awaitable[None]], item: Reception | Rejected) -> None:
        try:
            await step(item)
        except Exception:  # the pipeline's bug must not cost us the connection
            self._log.exception("%s: handing on a %s failed", self.name, type(item).__name__)

    def _outage(self, advice: str, error: Exception) -> None:
        # Once per outage at warning level; the retries after it only at debug level.
        if self._down_since is None:
            self._down_since = time.monotonic()
            bug = None if isinstance(error, OSError) else error  # not the connection's fault: show where it was
            self._log.warning("%s: %s; retrying every %g s", self.name, advice, self.reconnect_delay_s, exc_info=bug)
        else:
            self._log.debug("%s: still down: %s", self.name, advice)

    def _up(self) -> None:
        self.stats.connected = True
        if self._down_since is not None:
            self.stats.reconnects += 1
            self._log.warning("%s: back after %.1f s down", self.name, time.monotonic() - self._down_since)
            self._down_since = None
