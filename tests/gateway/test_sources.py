"""What every source gets from `Source`: a connection opened again when it fails, and every result counted."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from gateway_daemon.sources import Downlink, Reception, Rejected, Source, SourceStats, TransmitError
from gateway_daemon.sources.base import Deliver, Reject, counter

from .recording import RecordingPipeline

FRAME = bytes.fromhex("4801020304aabbccdd")


def heard_by(source: str, timestamp_us: int = 1) -> Reception:
    return Reception(FRAME, source, 1_700_000_000.0, 868_100_000, 9, 125_000, -90.0, 5.0, timestamp_us)


def answering(reception: Reception) -> Downlink:
    return Downlink(b"\x60\x01", reception, 1_000_000, 869_525_000, 9)


@dataclass
class LineStats(SourceStats):
    lines_opened: int = counter("borne_test_lines_opened_total", "Lines the test source opened")


class Line(Source[asyncio.Queue]):
    """A source over a line the test controls: `refusals` failed opens first, then a queue per
    connection that the test feeds with receptions, rejections, or an exception that ends it."""

    stats: LineStats

    def __init__(self, refusals: int = 0) -> None:
        super().__init__("line", LineStats(), reconnect_delay_s=0.01, clock=lambda: 1000.0)
        self.refusals = refusals
        self.attempts = 0
        self.disconnected = 0
        self.line: asyncio.Queue[Reception | Rejected | Exception] = asyncio.Queue()
        self.results: list[str] = []  # what the far end answers to each downlink
        self.sent: list[Downlink] = []

    async def _connect(self) -> asyncio.Queue:
        self.attempts += 1
        if self.refusals:
            self.refusals -= 1
            raise ConnectionRefusedError("nobody at the other end")
        self.stats.lines_opened += 1
        self.line = asyncio.Queue()
        return self.line

    async def _serve(self, line: asyncio.Queue, deliver: Deliver, reject: Reject) -> None:
        while True:
            item = await line.get()
            if isinstance(item, Exception):
                raise item
            await (deliver(item) if isinstance(item, Reception) else reject(item))

    async def _disconnect(self, line: asyncio.Queue) -> None:
        self.disconnected += 1

    async def _send(self, downlink: Downlink) -> None:
        self.sent.append(downlink)
        result = self.results.pop(0)
        if result != "sent":
            raise TransmitError(result)

    def _lost(self, error: Exception) -> str:
        return f"the line broke ({error})"


async def until(condition, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def running(source: Source, pipeline: RecordingPipeline | None = None) -> AsyncIterator[RecordingPipeline]:
    pipeline = pipeline or RecordingPipeline()
    task = asyncio.create_task(source.run(pipeline.deliver, pipeline.reject))
    try:
        yield pipeline
    finally:
        task.cancel()
        async with asyncio.timeout(5):
            with contextlib.suppress(asyncio.CancelledError):
                await task


# --- reconnecting ---------------------------------------------------------------------------------


async def test_a_lost_connection_is_opened_again_and_the_reconnect_is_counted() -> None:
    source = Line()
    async with running(source) as pipeline, asyncio.timeout(5):
        await until(lambda: source.connected)
        first = source.line
        first.put_nowait(ConnectionResetError("cable pulled"))
        await until(lambda: source.line is not first and source.connected)
        source.line.put_nowait(heard_by("line"))
        assert (await pipeline.receptions.get()).source == "line"
    assert (source.stats.reconnects, source.stats.lines_opened, source.stats.received) == (1, 2, 1)


async def test_a_connection_that_cannot_be_opened_is_tried_until_it_opens_and_counts_one_reconnect() -> None:
    source = Line(refusals=3)
    async with running(source), asyncio.timeout(5):
        await until(lambda: source.connected)
    assert (source.attempts, source.stats.reconnects) == (4, 1)


async def test_the_connection_is_let_go_of_however_serving_ended() -> None:
    source = Line()
    async with running(source), asyncio.timeout(5):
        await until(lambda: source.connected)
        source.line.put_nowait(ConnectionResetError("cable pulled"))
        await until(lambda: source.disconnected == 1 and source.connected)
    # ... and when the daemon stops it.
    assert (source.disconnected, source.connected) == (2, False)


async def test_a_source_is_a_receiver_a_copy_may_come_from_only_while_connected() -> None:
    source = Line(refusals=1)
    assert source.receivers() == set()
    async with running(source), asyncio.timeout(5):
        await until(lambda: source.connected)
        assert source.receivers() == {"line"}
    assert source.receivers() == set()


async def test_a_bug_while_serving_costs_the_connection_not_the_source(caplog) -> None:
    caplog.set_level(logging.DEBUG, logger=__name__)
    source = Line()
    async with running(source) as pipeline, asyncio.timeout(5):
        await until(lambda: source.connected)
        source.line.put_nowait(RuntimeError("a bug in the source"))
        await until(lambda: source.stats.reconnects == 1)
        source.line.put_nowait(heard_by("line"))
        await pipeline.receptions.get()
    (lost,) = [r for r in caplog.records if "the line broke" in r.getMessage()]
    assert lost.levelno == logging.WARNING and lost.exc_info is not None  # a bug shows where it was


async def test_an_outage_is_told_once_however_many_retries_and_its_end_once(caplog) -> None:
    caplog.set_level(logging.DEBUG, logger=__name__)
    source = Line(refusals=5)
    async with running(source), asyncio.timeout(5):
        await until(lambda: source.connected)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings
    assert "cannot connect" in warnings[0] and "nobody at the other end" in warnings[0]
    assert "line: back after" in warnings[1]
    assert sum("still down" in r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG) == 4


# --- counting -----------------------------------------------------------------------------------------


async def test_frames_are_counted_as_received_and_refused_inputs_by_reason() -> None:
    source = Line()
    async with running(source) as pipeline, asyncio.timeout(5):
        await until(lambda: source.connected)
        for item in (
            heard_by("line", 1),
            Rejected("line", "bad_crc"),
            heard_by("line", 2),
            Rejected("line", "bad_cobs"),
            Rejected("line", "bad_crc"),
        ):
            source.line.put_nowait(item)
        await until(lambda: pipeline.rejected.qsize() == 3)
        assert pipeline.receptions.qsize() == 2
    assert source.stats.received == 2
    assert source.stats.rejected == {"bad_crc": 2, "bad_cobs": 1}


async def test_a_pipeline_that_fails_costs_one_input_not_the_connection() -> None:
    class Failing(RecordingPipeline):
        async def deliver(self, reception: Reception) -> None:
            if reception.timestamp_us == 1:
                raise RuntimeError("a bug in the pipeline")
            await super().deliver(reception)

    source = Line()
    async with running(source, Failing()) as pipeline, asyncio.timeout(5):
        await until(lambda: source.connected)
        source.line.put_nowait(heard_by("line", 1))
        source.line.put_nowait(heard_by("line", 2))
        assert (await pipeline.receptions.get()).timestamp_us == 2
    assert (source.stats.received, source.stats.reconnects, source.stats.lines_opened) == (2, 0, 1)


async def test_downlinks_are_counted_by_result() -> None:
    source = Line()
    source.results = ["sent", "duty_cycle", "sent", "too_late"]
    outcomes = []
    for _ in range(4):
        try:
            await source.transmit(answering(heard_by("line")))
            outcomes.append("sent")
        except TransmitError as error:
            outcomes.append(error.reason)
    assert outcomes == ["sent", "duty_cycle", "sent", "too_late"]
    assert source.stats.transmits == {"sent": 2, "duty_cycle": 1, "too_late": 1}


@pytest.mark.parametrize("other", ["udp:0016c001ff10a235", "line2", "lin"])
async def test_a_downlink_answering_another_receivers_reception_is_refused_and_counted(other: str) -> None:
    source = Line()
    with pytest.raises(TransmitError) as refused:
        await source.transmit(answering(heard_by(other)))
    assert refused.value.reason == "bad_request"
    assert source.sent == []  # its timestamp is on another receiver's clock: never sent
    assert source.stats.transmits == {"bad_request": 1}


def test_a_source_hears_its_own_name_and_names_below_it() -> None:
    source = Line()
    assert source.heard(heard_by("line")) and source.heard(heard_by("line:0016c001ff10a235"))
    assert not source.heard(heard_by("line2"))


# --- what the statistics say ---------------------------------------------------------------------------


def test_the_stats_message_holds_every_counter_with_the_kinds_own() -> None:
    stats = LineStats(received=3, reconnects=1, connected=True, lines_opened=2)
    stats.rejected["bad_crc"] += 2
    stats.transmits["sent"] += 1
    assert stats.to_json(now=0.0) == {
        "connected": True,
        "received": 3,
        "rejected": {"bad_crc": 2},
        "transmits": {"sent": 1},
        "reconnects": 1,
        "lines_opened": 2,
    }
    assert [(c.name, c.metric, c.value) for c in stats.kind_counters()] == [
        ("lines_opened", "borne_test_lines_opened_total", 2)
    ]


def test_a_heartbeat_is_published_with_its_age() -> None:
    beat = {"link_version": 1, "uptime_s": 60}
    stats = SourceStats(heartbeat=beat, heartbeat_at=100.0)
    message = stats.to_json(now=112.34)
    assert message["heartbeat"] == {**beat, "seen_at": 100.0}
    assert message["heartbeat_age_s"] == 12.3
    assert "heartbeat" not in SourceStats().to_json(now=112.34)
