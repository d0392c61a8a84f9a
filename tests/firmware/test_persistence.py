"""What the node keeps through resets and power cuts, run by the real MicroPython VM on the virtual
board: the frame counter (borne/counter.py), the check-in queue and its numbers
(borne/checkin_queue.py), and the retry delays (borne/backoff.py).

The firmware and persistence_runner.py are copied to a board once with mpremote; each test boots
a board of its own over a copy of that flash, so NVS and files start empty.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest

from payload_codec import CodecError, open_frame
from payload_codec.crypto import DeviceKeys
from simulator.virtual_board import VirtualBoard
from tests.firmware.conftest import deploy, require_vm

RUNNER = Path(__file__).with_name("persistence_runner.py")
STEP = 64  # borne.counter.STEP
RECORD = 24  # bytes of a journal record, borne.checkin_queue
COMPACT_AFTER = 512  # borne.checkin_queue.COMPACT_AFTER
BLOCK, PARTITION_BLOCKS = 4096, 512  # the virtual flash (flash.mjs): an ESP32's 2 MiB littlefs partition
OPEN = "from persistence_runner import *\n"


@pytest.fixture(scope="session")
def deployed_flash(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A board's flash holding `borne/` and the runner, copied there by the real mpremote."""
    require_vm("firmware tests")
    work = tmp_path_factory.mktemp("persistence_deploy")
    with VirtualBoard(work / "tty", work / "flash") as board:
        done = deploy(board, work, "+", "fs", "cp", str(RUNNER), ":")
    assert done.returncode == 0, done.stdout + done.stderr
    return work / "flash"


@pytest.fixture
def board(deployed_flash: Path, tmp_path: Path) -> Iterator[VirtualBoard]:
    flash = tmp_path / "flash"
    shutil.copytree(deployed_flash, flash)
    with VirtualBoard(tmp_path / "tty", flash) as vb:
        yield vb


def answer(board: VirtualBoard, code: str, **kwargs) -> dict:
    """Run `code` on the board after importing the runner; the JSON of its last `J` line."""
    output = board.exec(OPEN + code, **kwargs)
    lines = [line for line in output.splitlines() if line.startswith("J ")]
    assert lines, output
    return json.loads(lines[-1][2:])


def take_counters(board: VirtualBoard, count: int, *, soft_reset: bool = False) -> list[int]:
    code = f"from borne.counter import FrameCounter\nc = FrameCounter()\nprint('J', [c.next() for _ in range({count})])"
    output = board.exec(code, soft_reset=soft_reset)
    return json.loads(output.split("J ", 1)[1])


# The frame counter.


def test_counters_strictly_increase_across_soft_resets_resets_and_power_cycles(board: VirtualBoard) -> None:
    rng = random.Random(2024)
    cuts = sorted(rng.sample(range(1, 100), 10))
    used: list[int] = []
    soft = False
    for index, (start, end) in enumerate(zip([0, *cuts], [*cuts, 100], strict=True)):
        used += take_counters(board, end - start, soft_reset=soft)
        soft = False
        kind = index % 3
        if kind == 0:
            soft = True  # the next exec soft-resets first, as mpremote does
        elif kind == 1:
            board.reset()
        else:
            board.power_cycle()
    assert len(used) == 100
    assert all(a < b for a, b in pairwise(used))
    assert max(b - a for a, b in pairwise(used)) <= STEP  # a reboot skips at most STEP


def test_the_counter_commits_to_nvs_once_every_step_frames(board: VirtualBoard) -> None:
    code = (
        "from borne.counter import FrameCounter\nc = FrameCounter()\nn = [0]\ncommit = c._nvs.commit\n"
        "def counting():\n    n[0] += 1\n    commit()\n"
        "c._nvs.commit = counting\nused = [c.next() for _ in range(200)]\nprint('J', n[0], used[-1])"
    )
    commits, last = map(int, board.exec(code).split("J ", 1)[1].split())
    assert (commits, last) == (4, 199)  # at 0, 64, 128 and 192


def test_a_counter_is_never_reused_when_power_is_cut_between_the_nvs_write_and_its_commit(
    board: VirtualBoard,
) -> None:
    last_used = take_counters(board, 64)[-1]  # `c` stays in the VM: its next() must commit a new bound
    with pytest.raises(TimeoutError):
        board.exec("def hang():\n    while True:\n        pass\nc._nvs.commit = hang\nc.next()", timeout=3)
    board.power_cycle()  # in the middle of commit(): the new bound was written, not committed
    after = take_counters(board, 3)
    assert last_used == 63
    assert after[0] > last_used and after == sorted(set(after))


def test_a_refused_commit_returns_no_counter_and_loses_none(board: VirtualBoard) -> None:
    code = (
        "from borne.counter import FrameCounter\nc = FrameCounter()\nused = [c.next() for _ in range(64)]\n"
        "def fail():\n    raise OSError(-1, 'ESP_FAIL')\n"
        "c._nvs.commit = fail\n"
        "try:\n    used.append(c.next())\nexcept OSError:\n    pass\nprint('J', used[-1])"
    )
    last_used = int(board.exec(code).split("J ", 1)[1])
    board.power_cycle()
    assert last_used == 63 and take_counters(board, 1) == [64]


def test_the_last_accepted_downlink_counter_survives_a_power_cycle(board: VirtualBoard) -> None:
    code = "from borne.counter import FrameCounter\nc = FrameCounter()\nprint('J', c.downlink)\n"
    assert board.exec(code + "c.accept_downlink(70000)").split("J ", 1)[1].strip() == "None"
    board.power_cycle()
    assert board.exec(code).split("J ", 1)[1].strip() == "70000"


# The check-in queue.


def test_the_queue_keeps_every_unacknowledged_event_across_power_cycles(board: VirtualBoard) -> None:
    rng = random.Random(7)
    model: list[int] = []
    pushed = 0
    code = "try:\n    q\nexcept NameError:\n    q = queue(64)\n"
    for _ in range(40):
        action = rng.choice(("push", "push", "ack", "power"))
        if action == "power":
            board.power_cycle()
            continue
        if action == "push":
            count = rng.randint(1, 4)
            state = answer(board, code + f"push(q, {pushed}, {count})\nreport(q)")
            model += range(pushed, pushed + count)
            pushed += count
        else:
            count = rng.randint(0, 3)
            state = answer(board, code + f"ack(q, {count})\nreport(q)")
            del model[:count]
        assert state["events"] == model
    board.power_cycle()
    state = answer(board, "report(queue(64))")
    assert state["events"] == model and state["dropped"] == 0
    assert state["tags"] == [i & 0xFF for i in model]


def test_a_torn_last_record_loses_at_most_that_event(board: VirtualBoard) -> None:
    answer(board, "q = queue()\npush(q, 0, 5)\nreport(q)")
    board.exec("f = open('/q.log', 'ab')\nf.write(b'P\\x05\\x00\\x00\\x00\\x00\\x05\\x00\\x00')\nf.close()")
    board.power_cycle()
    assert answer(board, "q = queue()\nreport(q)")["events"] == [0, 1, 2, 3, 4]
    answer(board, "push(q, 5, 2)\nreport(q)")  # appended after the torn bytes were cleared away
    board.power_cycle()
    assert answer(board, "report(queue())")["events"] == [0, 1, 2, 3, 4, 5, 6]


def test_a_power_cut_in_the_middle_of_a_journal_write_loses_only_that_event(board: VirtualBoard) -> None:
    answer(board, "q = queue()\npush(q, 0, 4)\nreport(q)")
    code = (
        "import borne.checkin_queue as m\nreal_open = open\n"
        "class Torn:\n"
        "    def __init__(self, f):\n        self.f = f\n"
        "    def __enter__(self):\n        return self\n"
        "    def __exit__(self, *exc):\n        self.f.close()\n"
        "    def write(self, data):\n        self.f.write(bytes(data)[:10])\n"
        "        while True:\n            pass\n"
        "m.open = lambda path, mode: Torn(real_open(path, mode))\n"
        "push(q, 4, 1)\n"
    )
    with pytest.raises(TimeoutError):
        board.exec(OPEN + code, timeout=3)
    board.power_cycle()  # 10 of the record's 24 bytes reached the flash
    assert (board.flash / "q.log").stat().st_size % RECORD == 10
    assert answer(board, "q = queue()\nreport(q)")["events"] == [0, 1, 2, 3]
    answer(board, "push(q, 5, 1)\nreport(q)")
    board.power_cycle()
    assert answer(board, "report(queue())")["events"] == [0, 1, 2, 3, 5]


def test_a_damaged_record_loses_only_its_event(board: VirtualBoard) -> None:
    answer(board, "q = queue()\npush(q, 0, 6)\nreport(q)")
    log = board.flash / "q.log"
    data = bytearray(log.read_bytes())
    data[4 * RECORD + 8] ^= 0xFF  # the third push (record 0 is the first boot, 1 the numbers' reservation)
    log.write_bytes(bytes(data))
    board.power_cycle()
    state = answer(board, "q = queue()\nreport(q)")
    assert state["events"] == [0, 1, 3, 4, 5]
    answer(board, "push(q, 6, 1)\nreport(q)")
    board.power_cycle()
    assert answer(board, "report(queue())")["events"] == [0, 1, 3, 4, 5, 6]


def test_a_number_whose_record_is_damaged_is_never_given_again(board: VirtualBoard) -> None:
    given = answer(board, "q = queue()\npush(q, 0, 5)\nreport(q)")["numbers"]
    log = board.flash / "q.log"
    data = bytearray(log.read_bytes())
    data[-RECORD + 8] ^= 0xFF  # the last record: the push of number 4, which a frame may have carried
    log.write_bytes(bytes(data))
    board.power_cycle()
    state = answer(board, "q = queue()\npush(q, 5, 1)\nreport(q)")
    assert state["events"] == [0, 1, 2, 3, 5]
    assert state["numbers"][-1] not in given
    board.power_cycle()  # the numbers go on from there, whole records again
    assert answer(board, "q = queue()\npush(q, 6, 1)\nreport(q)")["numbers"][-1] == state["numbers"][-1] + 1


def test_a_number_is_never_given_again_when_a_reservation_and_the_push_after_it_are_damaged(
    board: VirtualBoard,
) -> None:
    # Numbers 0-63 under the first reservation; number 64 needs a second one, written just before its push.
    given = answer(board, f"q = queue()\npush(q, 0, {STEP + 1})\nreport(q)")["numbers"]
    log = board.flash / "q.log"
    data = bytearray(log.read_bytes())
    data[-2 * RECORD + 8] ^= 0xFF  # the second reservation
    data[-RECORD + 8] ^= 0xFF  # the push of number 64, which a frame may have carried
    log.write_bytes(bytes(data))
    board.power_cycle()
    state = answer(board, f"q = queue()\npush(q, {STEP + 1}, 1)\nreport(q)")
    assert state["events"][-2:] == [STEP - 1, STEP + 1]  # event 64 is lost with its record
    assert state["numbers"][-1] not in given


def test_a_torn_record_the_full_flash_cannot_compact_away_loses_no_later_record(board: VirtualBoard) -> None:
    given = answer(board, "q = queue()\npush(q, 0, 4)\nreport(q)")["numbers"]
    with (board.flash / "q.log").open("ab") as log:
        log.write(b"P\x04\x00\x00\x00\x00\x04\x00\x00\x00")  # a push cut by a power cut
    (board.flash / "photos.bin").write_bytes(bytes(PARTITION_BLOCKS * BLOCK))  # another program's files
    board.power_cycle()
    state = answer(board, "q = queue()\npush(q, 4, 2)\nreport(q, journal_errors=q.journal_errors)")
    assert state["journal_errors"] >= 1  # the journal could not be rewritten without the torn bytes
    given += state["numbers"][-2:]
    board.power_cycle()
    state = answer(board, "q = queue()\npush(q, 6, 1)\nreport(q)")
    assert state["events"] == [0, 1, 2, 3, 4, 5, 6]  # the records after the torn one read whole
    assert state["numbers"][-1] not in given


def test_a_full_queue_evicts_the_oldest_event_and_counts_it(board: VirtualBoard) -> None:
    state = answer(board, "q = queue(8)\npush(q, 0, 12)\nreport(q)")
    assert (state["depth"], state["dropped"], state["events"]) == (8, 4, list(range(4, 12)))
    board.power_cycle()
    state = answer(board, "report(queue(8))")
    assert (state["depth"], state["dropped"], state["events"]) == (8, 4, list(range(4, 12)))


def test_numbers_follow_on_through_evictions_acks_and_power_cycles(board: VirtualBoard) -> None:
    state = answer(board, "q = queue(8)\npush(q, 0, 12)\nack(q, 3)\nreport(q)")
    assert (state["numbers"], state["next_number"]) == (list(range(7, 12)), 12)
    board.power_cycle()
    state = answer(board, "q = queue(8)\npush(q, 12, 1)\nreport(q)")
    assert state["numbers"] == list(range(7, 13)) and state["events"] == list(range(7, 13))


def test_a_number_is_never_given_twice_even_once_every_check_in_is_acked(board: VirtualBoard) -> None:
    answer(board, "q = queue()\npush(q, 0, 5)\nack(q, 5)\nreport(q)")
    board.power_cycle()
    state = answer(board, "q = queue()\npush(q, 5, 1)\nreport(q)")
    assert state["numbers"] == [5]
    # A compaction rewrites the journal as its head: the next number is in it.
    state = answer(board, "ack(q, 1)\nq._compact()\nreport(q)")
    assert (state["depth"], state["next_number"]) == (0, 6)
    board.power_cycle()
    assert answer(board, "q = queue()\npush(q, 6, 1)\nreport(q)")["numbers"] == [6]


def test_a_batch_stops_at_a_number_lost_to_a_damaged_record(board: VirtualBoard) -> None:
    answer(board, "q = queue()\npush(q, 0, 4)\nreport(q)")
    log = board.flash / "q.log"
    data = bytearray(log.read_bytes())
    data[3 * RECORD + 8] ^= 0xFF  # the push of number 1 (record 0 is the first boot, 1 the numbers' reservation)
    log.write_bytes(bytes(data))
    board.power_cycle()
    state = answer(board, "q = queue()\nreport(q)")
    # A frame says "from number 0, consecutively": number 2 must not travel as number 1.
    assert (state["numbers"], state["events"], state["batched"]) == ([0, 2, 3], [0, 2, 3], 1)
    state = answer(board, "ack(q, 1)\nreport(q)")
    assert (state["numbers"], state["events"]) == ([2, 3], [2, 3])


def test_one_event_appends_one_record_and_the_journal_stays_bounded(board: VirtualBoard) -> None:
    log = board.flash / "q.log"
    answer(board, "q = queue()\npush(q, 0, 1)\nreport(q)")
    before = log.stat().st_size
    answer(board, "push(q, 1, 1)\nreport(q)")
    assert log.stat().st_size - before == RECORD
    board.exec("import os\nsizes = []")
    # 300 rounds in execs of 50: the VM collects garbage between calls only, a board whenever it must.
    for first in range(0, 300, 50):
        board.exec(
            f"for i in range({first}, {first + 50}):\n"
            "    push(q, 2 + 3 * i, 3)\n    ack(q, 3)\n    sizes.append(os.stat('/q.log')[6])\n",
            timeout=60,
        )
    sizes = answer(board, "report(q, sizes=sizes)")
    assert sizes["events"] == [900, 901]  # first in, first out
    assert max(sizes["sizes"]) <= (COMPACT_AFTER + 1) * RECORD


def test_a_compaction_of_a_full_queue_keeps_every_event_and_allocates_little(board: VirtualBoard) -> None:
    # A compaction writes up to 128 events in one call (at a boot, or after COMPACT_AFTER records), and this
    # VM collects garbage only as a call returns: the events' bytes are copied, and nothing is allocated
    # per event but its record's CRC (an int past 30 bits, half of the time). Unpacking and slicing each
    # event allocated about 90 bytes.
    answer(board, "q = queue(128)\npush(q, 10**6, 128, now_s=50)\nreport(q)", timeout=60)
    board.exec("import gc; gc.collect()")
    used = answer(board, "import gc\na = gc.mem_alloc()\nq._compact()\nprint('J', gc.mem_alloc() - a)")
    assert used < 128 * 32
    after = answer(board, "report(queue(128), now_s=10)")  # a boot: the compacted journal replayed
    assert after["events"] == list(range(10**6, 10**6 + 128))
    assert after["tags"] == [i & 0xFF for i in range(10**6, 10**6 + 128)]
    assert after["numbers"] == list(range(128))
    assert after["ages"] == [10] * 128 and after["exact"] == [False] * 128  # a lower bound: the time off left out


def test_a_retry_is_a_new_frame_with_the_same_numbers_and_the_ages_of_its_sending(board: VirtualBoard) -> None:
    keys = DeviceKeys(bytes(range(16)), bytes(range(16, 32)))
    send = (
        "from borne.crypto import DeviceKeys\nfrom borne.frame import Uplink\nfrom borne.counter import FrameCounter\n"
        "up = Uplink(7, DeviceKeys(bytes(range(16)), bytes(range(16, 32))))\nc = FrameCounter()\n"
        "q = queue()\npush(q, 0, 3, now_s=2)\n"
        "def build(now_s):\n    n = q.batch(up.add_checkin, 16, now_s)\n"
        "    return hexlify(up.seal_checkins(c.next(), q.first_number)).decode()\n"
        "print('J', json.dumps([build(9), build(70)]))"
    )
    first, retry = (bytes.fromhex(frame) for frame in answer(board, send))
    opened = [open_frame(frame, keys, None) for frame in (first, retry)]
    assert not any(isinstance(frame, CodecError) for frame in opened), opened
    assert opened[1].counter > opened[0].counter
    for frame, age in zip(opened, (7, 68), strict=True):
        assert frame.message.first_number16 == 0
        assert [c.age_s for c in frame.message.checkins] == [age] * 3
        assert not any(c.age_is_bound for c in frame.message.checkins)


def test_ages_are_exact_within_a_boot_and_a_lower_bound_after_a_power_cut(board: VirtualBoard) -> None:
    state = answer(board, "q = queue()\npush(q, 0, 1, now_s=10)\nack(q, 0, now_s=40)\nreport(q, now_s=25)")
    assert state["ages"] == [15] and state["exact"] == [True]
    board.power_cycle()
    state = answer(board, "q = queue()\npush(q, 1, 1, now_s=6)\nreport(q, now_s=8)")
    # Event 0: 30 s of the last boot known (up to its last record at 40 s), 8 s of this one.
    assert state["ages"] == [38, 2] and state["exact"] == [False, True]


# Retry delays.


def test_backoff_delays_stay_within_their_ceiling_which_doubles_up_to_the_cap(board: VirtualBoard) -> None:
    code = (
        "import random\nfrom borne import backoff\nrandom.seed(1)\nrows = []\n"
        "for attempt in range(14):\n"
        "    d = [backoff.delay_ms(attempt) for _ in range(200)]\n"
        "    rows.append([backoff.ceiling_ms(attempt), min(d), max(d), sum(d) // len(d),"
        " all(isinstance(x, int) for x in d)])\n"
        "print('J', json.dumps(rows))"
    )
    rows = json.loads(board.exec(OPEN + code, timeout=60).split("J ", 1)[1])
    ceilings = [row[0] for row in rows]
    assert ceilings == [min(2000 << attempt, 600_000) for attempt in range(14)]
    for ceiling, low, high, mean, integers in rows:
        assert integers and 0 <= low <= high <= ceiling
        assert 0.35 * ceiling <= mean <= 0.65 * ceiling  # uniform: the mean grows with the ceiling
    means = [row[3] for row in rows]
    assert all(a < b for a, b in pairwise(means[:9]))
