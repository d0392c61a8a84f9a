"""The node's check-in sending when its frames are heard but no ACK ever comes back (the gateway's
downlinks are lost): every queued check-in still goes out, not only those of the first frame.

The real firmware's check-in task runs alone on a provisioned door node in the VM; a listener on
the radio medium hears its frames, and nobody answers them.
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
from payload_codec.counter import WINDOW_SIZE
from payload_codec.schema import MAX_CHECKINS
from payload_codec.vectorgen import TEST_MASTER_KEY
from simulator.virtual_board import RadioMedium, VirtualBoard
from tests.firmware.conftest import require_vm

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
        tokens = [int.from_bytes(c.badge_token, "little") for c in frame.message.checkins]
        with self._changed:
            self.frames.append((frame.message.first_number16, tokens))
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


def send_unacknowledged(board: VirtualBoard, count: int) -> None:
    """Queue `count` check-ins (event i: token i) and start the node's check-in task alone."""
    # The firmware that main.py started stops for the REPL. The modules are imported in a call of their
    # own: this VM collects garbage only as a call returns (an ESP32 collects when its heap is full).
    board.exec("import asyncio, struct\nfrom borne import config\nfrom borne.node import Node")
    board.exec(
        "node = Node(config.load())\n"
        f"for i in range({count}):\n    node.queue.push(0x45, struct.pack('<Q', i), 0)\n"
        "task = asyncio.create_task(node._checkins(node.queue))\n"
    )


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
