"""The gateway's durable state in one SQLite file: frame counters, check-in numbers and the outbox.

A frame is accepted in one transaction that stores the device's new receive window
(its highest counter and which counters below it were accepted), marks the numbers of
its check-ins as published (a window of the same kind over the node-side numbers) and
puts its new events in the outbox, so a crash can neither publish an event whose
counter is not stored (a replay could then slip in), nor publish a check-in twice when
the node sends it again in a new frame, nor store a counter whose events are lost.
WAL with synchronous=FULL: a commit that returned survives power loss. Calls are
synchronous on the event loop on purpose: at LoRa rates (a few frames a second) a
commit costs far less than the radio time between frames, and one connection on one
thread needs no locking.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from payload_codec.counter import ALL_SEEN, WINDOW_SIZE, already_seen, slide_window

log = logging.getLogger(__name__)

# Accepted frames remembered per device, so that a node resending one it got no ACK for is
# ACKed again rather than refused, even after it sent telemetry in between.
RECENT_FRAMES = 16
# The order the outbox drops events in when full: telemetry and status first, check-ins last.
DROP_ORDER = ("telemetry", "status", "checkin")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    device_id INTEGER PRIMARY KEY,
    last_counter INTEGER NOT NULL,
    seen_below INTEGER NOT NULL DEFAULT -1,
    next_downlink_counter INTEGER NOT NULL DEFAULT 0,
    first_counter INTEGER NOT NULL,
    frames INTEGER NOT NULL DEFAULT 0,
    last_seen REAL,
    rssi_dbm REAL,
    snr_db REAL,
    battery_mv INTEGER,
    checkin_top INTEGER,
    checkins_seen_below INTEGER NOT NULL DEFAULT -1
);
CREATE TABLE IF NOT EXISTS key_epochs (
    device_id INTEGER PRIMARY KEY,
    key_epoch INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS recent_frames (
    device_id INTEGER NOT NULL,
    counter INTEGER NOT NULL,
    frame_hash BLOB NOT NULL,
    PRIMARY KEY (device_id, counter)
);
CREATE INDEX IF NOT EXISTS recent_frames_hash ON recent_frames (device_id, frame_hash);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at REAL NOT NULL,
    held_until REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS outbox_kind ON outbox (kind, seq);
CREATE TABLE IF NOT EXISTS dropped (
    reason TEXT PRIMARY KEY,
    count INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS pending_configs (
    device_id INTEGER PRIMARY KEY,
    body BLOB NOT NULL,
    queued_at REAL NOT NULL,
    tries INTEGER NOT NULL DEFAULT 0,
    last_try_at REAL
);
CREATE TABLE IF NOT EXISTS firmware (
    device_id INTEGER PRIMARY KEY,
    version TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS receivers (
    device_id INTEGER NOT NULL,
    receiver TEXT NOT NULL,
    single_sf INTEGER,
    frequency_hz INTEGER NOT NULL,
    last_heard REAL NOT NULL,
    PRIMARY KEY (device_id, receiver)
);
"""
# Columns added since the first release, with what an older file gets. A file from before the
# receive window gets a full window (-1: every bit set): nothing below its last counter is
# accepted, as before, so no frame it accepted can be replayed into the new window.
# A file from before check-in numbers has none published (NULL).
_ADDED_COLUMNS = {
    "devices": {
        "seen_below": "INTEGER NOT NULL DEFAULT -1",
        "checkin_top": "INTEGER",
        "checkins_seen_below": "INTEGER NOT NULL DEFAULT -1",
    },
    "outbox": {"held_until": "REAL NOT NULL DEFAULT 0"},
}


@dataclass(frozen=True)
class OutboxEvent:
    """One MQTT message waiting for its PUBACK; `event_id` is stable across retries."""

    event_id: str
    kind: str  # checkin, telemetry, status
    topic: str
    payload: str
    seq: int = 0
    checkin_number: int | None = None  # a check-in's node-side number: published once per device


@dataclass(frozen=True)
class DeviceState:
    device_id: int
    last_counter: int
    frames: int
    first_counter: int
    last_seen: float | None
    rssi_dbm: float | None
    snr_db: float | None
    battery_mv: int | None

    @property
    def lost_frames(self) -> int:
        """Frames the counter says were sent but never accepted here (lost on air or refused)."""
        return max(self.last_counter - self.first_counter + 1 - self.frames, 0)


@dataclass(frozen=True)
class PendingConfig:
    """A config downlink waiting for the device's status to show it applied.

    `body` is the encoded Config body; `tries` counts the times it went out, after statuses
    that did not show it."""

    device_id: int
    body: bytes
    queued_at: float
    tries: int
    last_try_at: float | None


@dataclass(frozen=True)
class Receiver:
    """A receiver that heard a device: `single_sf` is the one spreading factor it listens on (a
    bridge board), None for one that hears every SF at once (a concentrator)."""

    name: str
    single_sf: int | None
    frequency_hz: int
    last_heard: float


def frame_hash(frame: bytes) -> bytes:
    return hashlib.blake2b(frame, digest_size=16).digest()


class StateError(Exception):
    """The state file cannot be opened or read at start: what went wrong, and what to do."""


def state_file_advice(path: Path, error: sqlite3.Error | OSError) -> str:
    """What a person does about `error` on the state file at `path`, by what SQLite (or the system) said."""
    said = str(error)
    if "malformed" in said or "not a database" in said:
        return (
            f"the state file {path} is damaged ({said}): move it aside (`mv {path} {path}.damaged`) and start "
            "the gateway again; it begins a new one and learns each device's counter from its next status (events "
            f"still in the damaged outbox are not published: `sqlite3 {path}.damaged .recover` may save them)"
        )
    if isinstance(error, OSError) or "unable to open" in said or "readonly" in said or "read-only" in said:
        return (
            f"the state file {path} cannot be opened for writing ({said}): check that {path.parent} is a folder "
            "the gateway's user may write in (the systemd unit's StateDirectory makes /var/lib/borne)"
        )
    return (
        f"the state file {path} cannot be written ({said}): check the free space on its disk (`df -h "
        f"{path.parent}`) and the disk itself (`dmesg`)"
    )


class GatewayState:
    """Counters and outbox; `max_outbox` bounds the outbox, dropping by DROP_ORDER."""

    def __init__(self, path: Path, max_outbox: int = 500_000) -> None:
        self.path = path
        self.max_outbox = max_outbox
        self._failing = False  # a write failed, and none has succeeded since
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None)  # transactions are explicit
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self._migrate()
            (verdict,) = self._db.execute("PRAGMA quick_check(1)").fetchone()  # said now, not at a page's first use
            if verdict != "ok":
                raise sqlite3.DatabaseError(f"database disk image is malformed: {verdict.splitlines()[-1]}")
        except (sqlite3.Error, OSError) as error:
            raise StateError(state_file_advice(path, error)) from None

    def write_failed(self, error: sqlite3.Error, then: str) -> None:
        """Say once, until a write succeeds again, that the state file refuses writes, and what follows."""
        if not self._failing:
            log.error("%s; %s", state_file_advice(self.path, error), then)
        self._failing = True

    def write_succeeded(self) -> None:
        if self._failing:
            log.info("the state file %s takes writes again", self.path)
            self._failing = False

    def close(self) -> None:
        self._db.close()

    # --- counters ----------------------------------------------------------------------
    def last_counter(self, device_id: int) -> int | None:
        """The last counter accepted from a device, if any."""
        row = self._db.execute("SELECT last_counter FROM devices WHERE device_id = ?", (device_id,)).fetchone()
        return None if row is None else row[0]

    def window(self, device_id: int) -> tuple[int | None, int]:
        """The device's receive window: its highest accepted counter (None if none) and `seen_below`."""
        row = self._db.execute(
            "SELECT last_counter, seen_below FROM devices WHERE device_id = ?", (device_id,)
        ).fetchone()
        return (None, ALL_SEEN) if row is None else (row[0], _from_column(row[1]))

    def last_checkin_number(self, device_id: int) -> int | None:
        """The highest check-in number published for a device, if any: what a frame's number resolves against."""
        row = self._db.execute("SELECT checkin_top FROM devices WHERE device_id = ?", (device_id,)).fetchone()
        return None if row is None else row[0]

    def unpublished(self, device_id: int, events: list[OutboxEvent]) -> list[OutboxEvent]:
        """`events` without the check-ins whose numbers were published before (or lie below the
        window of numbers kept, WINDOW_SIZE below the highest: a node retries from its oldest)."""
        row = self._db.execute(
            "SELECT checkin_top, checkins_seen_below FROM devices WHERE device_id = ?", (device_id,)
        ).fetchone()
        top, seen_below = (None, ALL_SEEN) if row is None else (row[0], _from_column(row[1]))
        fresh = []
        for event in events:
            number = event.checkin_number
            if number is not None:
                if top is not None and already_seen(top, seen_below, number):
                    continue
                top, seen_below = _publish_number(top, seen_below, number)
            fresh.append(event)
        return fresh

    def accepted_counter(self, device_id: int, frame: bytes) -> int | None:
        """The counter of this very frame if it is one of the device's recently accepted frames."""
        row = self._db.execute(
            "SELECT counter FROM recent_frames WHERE device_id = ? AND frame_hash = ?", (device_id, frame_hash(frame))
        ).fetchone()
        return None if row is None else row[0]

    def accept(
        self,
        device_id: int,
        counter: int,
        frame: bytes,
        events: list[OutboxEvent],
        *,
        seen_at: float,
        rssi_dbm: float,
        snr_db: float,
        battery_mv: int | None = None,
        next_downlink_counter: int = 0,
    ) -> bool:
        """Mark the counter in the device's window and queue the events, atomically; False if the
        window refuses the counter (accepted before, or older than the window).

        `next_downlink_counter`, from a status frame, is the lowest downlink counter the node
        accepts: downlink counters continue from it if they were behind (this file was lost).
        Check-ins whose numbers were published before are left out (see `unpublished`), and
        the numbers of the others are marked published in the same commit.

        The windows are read again inside the write transaction, so a second gateway process
        sharing the file, or a race, cannot accept what the first one already accepted.
        """
        with self._transaction():
            last, seen_below = self.window(device_id)
            if last is not None and already_seen(last, seen_below, counter):
                return False
            events = self.unpublished(device_id, events)
            numbers = [e.checkin_number for e in events if e.checkin_number is not None]
            top, seen_below = slide_window(last, seen_below, counter)
            if last is None:
                self._db.execute(
                    "INSERT INTO devices (device_id, last_counter, seen_below, first_counter, frames, last_seen,"
                    " rssi_dbm, snr_db, battery_mv, next_downlink_counter) VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?, ?)",
                    (
                        device_id,
                        top,
                        _to_column(seen_below),
                        counter,
                        seen_at,
                        rssi_dbm,
                        snr_db,
                        battery_mv,
                        next_downlink_counter,
                    ),
                )
            else:
                self._db.execute(
                    "UPDATE devices SET last_counter = ?, seen_below = ?, frames = frames + 1, last_seen = ?,"
                    " rssi_dbm = ?, snr_db = ?, battery_mv = COALESCE(?, battery_mv),"
                    " next_downlink_counter = MAX(next_downlink_counter, ?) WHERE device_id = ?",
                    (
                        top,
                        _to_column(seen_below),
                        seen_at,
                        rssi_dbm,
                        snr_db,
                        battery_mv,
                        next_downlink_counter,
                        device_id,
                    ),
                )
            if numbers:
                self._publish_numbers(device_id, numbers)
            self._db.execute(
                "INSERT INTO recent_frames (device_id, counter, frame_hash) VALUES (?, ?, ?)",
                (device_id, counter, frame_hash(frame)),
            )
            # The most recently accepted, not the highest counters: a late frame is resent too.
            self._db.execute(
                "DELETE FROM recent_frames WHERE device_id = ? AND rowid <= ("
                " SELECT rowid FROM recent_frames WHERE device_id = ? ORDER BY rowid DESC LIMIT 1 OFFSET ?)",
                (device_id, device_id, RECENT_FRAMES),
            )
            self._db.executemany(
                "INSERT OR IGNORE INTO outbox (event_id, kind, topic, payload, created_at) VALUES (?, ?, ?, ?, ?)",
                [(e.event_id, e.kind, e.topic, e.payload, seen_at) for e in events],
            )
            self._enforce_bound()
        return True

    def follow_key_epochs(self, epochs: dict[int, int]) -> list[int]:
        """Record each device's key epoch (`epochs`, by id, from the registry) and start over the
        counters of those whose epoch moved; return them. Under new keys a node counts from 0 again,
        uplink and downlink: the old window would refuse its frames as replays."""
        moved = []
        with self._transaction():
            kept = dict(self._db.execute("SELECT device_id, key_epoch FROM key_epochs").fetchall())
            # A file from before key epochs counted epoch 0, the epoch of every device then.
            for (device_id,) in self._db.execute("SELECT device_id FROM devices").fetchall():
                kept.setdefault(device_id, 0)
            for device_id, epoch in epochs.items():
                if kept.get(device_id, epoch) != epoch:
                    self._db.execute("DELETE FROM devices WHERE device_id = ?", (device_id,))
                    self._db.execute("DELETE FROM recent_frames WHERE device_id = ?", (device_id,))
                    moved.append(device_id)
                self._db.execute(
                    "INSERT INTO key_epochs (device_id, key_epoch) VALUES (?, ?)"
                    " ON CONFLICT (device_id) DO UPDATE SET key_epoch = excluded.key_epoch",
                    (device_id, epoch),
                )
        return moved

    def _publish_numbers(self, device_id: int, numbers: list[int]) -> None:
        top, seen_below = self._db.execute(
            "SELECT checkin_top, checkins_seen_below FROM devices WHERE device_id = ?", (device_id,)
        ).fetchone()
        seen_below = _from_column(seen_below)
        for number in numbers:
            top, seen_below = _publish_number(top, seen_below, number)
        self._db.execute(
            "UPDATE devices SET checkin_top = ?, checkins_seen_below = ? WHERE device_id = ?",
            (top, _to_column(seen_below), device_id),
        )

    def next_downlink_counter(self, device_id: int) -> int:
        """A downlink counter never used before for this device, stored before it is used."""
        with self._transaction():
            self._db.execute(
                "UPDATE devices SET next_downlink_counter = next_downlink_counter + 1 WHERE device_id = ?",
                (device_id,),
            )
            row = self._db.execute(
                "SELECT next_downlink_counter FROM devices WHERE device_id = ?", (device_id,)
            ).fetchone()
        if row is None:
            raise KeyError(f"device {device_id} has sent nothing yet")
        return row[0] - 1

    def devices(self) -> list[DeviceState]:
        rows = self._db.execute(
            "SELECT device_id, last_counter, frames, first_counter, last_seen, rssi_dbm, snr_db, battery_mv"
            " FROM devices ORDER BY device_id"
        ).fetchall()
        return [DeviceState(*row) for row in rows]

    # --- config downlinks -----------------------------------------------------------------
    # `borne device configure` writes here while the daemon runs: two processes on one WAL file,
    # each write under BEGIN IMMEDIATE, as the counters already are when gateways share a file.
    def queue_config(self, device_id: int, body: bytes, queued_at: float) -> None:
        """Make `body` the device's pending config, replacing any before it (its tries start again)."""
        with self._transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO pending_configs (device_id, body, queued_at, tries) VALUES (?, ?, ?, 0)",
                (device_id, body, queued_at),
            )

    def pending_config(self, device_id: int) -> PendingConfig | None:
        row = self._db.execute(
            "SELECT device_id, body, queued_at, tries, last_try_at FROM pending_configs WHERE device_id = ?",
            (device_id,),
        ).fetchone()
        return None if row is None else PendingConfig(*row)

    def firmware_versions(self) -> dict[int, str]:
        """The firmware version each device's last status named, by device id (`note_firmware`)."""
        return dict(self._db.execute("SELECT device_id, version FROM firmware").fetchall())

    def note_firmware(self, device_id: int, version: str) -> None:
        """Keep the firmware version a device's status named, for the gateway's next start."""
        with self._transaction():
            self._db.execute(
                "INSERT INTO firmware (device_id, version) VALUES (?, ?)"
                " ON CONFLICT (device_id) DO UPDATE SET version = excluded.version",
                (device_id, version),
            )

    def pending_configs(self) -> list[PendingConfig]:
        rows = self._db.execute(
            "SELECT device_id, body, queued_at, tries, last_try_at FROM pending_configs ORDER BY device_id"
        ).fetchall()
        return [PendingConfig(*row) for row in rows]

    def config_tried(self, device_id: int, body: bytes, at: float) -> None:
        """Count one more sending of `body` (unless another config replaced it meanwhile)."""
        with self._transaction():
            self._db.execute(
                "UPDATE pending_configs SET tries = tries + 1, last_try_at = ? WHERE device_id = ? AND body = ?",
                (at, device_id, body),
            )

    def config_applied(self, device_id: int, body: bytes) -> bool:
        """Forget the pending config `body`, which the device showed it applied; False if another
        config replaced it meanwhile (that one is still to send)."""
        with self._transaction():
            return (
                self._db.execute(
                    "DELETE FROM pending_configs WHERE device_id = ? AND body = ?", (device_id, body)
                ).rowcount
                > 0
            )

    def heard_by(self, device_id: int, receiver: Receiver) -> None:
        """Remember that `receiver` heard the device, and on which spreading factor it listens."""
        with self._transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO receivers (device_id, receiver, single_sf, frequency_hz, last_heard)"
                " VALUES (?, ?, ?, ?, ?)",
                (device_id, receiver.name, receiver.single_sf, receiver.frequency_hz, receiver.last_heard),
            )

    def receivers(self, device_id: int, since: float) -> list[Receiver]:
        """The receivers that heard the device since `since`, the most recent first."""
        rows = self._db.execute(
            "SELECT receiver, single_sf, frequency_hz, last_heard FROM receivers"
            " WHERE device_id = ? AND last_heard >= ? ORDER BY last_heard DESC",
            (device_id, since),
        ).fetchall()
        return [Receiver(*row) for row in rows]

    # --- outbox ------------------------------------------------------------------------
    def pending(self, limit: int = 100) -> list[OutboxEvent]:
        """The oldest events waiting for the broker, in the order they were accepted, but those held
        (`hold`) until later."""
        rows = self._db.execute(
            "SELECT event_id, kind, topic, payload, seq FROM outbox WHERE held_until <= ? ORDER BY seq LIMIT ?",
            (time.time(), limit),
        ).fetchall()
        return [OutboxEvent(*row) for row in rows]

    def hold(self, seq: int, until: float) -> None:
        """Keep an event the broker refused out of `pending` until `until` (a Unix time)."""
        self._db.execute("UPDATE outbox SET held_until = ? WHERE seq = ?", (until, seq))

    def release_held(self) -> None:
        """Every held event is pending again: a new connection may find the broker's rules changed."""
        self._db.execute("UPDATE outbox SET held_until = 0 WHERE held_until > 0")

    def held(self) -> tuple[int, float | None]:
        """How many events are held, and the earliest time one of them is pending again."""
        count, until = self._db.execute("SELECT COUNT(*), MIN(held_until) FROM outbox WHERE held_until > 0").fetchone()
        return count, until

    def delivered(self, seq: int) -> None:
        """Forget an event the broker acknowledged."""
        self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))

    def depth(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]

    def dropped(self) -> dict[str, int]:
        """What the bounded outbox had to drop, by reason, since the file was created."""
        return dict(self._db.execute("SELECT reason, count FROM dropped").fetchall())

    def _enforce_bound(self) -> None:
        # The span of sequence numbers bounds the depth from above and costs two index lookups;
        # only when it exceeds the bound are the rows counted.
        low, high = self._db.execute("SELECT MIN(seq), MAX(seq) FROM outbox").fetchone()
        if low is None or high - low + 1 <= self.max_outbox:
            return
        excess = self.depth() - self.max_outbox
        for kind in DROP_ORDER:
            if excess <= 0:
                return
            removed = self._db.execute(
                "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE kind = ? ORDER BY seq LIMIT ?)",
                (kind, excess),
            ).rowcount
            if removed:
                self._db.execute(
                    "INSERT INTO dropped (reason, count) VALUES (?, ?)"
                    " ON CONFLICT (reason) DO UPDATE SET count = count + excluded.count",
                    (f"outbox_full_{kind}", removed),
                )
            excess -= removed

    def _transaction(self):
        return _Transaction(self._db)

    def _migrate(self) -> None:
        # Under the write lock: two processes opening an old file at once add each column once.
        with self._transaction():
            for table, columns in _ADDED_COLUMNS.items():
                present = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
                for name, definition in columns.items():
                    if name not in present:
                        self._db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {definition}")


# SQLite integers are signed 64-bit: the window's 64 bits are stored in two's complement.
def _to_column(seen_below: int) -> int:
    return seen_below - (1 << WINDOW_SIZE) if seen_below >> (WINDOW_SIZE - 1) else seen_below


def _from_column(value: int) -> int:
    return value & ALL_SEEN


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT, or ROLLBACK on any error: the write lock is taken up front."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind, error, trace) -> None:
        if kind is None:
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error:
                self._roll_back()
                raise
        else:
            self._roll_back()

    def _roll_back(self) -> None:
        # SQLite has already rolled back after some errors (a full disk: SQLITE_FULL), and a ROLLBACK then
        # would fail and hide the error that matters.
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")


def _publish_number(top: int | None, seen_below: int, number: int) -> tuple[int, int]:
    """The window of published check-in numbers once `number` is published.

    Unlike a frame counter's, a device's first number published marks none below it: the frame
    that carried the numbers before it may have been lost on air, and the node sends it again. A
    number published before this state was lost comes again under the same event id."""
    if top is None:
        return number, 0
    return slide_window(top, seen_below, number)
