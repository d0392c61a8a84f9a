"""The node's check-in sending when its frames are heard but no ACK ever comes back (the gateway's
downlinks are lost): every queued check-in still goes out, not only those of the first frame; and
when only some are ACKed (a busy channel): an ACK for a frame past the oldest check-ins counts.

The real firmware's check-in task runs alone on a provisioned door node in the VM; a listener on
the radio medium hears its frames, and nobody answers them, or the node's send-and-wait-for-ACK is
given the gateway's answers in turn.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from boards.profiles import load_profile
from boards.provisioning import NodeOptions, build_config, secrets_from_master, stage
from payload_codec import CheckinBatch, CodecError, derive_device_keys, open_frame
from payload_codec.airtime import time_on_air_ms
from payload_codec.counter import WINDOW_SIZE
from payload_codec.schema import CHECKIN_HEAD_SIZE, CHECKIN_SIZE, ENVELOPE_SIZE, MAX_CHECKINS
from payload_codec.vectorgen import TEST_MASTER_KEY
from simulator.virtual_board import RadioMedium, VirtualBoard
from tests.firmware.conftest import require_vm, run_on

DEVICE = 7
KEYS = derive_device_keys(TEST_MASTER_KEY, DEVICE)
WAIT_S = 180  # for the frames counted: a loaded machine runs the VM slowly


class Heard:
    """The check-in frames heard on the medium, opened: (first number, tokens as integers) of each."""

    def __init__(self, medium: RadioMedium) -> None:
        self.frames: list[tuple[int, list[int]]] = []
        self._changed = threading.Condition()
        medium.add_listener(self._heard, name="listener")

    def _heard(self, payload: bytes, *_radio: object) -> None:
        frame = open_frame(payload, KEYS, None)
        if isinstance(frame, CodecError) or not isinstance(frame.message, CheckinBatch):
            return
        with self._changed:
            self.frames.append(opened(payload))
            self._changed.notify_all()

    def wait_for(self, count: int) -> list[tuple[int, list[int]]]:
        deadline = time.monotonic() + WAIT_S
        with self._changed:
            while len(self.frames) < count:
                left = deadline - time.monotonic()
                assert left > 0, f"{len(self.frames)} check-in frames heard, {count} expected"
                self._changed.wait(left)
            return self.frames[:count]


@pytest.fixture
def door(tmp_path: Path) -> Iterator[tuple[VirtualBoard, Heard]]:
    """A provisioned door node at SF7 (16 check-ins a frame), and what the air hears of it."""
    require_vm("check-in sending tests")
    config = build_config(
        load_profile("heltec_v2"),
        "node",
        "test",
        device_id=DEVICE,
        secrets=secrets_from_master(TEST_MASTER_KEY, DEVICE),
        options=NodeOptions(nfc="pn532"),
        radio={"sf": 7},
    )
    config["nfc"]["retry_max_s"] = 2  # the backoff's longest wait: retries within seconds
    stage(config, tmp_path / "flash")
    with RadioMedium() as medium, VirtualBoard(tmp_path / "tty", tmp_path / "flash", medium=medium) as board:
        yield board, Heard(medium)


def send_unacknowledged(board: VirtualBoard, count: int, answers: list[bool] | None = None) -> None:
    """Queue `count` check-ins (event i: token i) and start the node's check-in task alone. `answers`:
    whether the gateway ACKs each frame in turn (then none), given to the node's send-and-wait for an
    ACK in place of its radio; the frames it was handed meanwhile are in `sent`."""
    # The firmware that main.py started stops for the REPL. The modules are imported in a call of their
    # own: this VM collects garbage only as a call returns (an ESP32 collects when its heap is full).
    board.exec("import asyncio, json, struct\nfrom borne import config\nfrom borne.node import Node")
    board.exec(
        "node = Node(config.load())\n"
        f"for i in range({count}):\n    node.queue.push(0x45, struct.pack('<Q', i), 0)\n"
        f"answers = {answers!r}\n"
        "sent = []\n"
        "async def answered(frame, counter):\n"
        "    if answers:\n"
        "        sent.append(bytes(frame).hex())\n"
        "    return bool(answers) and answers.pop(0)\n"
        "if answers is not None:\n"
        "    node._send_for_ack = answered\n"
        "task = asyncio.create_task(node._checkins(node.queue))\n"
    )


def opened(frame: bytes) -> tuple[int, list[int]]:
    """(first number, tokens as integers) of a check-in frame."""
    opened = open_frame(frame, KEYS, None)
    assert not isinstance(opened, CodecError), opened
    assert isinstance(opened.message, CheckinBatch)
    return opened.message.first_number16, [int.from_bytes(c.badge_token, "little") for c in opened.message.checkins]


def numbers(frames: list[tuple[int, list[int]]]) -> list[int]:
    """Every number the frames carried, checking each is the check-in numbered so when read."""
    carried = []
    for first, tokens in frames:
        assert tokens == list(range(first, first + len(tokens)))
        carried += tokens
    return carried


def test_with_the_acks_lost_every_queued_checkin_goes_out_not_only_the_first_frames(door):
    board, heard = door
    queued = 2 * MAX_CHECKINS + 8
    send_unacknowledged(board, queued)
    frames = heard.wait_for(4)  # one turn over the queue takes 3 frames
    assert sorted(set(numbers(frames))) == list(range(queued))
    assert [first for first, _ in frames] == [0, 16, 32, 0]  # then from the oldest again


def test_the_frames_take_turns_only_over_the_numbers_the_gateway_still_tells_apart(door):
    board, heard = door
    send_unacknowledged(board, WINDOW_SIZE + 20)
    frames = heard.wait_for(WINDOW_SIZE // MAX_CHECKINS + 1)
    # Number 64 and above would make the gateway take the oldest, 0, for one published before.
    assert sorted(set(numbers(frames))) == list(range(WINDOW_SIZE))
    assert frames[-1][0] == 0


@pytest.mark.parametrize(
    ("answers", "firsts"),
    [
        # The oldest's frame lost, the next one ACKed, then the oldest's: the queue removes events in
        # order, so the second frame's go with the oldest's, and no frame carries them again.
        ([False, True, True, True], [0, 16, 0, 32]),
        # The oldest's lost twice: the frame after it skips the 16 the gateway has, and its ACK joins them.
        ([False, True, False, True, True], [0, 16, 0, 32, 0]),
    ],
    ids=["then the oldest ACKed", "the oldest lost again"],
)
def test_an_ack_for_a_frame_past_the_oldest_checkins_is_kept_until_those_before_it_are_acked(door, answers, firsts):
    # A busy channel, where some frames are ACKed and some not: every ACK counts, as the events of 3
    # frames go out in len(firsts) frames, where an ACK that did not start at the oldest used to count for nothing.
    board, _ = door
    send_unacknowledged(board, 3 * MAX_CHECKINS, answers=answers)
    deadline = time.monotonic() + WAIT_S
    while run_on(board, "answers"):
        sent = len(run_on(board, "sent"))
        assert time.monotonic() < deadline, f"{sent} check-in frames sent, {len(answers)} expected"
        time.sleep(0.2)
    frames = [opened(bytes.fromhex(frame)) for frame in run_on(board, "sent")]
    assert [first for first, _ in frames] == firsts
    assert sorted(set(numbers(frames))) == list(range(3 * MAX_CHECKINS))
    assert run_on(board, "node.queue.depth") == 0


FULL_FRAME = ENVELOPE_SIZE + CHECKIN_HEAD_SIZE + MAX_CHECKINS * CHECKIN_SIZE  # 297 ms at SF7
# Twice the time the 1 % sub-band's bucket takes to earn back a full frame at SF7 (it refills half the
# duty cycle: 5 µs of air per ms; borne/airtime.py): the wait under that ceiling averages once that time.
DUTY_FLOOR_MS = 2 * 2 * time_on_air_ms(FULL_FRAME, 7) * 1000 / 10


@pytest.mark.parametrize(
    ("read_at", "now_s", "ceiling_s"),
    [
        ([], 0, 600),  # nothing queued: nothing to lose
        (range(0, 5400, 600), 6000, 600),  # a quiet door: its 118 free slots last for days
        (range(0, 960, 15), 960, 240),  # 64 free slots at one visitor in 15 s: full in 960 s, 4 tries
        (range(0, 1800, 15), 1800, None),  # 8 free: full in 120 s, but tries no faster than the duty cycle's pace
        ([0] * 100, 3600, 252),  # a burst an hour ago: 28 free slots at one in 36 s
        (range(0, 960, 15), "reboot", 240),  # as the busy door, read before a reboot 15 s ago
    ],
    ids=["empty", "quiet door", "busy door", "nearly full", "burst then quiet", "after a reboot"],
)
def test_a_filling_queue_brings_the_retry_ceiling_under_the_time_it_takes_to_fill(door, read_at, now_s, ceiling_s):
    board, _ = door
    board.exec("import json\nfrom borne import config\nfrom borne.node import Node\nnode = Node(config.load())")
    board.exec(f"for at in {list(read_at)!r}:\n    node.queue.push(0x45, bytes(8), at)")
    if now_s == "reboot":  # the queue as the next boot reads it from its journal
        board.exec("from borne.checkin_queue import CheckinQueue\nnode.queue = CheckinQueue()")
        now_s = 15
    board.exec(f'node.config["nfc"]["retry_max_s"] = 600\nnode.uptime.seconds = lambda: {now_s}')
    ceiling_ms = run_on(board, f"node._retry_ceiling_ms(node.queue, {FULL_FRAME})")
    assert ceiling_ms == (pytest.approx(DUTY_FLOOR_MS, abs=2) if ceiling_s is None else ceiling_s * 1000)


def test_a_door_that_gets_no_ack_waits_under_the_ceiling_its_filling_queue_sets(door):
    # The backoff's own ceiling is nfc.retry_max_s (10 minutes) after 8 failures: with it, a door whose
    # gateway missed its last few tries waited that long while its queue filled, and evicted check-ins.
    board, _ = door
    board.exec(
        "import asyncio, json\nfrom borne import backoff, config\nfrom borne.node import Node\n"
        "node = Node(config.load())\n"
        'node.config["nfc"]["retry_max_s"] = 600\n'
        "for i in range(100):\n    node.queue.push(0x45, bytes(8), 0)\n"
        "node.uptime.seconds = lambda: 3600\n"  # a burst an hour ago: 28 free slots at one in 36 s
        "ceilings = []\n"
        "def recorded(attempt, cap_ms):\n    ceilings.append(cap_ms)\n    return 600_000\n"
        "backoff.delay_ms = recorded\n"
        "async def unanswered(frame, counter):\n    return False\n"
        "node._send_for_ack = unanswered\n"
        "task = asyncio.create_task(node._checkins(node.queue))\n"
    )
    deadline = time.monotonic() + WAIT_S
    while not run_on(board, "ceilings"):
        assert time.monotonic() < deadline, "the door never waited to try again"
        time.sleep(0.2)
    assert run_on(board, "ceilings") == [252_000]
