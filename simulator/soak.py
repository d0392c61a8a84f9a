"""`borne sim soak`: the virtual site through thousands of check-ins and a schedule of faults.

Doors with PN532 readers see a stream of visitors, each with a badge of their own, while the
broker restarts, the gateway daemon is SIGKILLed, the bridge board is unplugged, the gateway is
stopped for a while and doors lose their power. A visitor holds the badge until the door's LED
flashes (the door has the check-in in its journal then), as a person waits for the light. Then
every check-in the doors read is looked for on MQTT by its badge's token (each badge is presented
once), and the table says what a day of faults cost:

    presented  unread  published  lost  duplicates  copies  time error p50/p99  bound times  frames on air  collisions

`presented` are the badges a door read; `unread` the visitors whose badge no door's LED ever
acknowledged (a door off, booting or broken: no check-in, but a fault of its own);
`lost` are badges read and never published; `duplicates` are badges published under more than one event
id (a consumer that deduplicates on event ids would count them twice); `copies` are repeated
deliveries of one event id (QoS 1's at-least-once, removed by deduplicating on the event id).
The time error is that of the check-ins published with their true time; `bound times` are those
that waited across their door's reboot, published as "at this time or earlier" (`time_is_bound`):
one presented after its bound, by more than a second, is counted broken.

Ctrl-C (SIGINT) or SIGTERM (a CI job's timeout) stops the visitors at once and the table counts
what the soak saw until then: the check-ins read but not published yet are `not yet published`
(they were on their way), not lost. The site then shuts down and the soak exits 128 + the signal's
number (130 for Ctrl-C).
"""

from __future__ import annotations

import contextlib
import random
import signal
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from boards.provisioning import NFC_RETRY_MAX_S
from payload_codec import badge_token, derive_badge_key
from simulator.mqtt_log import MqttLog
from simulator.test_keys import TEST_MASTER_KEY
from simulator.virtual_board.medium import Transmission
from simulator.virtual_site import NodeSpec, VirtualSite

RADIO = {"sf": 7}  # the shortest airtime: the most check-ins per node within the 1 % duty cycle
BETWEEN_VISITORS_S = 0.7  # at least: the reader sees the badge gone before the next one comes
# At the end, how long check-ins still queued on doors may take to be published: a door may be waiting out
# its longest retry backoff (the firmware's nfc.retry_max_s) when the last visitor leaves, then send.
DRAIN_S = NFC_RETRY_MAX_S + 60
# For a door that lost check-ins, the soak shows its frames this long after its first lost one was read.
LOST_FRAMES_S = 3600
LOST_FRAMES_SHOWN = 60
READ_WAIT_S = 120  # how long a visitor holds a badge for the LED: a door booting on a loaded machine
FAULTS = ("broker restart", "daemon SIGKILL", "bridge unplugged", "gateway outage", "door power cut")


@dataclass(frozen=True)
class SoakOptions:
    """`borne sim soak`'s options."""

    checkins: int = 10_000
    doors: int = 24
    faults_per_kind: int = 0  # 0: one of each kind per 1,000 check-ins, at least one
    outage_s: float = 60  # how long a gateway outage lasts
    seed: int = 1
    # A concentrator (a Semtech UDP packet forwarder) beside the bridge, as a second receiver. A
    # single-radio bridge is deaf on its channel while it sends an ACK: with a dozen busy doors it
    # missed a quarter of the uplinks, and a door whose retries kept failing fell behind for good.
    # With two receivers the gateway ACKs through one while the other listens.
    concentrator: bool = False
    # A visitor at each door every this many seconds on average. A door sends at most 0.5 % of the
    # time, sustained (borne/airtime.py keeps the other half of the sub-band's 1 % for bursts): 18 s an
    # hour, 318 frames of one check-in (57 ms at SF7), about 5 a minute. A visitor every 15 s fits even
    # one check-in per frame, with room for retries. Faster, a door lives on batching (16 check-ins in
    # 297 ms), which a busy channel undoes: long frames collide more, their retries spend the budget,
    # and a door that fell behind stays behind until its queue drops the oldest, which the soak would
    # count lost. The short soak of `make test` goes faster, on the burst budget.
    visitor_every_s: float = 15.0


@dataclass
class Presentation:
    door: str
    token: str
    at: float  # wall-clock time the badge was presented


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM reached `borne sim soak` (main() has them raise it): run_soak returns the report
    of what it saw until then. A KeyboardInterrupt of another caller's (pytest's) goes through."""

    def __init__(self, signum: int) -> None:
        self.signal = signal.Signals(signum)
        super().__init__(self.signal.name)


@dataclass
class SoakReport:
    presented: int
    unread: list[Presentation]  # visitors whose badge no door read within READ_WAIT_S (`at`: when they came)
    published: int
    unpublished: list[Presentation]  # read, never published: lost, or not yet published if interrupted
    duplicates: int
    copies: int
    time_errors_s: list[float]  # of the check-ins published with their true time
    bound_times: int  # check-ins published with a bound for a time
    bounds_broken: int  # of those, the ones presented after the bound (by more than a second)
    medium: dict[str, int]
    faults: Counter[str] = field(default_factory=Counter)
    # The frames of each door that lost check-ins, from its first lost one's read for LOST_FRAMES_S: what
    # the gateway's receivers made of them tells a door that did not send from frames that did not get through.
    # Each receiver by its name in the site.
    lost_doors_frames: dict[str, list[Transmission]] = field(default_factory=dict)
    elapsed_s: float = 0
    interrupted: signal.Signals | None = None  # the signal that stopped the soak before its end

    @property
    def lost(self) -> list[Presentation]:
        """The badges read and never published; none are known lost in an interrupted soak, which did not
        wait for the check-ins on their way."""
        return [] if self.interrupted else self.unpublished

    def table(self) -> str:
        errors = sorted(self.time_errors_s)
        p50 = statistics.median(errors) if errors else float("nan")
        p99 = errors[min(len(errors) - 1, int(len(errors) * 0.99))] if errors else float("nan")
        faults = ", ".join(f"{count} {kind}" for kind, count in self.faults.items()) or "none"
        header = (
            "presented",
            "unread",
            "published",
            "not yet published" if self.interrupted else "lost",
            "duplicates",
            "copies",
            "time error p50 / p99",
            "bound times",
            "frames on air",
            "collisions",
        )
        values = (
            self.presented,
            len(self.unread),
            self.published,
            len(self.unpublished),
            self.duplicates,
            self.copies,
            f"{p50:.2f} s / {p99:.2f} s",
            f"{self.bound_times} ({self.bounds_broken} broken)" if self.bounds_broken else self.bound_times,
            self.medium.get("sent", 0),
            self.medium.get("collided", 0),
        )
        widths = [max(len(str(h)), len(str(v))) for h, v in zip(header, values, strict=True)]
        interrupted = f"; interrupted by {self.interrupted.name}: what it saw until then" if self.interrupted else ""
        lines = [
            f"faults: {faults}; {self.elapsed_s / 60:.1f} min{interrupted}",
            "  ".join(f"{h:>{w}}" for h, w in zip(header, widths, strict=True)),
            "  ".join(f"{v!s:>{w}}" for v, w in zip(values, widths, strict=True)),
        ]
        for missing in self.lost[:10]:
            lines.append(f"lost: badge {missing.token} at {missing.door}, read {time.ctime(missing.at)}")
        for door, frames in self.lost_doors_frames.items():
            first_lost = min(p.at for p in self.lost if p.door == door)
            fates = Counter(fate for frame in frames for fate in frame.fates.values())
            lines.append(
                f"{door} sent {len(frames)} frames in the {LOST_FRAMES_S // 60} min after its first lost check-in was"
                f" read ({time.strftime('%H:%M:%S', time.localtime(first_lost))}); receptions: "
                + (", ".join(f"{count} {fate or 'receiver sending'}" for fate, count in fates.most_common()) or "none")
            )
            for frame in frames[:LOST_FRAMES_SHOWN]:
                heard = ", ".join(f"{receiver} {fate or 'sending'}" for receiver, fate in frame.fates.items())
                at = time.strftime("%H:%M:%S", time.localtime(frame.at))
                lines.append(f"  {at}  {frame.airtime_s * 1000:4.0f} ms  {heard}")
        for visitor in self.unread[:10]:
            lines.append(f"unread: badge {visitor.token} at {visitor.door}, held from {time.ctime(visitor.at)}")
        return "\n".join(lines)


def run_soak(work: Path, options: SoakOptions, say: Callable[[str], None] = print) -> SoakReport:
    """Run the soak in `work` and return its report; `say` gets progress lines."""
    doors = [
        NodeSpec(300 + i, f"door-{i}", nfc="pn532", direction=("in", "out")[i % 2], status_s=600)
        for i in range(options.doors)
    ]
    room = NodeSpec(400, "room", sensors=("bme280",), telemetry_s=60, status_s=600)
    badge_key = derive_badge_key(TEST_MASTER_KEY)
    rng = random.Random(options.seed)
    started = time.monotonic()
    with VirtualSite(work, [*doors, room], radio=RADIO, seed=options.seed, concentrator=options.concentrator) as site:
        site.medium.keep_transmissions()
        mqtt = MqttLog(site.mqtt_port, "borne/+/+/checkin", session="soak").start()
        names = [door.name for door in doors]
        visits = _Visits(site, names, options.checkins, badge_key, options.visitor_every_s, options.seed)
        faults: Counter[str] = Counter()
        try:
            schedule = _schedule(options, rng)
            visitors = [threading.Thread(target=visits.run, args=(door,), daemon=True) for door in visits.doors]
            visits.open_gate(schedule[0][0] if schedule else options.checkins)
            for thread in visitors:
                thread.start()
            next_progress = time.monotonic()
            while any(thread.is_alive() for thread in visitors):
                if schedule and visits.count >= schedule[0][0]:
                    _, kind = schedule.pop(0)
                    say(f"{visits.count}/{options.checkins} presented: {kind}")
                    visits.open_gate(schedule[0][0] if schedule else options.checkins)
                    faults[kind] += 1  # once begun: an interrupted soak's table counts the fault it stopped in
                    _inject(site, visits, kind, options, rng)
                if time.monotonic() >= next_progress:
                    say(f"{visits.count}/{options.checkins} presented, {visits.progress(mqtt.on('checkin'))}")
                    next_progress = time.monotonic() + 30
                time.sleep(0.2)
            if visits.failure is not None:
                raise visits.failure
            say(f"all {visits.count} presented; waiting for the last check-ins to be published")
            tokens = {p.token for p in visits.presented}
            deadline = time.monotonic() + DRAIN_S
            next_progress = time.monotonic() + 30
            while time.monotonic() < deadline and not tokens <= {m["badge_token"] for m in mqtt.on("checkin")}:
                if time.monotonic() >= next_progress:
                    say(f"waiting for the last check-ins: {visits.progress(mqtt.on('checkin'))}")
                    next_progress = time.monotonic() + 30
                time.sleep(0.5)
            report = _report(visits, mqtt.on("checkin"), site.medium.stats, faults, started)
            report.lost_doors_frames = _lost_doors_frames(site, report.lost)
            return report
        except Interrupted as interruption:  # what was seen until now is the report
            visits.stop()
            report = _report(visits, mqtt.on("checkin"), site.medium.stats, faults, started, interruption.signal)
            say(f"interrupted by {interruption.signal.name}: the visitors stop; the site shuts down")
            return report
        finally:
            visits.stop()
            mqtt.stop()


class _Visits:
    """Visitors at the doors, one thread per door; a door can be paused for a fault.

    Visitors come in order of their numbers and wait at `gate` (the number of the next fault's turn)
    until the fault has begun: however fast the doors read, every fault of the schedule comes between
    the check-ins it was scheduled between, and check-ins go on while it lasts."""

    def __init__(
        self, site: VirtualSite, doors: list[str], total: int, badge_key: bytes, every_s: float, seed: int
    ) -> None:
        self.site = site
        self.every_s = every_s
        self.seed = seed
        self.doors = doors
        self.total = total
        self.badge_key = badge_key
        self.presented: list[Presentation] = []  # the badges a door read
        self.unread: list[Presentation] = []  # the badges no door read within READ_WAIT_S
        self.failure: BaseException | None = None
        self.locks = {door: threading.Lock() for door in doors}  # held while a badge is at the reader
        self.gate = total
        self._handed = 0  # numbers given to visitors so far
        self._lock = threading.Condition()

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.presented) + len(self.unread)

    def records(self) -> tuple[list[Presentation], list[Presentation]]:
        """The badges read and the visitors unread so far, as they are now (visitors may still be at the doors)."""
        with self._lock:
            return list(self.presented), list(self.unread)

    def run(self, door: str) -> None:
        # Visitors come at random, as people do: at each door a Poisson stream, `every_s` apart on
        # average. In step at every door (all starting together, every `every_s`), the doors would
        # send together each time and collide each time: the burst test_many_nodes takes on, not a
        # day's traffic.
        arrivals = random.Random(f"{self.seed}:{door}")
        try:
            time.sleep(arrivals.uniform(0, self.every_s))
            while (number := self._next()) is not None:
                uid = bytes([0x04]) + number.to_bytes(6, "big")  # a badge of its own for every visit
                token = badge_token(self.badge_key, uid).hex()
                came = time.time()
                with self.locks[door]:
                    read_at = self.site.present_badge_until_read(door, uid, READ_WAIT_S)
                    with self._lock:
                        if read_at is None:
                            self.unread.append(Presentation(door, token, came))
                        else:
                            self.presented.append(Presentation(door, token, read_at))
                    time.sleep(max(BETWEEN_VISITORS_S, came + arrivals.expovariate(1 / self.every_s) - time.time()))
        except BaseException as error:  # raised again by the soak's own thread
            self.failure = error
            self.stop()  # the others would wait at the gate for a count this visit never adds to

    def progress(self, published: list[dict]) -> str:
        """How many check-ins were published, and the door with the most still to be."""
        tokens = {message["badge_token"] for message in published}
        presented, _ = self.records()
        waiting = Counter(p.door for p in presented if p.token not in tokens)
        behind = f"; most waiting: {waiting.most_common(1)[0][0]} ({waiting.most_common(1)[0][1]})" if waiting else ""
        return f"{len(tokens)} published{behind}"

    def open_gate(self, number: int) -> None:
        """Let visitors through up to `number` (not included)."""
        with self._lock:
            self.gate = min(number, self.total)
            self._lock.notify_all()

    def stop(self) -> None:
        """No visitor after the ones at the doors now."""
        with self._lock:
            self.total = self.gate = self._handed
            self._lock.notify_all()

    def _next(self) -> int | None:
        with self._lock:
            self._lock.wait_for(lambda: self._handed < self.gate or self._handed >= self.total)
            if self._handed >= self.total:  # stop() ends the run, a failed visit's too
                return None
            self._handed += 1
            return self._handed - 1


def _schedule(options: SoakOptions, rng: random.Random) -> list[tuple[int, str]]:
    """(presented count, fault) in order: every kind the same number of times, spread over the run."""
    per_kind = options.faults_per_kind or max(1, options.checkins // 1000)
    kinds = [kind for _ in range(per_kind) for kind in FAULTS]
    rng.shuffle(kinds)
    step = options.checkins / (len(kinds) + 1)
    return [(round(step * (i + 1)), kind) for i, kind in enumerate(kinds)]


def _inject(site: VirtualSite, visits: _Visits, kind: str, options: SoakOptions, rng: random.Random) -> None:
    if kind == "broker restart":
        site.broker.stop()
        time.sleep(5)
        site.broker.start()
    elif kind == "daemon SIGKILL":
        assert site.gateway is not None
        site.gateway.kill()
        site.gateway.wait()
        site.gateway = None
        time.sleep(2)  # systemd's RestartSec
        site.start_gateway()
    elif kind == "bridge unplugged":
        bridge = site.boards["bridge"]
        bridge.close()  # its USB power and its serial port go together
        time.sleep(5)
        bridge.start()
    elif kind == "gateway outage":
        site.stop_gateway()
        time.sleep(options.outage_s)
        site.start_gateway()
    elif kind == "door power cut":
        door = rng.choice(visits.doors)
        with visits.locks[door]:  # between two visitors: a badge at the reader when power goes is not read
            site.cut_power(door)
            time.sleep(3)
            site.restore_power(door)
    else:
        raise ValueError(f"unknown fault {kind!r}")


def _report(
    visits: _Visits,
    published: list[dict],
    medium: dict[str, int],
    faults: Counter[str],
    started: float,
    interrupted: signal.Signals | None = None,
) -> SoakReport:
    event_ids = Counter(message["event_id"] for message in published)
    first_of: dict[str, dict] = {}  # each event id's first delivery
    for message in published:
        first_of.setdefault(message["event_id"], message)
    by_token: dict[str, list[dict]] = {}
    for message in first_of.values():
        by_token.setdefault(message["badge_token"], []).append(message)
    presented, unread = visits.records()
    unpublished = [p for p in presented if p.token not in by_token]
    # A time that is a bound (the check-in waited across its door's reboot) says "at this time or
    # earlier": it has no error to measure, only a promise to check.
    firsts = [(p, by_token[p.token][0]) for p in presented if p.token in by_token]  # the first event id's
    errors = [abs(_unix(m["time"]) - p.at) for p, m in firsts if not m["time_is_bound"]]
    bounds = [(p, m) for p, m in firsts if m["time_is_bound"]]
    return SoakReport(
        presented=len(presented),
        unread=unread,
        published=len(by_token),
        unpublished=unpublished,
        duplicates=sum(len(messages) - 1 for messages in by_token.values()),
        copies=sum(count - 1 for count in event_ids.values()),
        time_errors_s=errors,
        bound_times=len(bounds),
        bounds_broken=sum(1 for p, m in bounds if _unix(m["time"]) < p.at - 1),
        medium=medium,
        faults=faults,
        elapsed_s=time.monotonic() - started,
        interrupted=interrupted,
    )


def _lost_doors_frames(site: VirtualSite, lost: list[Presentation]) -> dict[str, list[Transmission]]:
    names: dict[object, str] = {board: name for name, board in site.boards.items()}
    frames = {}
    for door in sorted({p.door for p in lost}):
        since = min(p.at for p in lost if p.door == door)
        frames[door] = [
            replace(sent, fates={names.get(r, str(r)): fate for r, fate in sent.fates.items()})
            for sent in site.medium.transmissions(site.boards[door])
            if since <= sent.at < since + LOST_FRAMES_S
        ]
    return frames


def _unix(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@contextlib.contextmanager
def _interrupted_by_signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise Interrupted in the main thread meanwhile. SIGINT too where it was
    ignored (a soak started in the background of a script): whoever sends it means the soak to stop."""

    def interrupt(signum: int, frame: object) -> None:
        raise Interrupted(signum)

    previous = {number: signal.signal(number, interrupt) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def main(work: Path, options: SoakOptions) -> int:
    """Run the soak, print its table; 1 if a check-in was lost or duplicated, or a badge never read;
    128 + the signal's number if SIGINT or SIGTERM stopped it."""
    try:
        with _interrupted_by_signals():
            report = run_soak(work, options, say=lambda text: print(f"{time.strftime('%H:%M:%S')}  {text}", flush=True))
    except KeyboardInterrupt as interruption:  # while the site started, or again while it shut down
        stopped = interruption.signal if isinstance(interruption, Interrupted) else signal.SIGINT
        print(
            f"soak interrupted by {stopped.name}: no report (the site was starting, or shutting down after "
            "an earlier interruption)",
            file=sys.stderr,
        )
        return 128 + stopped
    print(report.table())
    if report.interrupted:
        print(
            f"soak interrupted by {report.interrupted.name} after {report.presented + len(report.unread)} of "
            f"{options.checkins} visitors: {len(report.unpublished)} check-ins read were not yet published "
            "(on their way, not lost); run it to its end for what a day of faults costs",
            file=sys.stderr,
        )
        return 128 + report.interrupted
    if report.lost or report.duplicates or report.bounds_broken:
        print("soak failed: check-ins were lost or duplicated, or published later than a bound", file=sys.stderr)
        return 1
    if report.unread:
        print(
            f"soak failed: no door read {len(report.unread)} badges within {READ_WAIT_S} s (the lines above say where"
            " and when: a door off, booting, or whose reader did not answer)",
            file=sys.stderr,
        )
        return 1
    return 0
