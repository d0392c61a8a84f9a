"""A simulated LoRa radio medium shared by virtual boards and host-side radios.

Boards join it with `VirtualBoard(..., medium=medium)`: their radio chip's model reports to the
host what the modem listens on and what it transmits, and when; the medium decides the fate of each
frame `SETTLE_S` after the end of its time on air (those reports may come late) and delivers it to
every receiver that hears it; a report later still no longer counts for frames already decided
(one that collided with its frame may have been received). Host-side radios join it too: a
listener (a multi-SF concentrator: `add_listener`) hears every frequency and SF, and `transmit`
sends a frame (a concentrator's downlink) that boards receive like any other.

The model, per frame and receiver:

- Time on air is Semtech AN1200.13's (the figure the node's modem computes as well).
- A board hears a frame when its modem listens with the same frequency, SF, bandwidth, sync word,
  IQ polarity and header mode, from before the frame's preamble ends (less the few symbols a radio
  needs to lock on it) to the frame's end, and does not transmit meanwhile (half duplex).
- Each link (a pair of endpoints: boards, or names of host-side radios, "concentrator" by default)
  has an RSSI and an SNR, stated for a sender at 14 dBm (a sender at P dBm shifts both by P - 14),
  and a loss probability; `rssi_dbm`/`snr_db` are the defaults for links never set. A frame below
  its SF's demodulation floor (SNR -7.5 dB at SF7, 2.5 dB lower per SF) is lost. A loss may also be
  set one way only (`set_one_way_loss`).
- Two frames that overlap in time on the same frequency and SF collide at a receiver: both are lost,
  unless one is at least 6 dB stronger there (capture), which is then received. A board that had
  locked on the earlier of two colliding frames counts a CRC error (its modem's `crc_errors`).
- `stats` counts frames `sent`, and receptions `delivered`, `lost` (loss or noise) and `collided`;
  `time_on_air_s` sums each sender's time on air, to check its duty cycle against. After
  `keep_transmissions`, `transmissions` tells each of a sender's frames and its fate at each receiver.

Randomness comes from the `random.Random` the medium is given (seeded 0 by default), so a test
replays the same losses. All methods are thread-safe; deliveries run on a thread of the medium's, so
a board never waits on itself.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING

from payload_codec.airtime import time_on_air_ms

if TYPE_CHECKING:
    from simulator.virtual_board.board import VirtualBoard
    from simulator.virtual_board.messages import RadioSettings

log = logging.getLogger(__name__)

Listener = Callable[[bytes, int, int, int, float, float, float], None]
"""Called with (payload, frequency_hz, sf, bw_hz, rssi_dbm, snr_db, end_monotonic) for each frame heard."""

REFERENCE_POWER_DBM = 14  # links' RSSI and SNR are stated for a sender at this power
CAPTURE_DB = 6  # how much stronger a frame must be to survive a collision
LOCK_SYMBOLS = 6  # preamble symbols a receiver must hear to lock on a frame
# How long after a frame ends its fate is decided, for boards' reports of what their modems do, which
# come through a pipe: a few ms late on a loaded host. A real modem signals RxDone as the frame ends,
# and a receiver times its answer from that moment: every ms here delays the ACK the bridge sends
# and its arrival at the node, twice out of the node's receive window (200 ms beyond the ACK's end).
SETTLE_S = 0.02
HISTORY_S = 2.0  # how long ended frames and past listening states are kept for those decisions


@dataclass(frozen=True)
class Modulation:
    """What a frame is sent with, or what a receiver listens for: a receiver hears equal ones only."""

    frequency_hz: int
    sf: int
    bw_hz: int = 125_000
    syncword: int = 0x12
    invert_iq: bool = False
    implicit_header: bool = False


@dataclass(frozen=True)
class Link:
    rssi_dbm: float
    snr_db: float
    loss: float = 0.0


@dataclass(frozen=True)
class _Frame:
    payload: bytes
    sender: VirtualBoard | str
    modulation: Modulation
    power_dbm: float
    start: float
    lock_by: float  # a receiver must listen from this time on to hear it
    end: float


@dataclass(frozen=True)
class Transmission:
    """A frame a sender put on the air, as `RadioMedium.transmissions` keeps it: when it began (wall
    clock), how long it lasted, and its fate at each receiver that listened for it (see `_fate`)."""

    at: float
    airtime_s: float
    fates: dict[VirtualBoard | str, str | None]


@dataclass(frozen=True)
class _Listening:
    """From `since` on, the modem of a board's VM (the `boots`-th) listens for `modulation`, or not (None)."""

    modulation: Modulation | None
    since: float
    boots: int


def demodulation_floor_db(sf: int) -> float:
    """The lowest SNR at which a LoRa receiver decodes a frame at this spreading factor."""
    return -2.5 * (sf - 4)


class RadioMedium:
    """The air between virtual boards and host-side radios: see the module's documentation."""

    def __init__(self, rng: random.Random | None = None, *, rssi_dbm: float = -90.0, snr_db: float = 8.0) -> None:
        self._rng = rng if rng is not None else random.Random(0)
        self._default = Link(rssi_dbm, snr_db)
        self._links: dict[frozenset[VirtualBoard | str], Link] = {}
        self._one_way_loss: dict[tuple[VirtualBoard | str, VirtualBoard | str], float] = {}
        self._listening: dict[VirtualBoard, list[_Listening]] = {}  # each board's recent states, oldest first
        self._listeners: list[tuple[str, Listener]] = []
        self._air: list[_Frame] = []  # frames on the air, and those that ended less than HISTORY_S ago
        self._undecided: list[tuple[float, int, _Frame]] = []  # a heap, by when each frame's fate is decided
        self._order = itertools.count()
        self._stats = {"sent": 0, "delivered": 0, "lost": 0, "collided": 0}
        self._air_s: dict[VirtualBoard | str, float] = {}  # each sender's time on air, summed
        self._transmissions: dict[VirtualBoard | str, list[Transmission]] | None = None  # see keep_transmissions
        self._changed = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="radio medium", daemon=True)
        self._thread.start()

    def __enter__(self) -> RadioMedium:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop delivering; frames still on the air are dropped."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        self._thread.join(timeout=5)

    @property
    def stats(self) -> dict[str, int]:
        """Frames `sent`; receptions `delivered`, `lost` (link loss, SNR below the floor), `collided`."""
        with self._changed:
            return dict(self._stats)

    def time_on_air_s(self, sender: VirtualBoard | str) -> float:
        """Seconds `sender` (a board, or a host-side radio's name) has transmitted since the medium started,
        whatever became of its frames: what its duty cycle is spent from."""
        with self._changed:
            return self._air_s.get(sender, 0.0)

    def keep_transmissions(self) -> None:
        """From now on, keep every frame's fate at each receiver, for `transmissions`: what a long run
        (the soak) tells of a node whose frames did not get through."""
        with self._changed:
            if self._transmissions is None:
                self._transmissions = {}

    def transmissions(self, sender: VirtualBoard | str) -> list[Transmission]:
        """The frames `sender` put on the air since `keep_transmissions`, oldest first, each decided."""
        with self._changed:
            return list((self._transmissions or {}).get(sender, ()))

    def set_link(
        self,
        a: VirtualBoard | str,
        b: VirtualBoard | str,
        *,
        rssi_dbm: float | None = None,
        snr_db: float | None = None,
        loss: float = 0.0,
    ) -> None:
        """Set the link between two endpoints, both ways: RSSI and SNR for a 14 dBm sender (None:
        the medium's default), and the probability that a frame is lost on it."""
        link = Link(
            self._default.rssi_dbm if rssi_dbm is None else rssi_dbm,
            self._default.snr_db if snr_db is None else snr_db,
            loss,
        )
        with self._changed:
            self._links[frozenset((a, b))] = link

    def set_one_way_loss(self, sender: VirtualBoard | str, receiver: VirtualBoard | str, loss: float) -> None:
        """Lose frames from `sender` to `receiver` with this probability, whatever their link says
        the other way: a path that fails one way only (a gateway's downlinks that no longer reach
        a node that it still hears). 0 gives the link its own loss back."""
        with self._changed:
            self._one_way_loss[(sender, receiver)] = loss

    def add_listener(self, callback: Listener, *, name: str = "concentrator") -> None:
        """Hear every frame on the air, on any frequency and SF, as the endpoint `name` does.

        `callback(payload, frequency_hz, sf, bw_hz, rssi_dbm, snr_db, end_monotonic)` runs on the
        medium's thread shortly after each frame it hears ends (its links' loss and collisions apply)."""
        with self._changed:
            self._listeners.append((name, callback))

    def transmit(
        self,
        payload: bytes,
        frequency_hz: int,
        sf: int,
        bw_hz: int = 125_000,
        power_dbm: float = 14,
        at_monotonic: float | None = None,
        *,
        coding_rate: int = 5,
        preamble_len: int = 8,
        syncword: int = 0x12,
        invert_iq: bool = False,
        crc: bool = True,
        sender: str = "concentrator",
    ) -> float:
        """Send a frame from a host-side radio, now or at `at_monotonic` (`time.monotonic()`'s clock).

        Returns at once, with the monotonic time the transmission ends."""
        modulation = Modulation(frequency_hz, sf, bw_hz, syncword, invert_iq, implicit_header=False)
        start = max(time.monotonic(), at_monotonic or 0.0)
        frame = self._frame(bytes(payload), sender, modulation, power_dbm, start, coding_rate, preamble_len, crc)
        with self._changed:
            self._put_on_air(frame)
        return frame.end

    def listening(self, board: VirtualBoard) -> Modulation | None:
        """What the board's modem listens for now, or None."""
        with self._changed:
            states = self._listening.get(board)
            return states[-1].modulation if states and states[-1].boots == board.boots else None

    # Called by VirtualBoard with what its VM's modem reports, and when (`time.monotonic()`'s clock).

    def board_listens(self, board: VirtualBoard, settings: RadioSettings | None, at: float) -> None:
        """The board's modem listens with `settings` from `at` on, or not at all (None)."""
        modulation = None if settings is None else _modulation(settings, settings.invert_iq_rx)
        with self._changed:
            self._listening.setdefault(board, []).append(_Listening(modulation, at, board.boots))

    def board_transmits(self, board: VirtualBoard, payload: bytes, settings: RadioSettings, at: float) -> None:
        """The board's modem sends `payload` with `settings` from `at` on.

        It does not listen meanwhile: if it receives after, it says so again."""
        modulation = _modulation(settings, settings.invert_iq_tx)
        power, coding_rate, preamble_len = settings.output_power, settings.coding_rate, settings.preamble_len
        frame = self._frame(payload, board, modulation, power, at, coding_rate, preamble_len, settings.crc_en)
        with self._changed:
            self._listening.setdefault(board, []).append(_Listening(None, at, board.boots))
            self._put_on_air(frame)

    @staticmethod
    def _frame(
        payload: bytes,
        sender: VirtualBoard | str,
        modulation: Modulation,
        power_dbm: float,
        start: float,
        coding_rate: int,
        preamble_len: int,
        crc: bool,
    ) -> _Frame:
        m = modulation
        air_ms = time_on_air_ms(len(payload), m.sf, m.bw_hz, coding_rate, preamble_len, not m.implicit_header, crc)
        symbol_s = (1 << m.sf) / m.bw_hz
        lock_by = start + max(preamble_len - LOCK_SYMBOLS, 0) * symbol_s
        return _Frame(payload, sender, modulation, power_dbm, start, lock_by, start + air_ms / 1000)

    def _put_on_air(self, frame: _Frame) -> None:
        self._air.append(frame)
        heapq.heappush(self._undecided, (frame.end + SETTLE_S, next(self._order), frame))
        self._stats["sent"] += 1
        self._air_s[frame.sender] = self._air_s.get(frame.sender, 0.0) + frame.end - frame.start
        self._changed.notify_all()

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._closed and (not self._undecided or self._undecided[0][0] > time.monotonic()):
                    self._changed.wait(self._undecided[0][0] - time.monotonic() if self._undecided else None)
                if self._closed:
                    return
                _, _, frame = heapq.heappop(self._undecided)
                receptions = self._receptions(frame)
                self._forget_the_past()
            for receive in receptions:  # without the lock: a board waits for its VM to take a frame
                try:
                    receive()
                except Exception:
                    log.exception("radio medium: a receiver failed to take a frame")

    def _receptions(self, frame: _Frame) -> list[Callable[[], None]]:
        """Who hears `frame`, as calls that hand it over."""
        m = frame.modulation
        receptions: list[Callable[[], None]] = []
        fates: dict[VirtualBoard | str, str | None] = {}
        for board in sorted(self._listening, key=lambda board: str(board.port)):
            if self._hears(board, frame):
                fate, rssi, snr = self._fate(frame, board)
                fates[board] = fate
                if fate in ("delivered", "garbled"):
                    valid_crc = fate == "delivered"
                    receptions.append(partial(board.radio_receive, frame.payload, rssi, snr, valid_crc=valid_crc))
        for name, callback in self._listeners:
            fate, rssi, snr = self._fate(frame, name)
            fates[name] = fate
            if fate == "delivered":
                receptions.append(partial(callback, frame.payload, m.frequency_hz, m.sf, m.bw_hz, rssi, snr, frame.end))
        if self._transmissions is not None:
            began = time.time() - time.monotonic() + frame.start
            sent = Transmission(began, frame.end - frame.start, fates)
            self._transmissions.setdefault(frame.sender, []).append(sent)
        return receptions

    def _fate(self, frame: _Frame, receiver: VirtualBoard | str) -> tuple[str | None, float, float]:
        """What becomes of `frame` at a receiver that listens for it, with its RSSI and SNR there:
        "delivered", "lost", "collided", "garbled" (collided after the receiver locked on it: a CRC
        error), or None (the receiver was sending). Counted in stats."""
        roll = self._rng.random()  # drawn for every receiver, so that a test replays the same losses
        rssi, snr = self._signal(frame, receiver)
        if receiver == frame.sender or self._transmitted_during(receiver, frame):
            return None, rssi, snr
        m = frame.modulation
        rivals = [
            other
            for other in self._air
            if other is not frame
            and other.sender not in (frame.sender, receiver)  # a radio sends one frame at a time
            and other.start < frame.end
            and other.end > frame.start
            and (other.modulation.frequency_hz, other.modulation.sf) == (m.frequency_hz, m.sf)
        ]
        if rivals and rssi < max(self._signal(other, receiver)[0] for other in rivals) + CAPTURE_DB:
            self._stats["collided"] += 1
            locked = frame.start <= min(other.start for other in rivals)
            return ("garbled" if locked else "collided"), rssi, snr
        loss = max(self._link(frame.sender, receiver).loss, self._one_way_loss.get((frame.sender, receiver), 0.0))
        if roll < loss or snr < demodulation_floor_db(m.sf):
            self._stats["lost"] += 1
            return "lost", rssi, snr
        self._stats["delivered"] += 1
        return "delivered", rssi, snr

    def _hears(self, board: VirtualBoard, frame: _Frame) -> bool:
        """Whether the board's modem listened for the frame from before its preamble ended to its end."""
        state = next((state for state in reversed(self._listening[board]) if state.since <= frame.end), None)
        return (
            state is not None
            and state.modulation == frame.modulation
            and state.since <= frame.lock_by
            and state.boots == board.boots
            and not board.asleep
        )

    def _transmitted_during(self, receiver: VirtualBoard | str, frame: _Frame) -> bool:
        return any(
            other.sender == receiver and other.start < frame.end and other.end > frame.start for other in self._air
        )

    def _link(self, a: VirtualBoard | str, b: VirtualBoard | str) -> Link:
        return self._links.get(frozenset((a, b)), self._default)

    def _signal(self, frame: _Frame, receiver: VirtualBoard | str) -> tuple[float, float]:
        """RSSI (dBm) and SNR (dB) of `frame` at `receiver`."""
        link = self._link(frame.sender, receiver)
        gain = frame.power_dbm - REFERENCE_POWER_DBM
        return link.rssi_dbm + gain, link.snr_db + gain

    def _forget_the_past(self) -> None:
        """Drop the frames and listening states that no decision to come can need."""
        horizon = min([time.monotonic() - HISTORY_S] + [frame.start for _, _, frame in self._undecided])
        self._air = [frame for frame in self._air if frame.end >= horizon]
        for states in self._listening.values():
            current = max((i for i, state in enumerate(states) if state.since <= horizon), default=0)
            del states[:current]


def _modulation(settings: RadioSettings, invert_iq: bool) -> Modulation:
    s = settings
    return Modulation(s.freq_hz, s.sf, s.bw_hz, s.syncword, invert_iq, s.implicit_header)
