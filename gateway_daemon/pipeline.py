"""From a heard frame to events in the outbox, whichever source heard it.

    reception → envelope → dedup window (until every receiver's copy came) → registry
              → recent copy (ACK again) → counter window → MIC → decode → policy → check-in numbers
              → outbox commit (with the windows)
              → ACK on the best path heard (the next one if that one refuses it unsent)
              → after a status: the device's pending config, in the same receive window

A check-in frame the node built again after a lost ACK has a new counter and may carry check-ins
published before: they are left out (their numbers are in the state), the frame is ACKed.

Nothing a source hands in can raise out of here: every refusal is counted by reason
and queued for the diagnostics topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

from boards.registry import Device, Registry
from payload_codec import (
    Ack,
    CheckinBatch,
    CodecError,
    Message,
    SealedEnvelope,
    Status,
    Telemetry,
    build_frame,
    open_envelope,
    read_envelope,
)
from payload_codec.counter import resolve_checkin_number
from payload_codec.crypto import mic_matches
from payload_codec.schema import FLAG_ACK_REQUESTED, FLAG_TIME_REQUESTED

from .config import Config
from .device_config import applied, pending_changes
from .events import events_of, iso_time
from .sources import Downlink, Reception, Rejected, Source, TransmitError
from .state import GatewayState, Receiver, frame_hash

log = logging.getLogger(__name__)

LATE_COPY_S = 1.0  # beyond the ACK delay: a copy heard later than that is the node trying again
MAX_REACKS = 8  # re-ACKs of one retransmitted frame: an echo, not a way to drain our duty cycle
REACK_WINDOW_S = 60  # ... within this long; a node backing off for minutes gets its ACK again
MAX_DIAGNOSTICS = 1000
# How long a downlink we sent is recognised when another of our receivers hears it: Borne keeps IQ
# normal both ways, so a concentrator hears the bridge's ACKs (and the reverse) as they go out.
OWN_DOWNLINK_S = 10.0
RECEIVER_REFRESH_S = 3600  # how stale the stored "last heard" of a device's receiver may get
# The gateway's own refusal, beside the codec's reasons and the sources': an authentic check-in
# whose badge tokens travelled in clear, refused unless gateway.allow_unencrypted_checkins.
UNENCRYPTED_CHECKIN = "unencrypted_checkin"
# Why a receiver refuses a downlink at once, before anything went on the air: another receiver that
# heard the frame can still send it in the same window. A radio error, no answer, or a bridge's port
# lost while it had the request (`port_lost`) may have sent it.
REFUSED_UNSENT = frozenset(
    {"no_downlink_path", "disconnected", "busy", "duty_cycle", "too_late", "too_early"}
    | {"collision_packet", "collision_beacon"}
)


def replay_cause(envelope: SealedEnvelope, device: Device, last: int) -> str | None:
    """What a frame refused as old most likely is, for the installer who reads the diagnostic; None
    for a 16-bit counter refused as spent (past 2**32), not as old.

    The wire contract checks the counter before the MIC, so a board whose counters start again (its
    flash erased) is a `replay` whatever its key. The MIC tells the cases apart, tried with the
    counters the frame may carry: the whole one if it has it; else the highest up to `last` with the
    frame's 16 bits, or those bits alone (a board counting from 0 again). It verifies for a frame of
    this device recorded and sent again, or a board of this key whose counters went back; it does
    not for a board holding other keys."""
    if envelope.full_counter is not None:
        candidates = {envelope.full_counter}
    else:
        ahead = (envelope.counter16 - last) & 0xFFFF
        if 0 < ahead <= 0x8000:
            return None  # ahead of the window: refused because the 32-bit counter is spent
        below = last - ((last - envelope.counter16) & 0xFFFF)
        candidates = {envelope.counter16} | ({below} if below >= 0 else set())
    mic_key = device.keys.mic_key
    signed, mic = envelope.signed, envelope.mic
    if any(mic_matches(mic_key, envelope.direction, envelope.device_id, c, signed, mic) for c in candidates):
        return (
            "its MIC verifies: a frame of this device recorded and sent again, or a board whose counters went "
            "back (its flash erased: flash it again with `borne board flash`, which moves the device to a new "
            "key epoch)"
        )
    return (
        f"its MIC does not verify with device {envelope.device_id}'s key either: the board holds other keys "
        "(its flash erased, or flashed for another device): flash it again with `borne board flash`"
    )


@dataclass
class _Copies:
    """The copies of one frame heard so far in its dedup window; `complete` once every receiver has
    given one."""

    envelope: SealedEnvelope
    receptions: list[Reception]
    complete: asyncio.Event


@dataclass(frozen=True)
class Diagnostic:
    """A refused input, as published on `<prefix>/gateway/<name>/rejected`."""

    reason: str
    source: str
    detail: str
    raw: bytes
    time: float
    device_id: int | None = None

    def to_json(self) -> dict:
        return {
            "reason": self.reason,
            "source": self.source,
            "detail": self.detail,
            "raw_hex": self.raw.hex(),
            "time": iso_time(self.time),
            "device_id": self.device_id,
        }


class Pipeline:
    """Turns Receptions into outbox events; `wake_publisher` says there is something to publish."""

    def __init__(
        self,
        config: Config,
        registry: Registry,
        state: GatewayState,
        sources: list[Source],
        wake_publisher: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.registry = registry
        self.state = state
        self.sources = sources
        self.wake_publisher = wake_publisher
        self.clock = clock
        self.counters: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.diagnostics: deque[Diagnostic] = deque(maxlen=MAX_DIAGNOSTICS)
        self._collecting: dict[bytes, _Copies] = {}
        self._recent: dict[bytes, float] = {}
        self._reacks: Counter[bytes] = Counter()
        self._reacked_at: dict[bytes, float] = {}
        self._receivers_stored: dict[tuple[int, str], Receiver] = {}
        self._sent: dict[bytes, float] = {}  # our downlinks of the last OWN_DOWNLINK_S, by their bytes
        self._tasks: set[asyncio.Task] = set()

    # --- what sources call -----------------------------------------------------------
    async def deliver(self, reception: Reception) -> None:
        """A frame heard by a source: collect its copies for the dedup window, then process.

        The window closes early once every receiver the sources have now has given its copy: no
        other can come, so waiting would only delay the publish (with one receiver, at once)."""
        self.counters["receptions"] += 1
        if self._is_own_downlink(reception.frame):
            self.counters["own_downlinks_heard"] += 1  # not a node's frame: no rejection to report
            return
        envelope = read_envelope(reception.frame)
        if isinstance(envelope, CodecError):
            await self.reject(Rejected(reception.source, envelope.reason, envelope.detail, reception.frame))
            return
        key = reception.frame
        if key in self._collecting:
            copies = self._collecting[key]
            copies.receptions.append(reception)
            self.counters["copies_merged"] += 1
            self._close_if_complete(copies)
            return
        self._forget_old_frames()
        if key in self._recent:
            # A copy from a slower path, too late for the window: already handled.
            self.counters["late_duplicates"] += 1
            return
        copies = self._collecting[key] = _Copies(envelope, [reception], asyncio.Event())
        self._close_if_complete(copies)
        task = asyncio.create_task(self._process_after_window(key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def reject(self, rejected: Rejected, device_id: int | None = None) -> None:
        """Count a refused input and queue it for the diagnostics topic."""
        self.rejected[rejected.reason] += 1
        if len(self.diagnostics) == self.diagnostics.maxlen:
            self.counters["diagnostics_dropped"] += 1
        self.diagnostics.append(
            Diagnostic(rejected.reason, rejected.source, rejected.detail, rejected.raw[:300], self.clock(), device_id)
        )
        log.info("rejected %s from %s: %s", rejected.reason, rejected.source, rejected.detail)
        self.wake_publisher()

    async def drain(self) -> None:
        """Wait for the frames still in their dedup window (on shutdown, and in tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # --- processing -------------------------------------------------------------------
    def _close_if_complete(self, copies: _Copies) -> None:
        expected = set().union(*(source.receivers() for source in self.sources))
        if expected <= {reception.source for reception in copies.receptions}:
            copies.complete.set()

    async def _process_after_window(self, key: bytes) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.config.gateway.dedup_window_ms / 1000):
                await self._collecting[key].complete.wait()
        copies = self._collecting.pop(key)
        if copies.complete.is_set():
            self.counters["windows_closed_early"] += 1
        self._recent[key] = self.clock()
        try:
            await self._process(copies.envelope, copies.receptions)
        except sqlite3.Error as error:  # a full disk, a read-only one: nothing was stored, nor acknowledged
            self.counters["state_write_errors"] += 1
            self.state.write_failed(error, "frames are not acknowledged meanwhile: their nodes send them again")
        except Exception:  # a bug here must cost one frame, never the daemon
            log.exception("processing a frame from %s failed", copies.receptions[0].source)
            self.counters["processing_errors"] += 1
        else:
            self.state.write_succeeded()

    async def _process(self, envelope: SealedEnvelope, receptions: list[Reception]) -> None:
        best = max(receptions, key=lambda r: r.snr_db)
        raw = best.frame
        device = self.registry.get(envelope.device_id)
        if device is None:
            error = CodecError("unknown_device", f"device {envelope.device_id} is not registered")
            await self._refuse(best, error, envelope.device_id)
            return
        accepted_before = self.state.accepted_counter(device.device_id, raw)
        if accepted_before is not None:
            await self._retransmission(device, accepted_before, receptions, envelope)
            return
        last, seen_below = self.state.window(device.device_id)
        frame = open_envelope(envelope, device.keys, last, self.config.gateway.max_counter_gap, seen_below)
        if isinstance(frame, CodecError):
            cause = replay_cause(envelope, device, last) if frame.reason == "replay" and last is not None else None
            if cause is not None:
                frame = CodecError("replay", f"{frame.detail}; {cause}")
            await self._refuse(best, frame, device.device_id)
            return
        if frame.msg_type == "checkin" and not frame.encrypted and not self.config.gateway.allow_unencrypted_checkins:
            detail = f"check-in {frame.counter} sent in clear; the node must encrypt check-ins"
            await self.reject(Rejected(best.source, UNENCRYPTED_CHECKIN, detail, raw), device.device_id)
            return
        first_number = None
        if isinstance(frame.message, CheckinBatch):
            last_number = self.state.last_checkin_number(device.device_id)
            first_number = resolve_checkin_number(last_number, frame.message.first_number16)
        events = events_of(
            frame, device, receptions, self.config.gateway.name, self.config.mqtt.topic_prefix, first_number
        )
        fresh = self.state.unpublished(device.device_id, events)
        accepted = self.state.accept(
            device.device_id,
            frame.counter,
            raw,
            events,
            seen_at=best.received_at,
            rssi_dbm=best.rssi_dbm,
            snr_db=best.snr_db,
            battery_mv=frame.message.battery_mv if isinstance(frame.message, Telemetry) else None,
            next_downlink_counter=frame.message.next_downlink_counter if isinstance(frame.message, Status) else 0,
        )
        if not accepted:  # another process sharing the state took it first
            error = CodecError("replay", f"counter {frame.counter} was accepted meanwhile by another process")
            await self._refuse(best, error, device.device_id)
            return
        self.counters[f"accepted_{frame.msg_type}"] += 1
        self.counters["events"] += len(fresh)
        if len(fresh) < len(events):
            self.counters["checkins_published_before"] += len(events) - len(fresh)
        self.wake_publisher()
        self._remember_receivers(device, receptions)
        if frame.ack_requested:
            await self._send_ack(device, frame.counter, frame.time_requested, receptions)
        elif isinstance(frame.message, Status):
            await self._send_pending_config(device, frame.message, receptions)

    async def _retransmission(
        self, device: Device, counter: int, receptions: list[Reception], envelope: SealedEnvelope
    ) -> None:
        """The same bytes as a frame recently accepted from this device.

        A node that asked for an ACK and did not hear it sends its frame again: ACK it
        once more and publish nothing. Any other copy (no ACK asked, or asked too often)
        is a replay. The bytes are those accepted before, so their MIC was verified then.
        """
        best = max(receptions, key=lambda r: r.snr_db)
        key = frame_hash(best.frame)
        now = self.clock()
        if now - self._reacked_at.get(key, now) > REACK_WINDOW_S:
            self._reacks[key] = 0  # a copy minutes later is a node still waiting, not an echo
        self._reacked_at[key] = now
        self._reacks[key] += 1
        if not envelope.flags & FLAG_ACK_REQUESTED or self._reacks[key] > MAX_REACKS:
            last, _ = self.state.window(device.device_id)
            error = CodecError("replay", f"copy of frame {counter}, accepted before (last accepted: {last})")
            await self._refuse(best, error, device.device_id)
            return
        self.counters["retransmissions"] += 1
        await self._send_ack(device, counter, bool(envelope.flags & FLAG_TIME_REQUESTED), receptions)

    async def _send_ack(self, device: Device, counter: int, time_requested: bool, receptions: list[Reception]) -> None:
        ack = Ack(acked_counter16=counter & 0xFFFF, gateway_time=int(self.clock()) if time_requested else None)
        await self._send_in_window(device, ack, receptions, "acks")

    async def _send_pending_config(self, device: Device, status: Status, receptions: list[Reception]) -> None:
        """A node listens after its status: send the config pending for it, unless this status shows it applied."""
        pending = self.state.pending_config(device.device_id)
        if pending is None:
            return
        if applied(pending, status.config_digest):
            if self.state.config_applied(device.device_id, pending.body):
                self.counters["configs_applied"] += 1
                log.info("device %s applied its config %s", device.device_id, pending_changes(pending).to_json())
            return
        self.state.config_tried(device.device_id, pending.body, self.clock())
        await self._send_in_window(device, pending_changes(pending), receptions, "configs")

    async def _send_in_window(self, device: Device, message: Message, receptions: list[Reception], kind: str) -> None:
        """Send a downlink in the receive window after the frame heard in `receptions`, through the
        receiver that heard it best; through the next one if that one refused it at once, unsent (no
        downlink path yet, busy, …); `kind` names its counters (`acks_sent`, `configs_failed_too_late`, …)."""
        downlink_counter = self.state.next_downlink_counter(device.device_id)
        frame = build_frame(message, device.device_id, downlink_counter, device.keys)
        radio = self.config.radio
        heard = sorted(receptions, key=lambda reception: reception.snr_db, reverse=True)
        paths = [(reception, path) for reception in heard if (path := self._source_of(reception)) is not None]
        if not paths:
            self.counters[f"{kind}_without_path"] += 1
            return
        for tried, (reception, source) in enumerate(paths, start=1):
            downlink = Downlink(
                frame=frame,
                answers=reception,
                delay_us=radio.ack_delay_ms * 1000,
                frequency_hz=radio.ack_frequency_hz,
                spreading_factor=reception.spreading_factor,
                bandwidth_hz=reception.bandwidth_hz,
                tx_power_dbm=radio.ack_tx_power_dbm,
            )
            self._sent[frame] = self.clock()  # before it is on the air: another receiver may hear it at once
            try:
                await source.transmit(downlink)
            except TransmitError as error:
                self.counters[f"{kind}_failed_{error.reason}"] += 1
                next_path = error.reason in REFUSED_UNSENT and tried < len(paths)
                then = ": trying the next receiver that heard the frame" if next_path else ""
                name = message.msg_type.name
                log.warning("%s to device %s via %s failed: %s%s", name, device.device_id, source.name, error, then)
                if next_path:
                    continue
            else:
                self.counters[f"{kind}_sent"] += 1
            return

    def _source_of(self, reception: Reception) -> Source | None:
        return next((source for source in self.sources if source.heard(reception)), None)

    def _remember_receivers(self, device: Device, receptions: list[Reception]) -> None:
        """Store which receivers hear the device and on which SF they listen, for `borne device configure`;
        written when that changes or grows stale, not at every frame."""
        for reception in receptions:
            source = self._source_of(reception)
            single_sf = reception.spreading_factor if source is not None and source.listens_on_one_sf else None
            heard = Receiver(reception.source, single_sf, reception.frequency_hz, reception.received_at)
            key = (device.device_id, reception.source)
            stored = self._receivers_stored.get(key)
            if (
                stored is None
                or (stored.single_sf, stored.frequency_hz) != (heard.single_sf, heard.frequency_hz)
                or heard.last_heard - stored.last_heard > RECEIVER_REFRESH_S
            ):
                self.state.heard_by(device.device_id, heard)
                self._receivers_stored[key] = heard

    async def _refuse(self, reception: Reception, error: CodecError, device_id: int | None = None) -> None:
        await self.reject(Rejected(reception.source, error.reason, error.detail, reception.frame), device_id)

    def _is_own_downlink(self, frame: bytes) -> bool:
        horizon = self.clock() - OWN_DOWNLINK_S
        for sent in [sent for sent, at in self._sent.items() if at < horizon]:
            del self._sent[sent]
        return frame in self._sent

    def _forget_old_frames(self) -> None:
        horizon = self.clock() - self.config.radio.ack_delay_ms / 1000 - LATE_COPY_S
        for key in [key for key, seen in self._recent.items() if seen < horizon]:
            del self._recent[key]
        if len(self._reacks) > 10_000:  # one entry per retransmitted frame: keep it bounded
            self._reacks.clear()
            self._reacked_at.clear()
