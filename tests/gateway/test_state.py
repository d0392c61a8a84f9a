"""The durable state: counters and outbox commit together, and the outbox is bounded by policy."""

import sqlite3

import pytest

from gateway_daemon.state import GatewayState, OutboxEvent, StateError
from payload_codec import ALL_SEEN


def event(n: int, kind: str) -> OutboxEvent:
    return OutboxEvent(f"1:{n}", kind, f"borne/s/d/{kind}", "{}")


def accept(state: GatewayState, counter: int, *events: OutboxEvent) -> bool:
    return state.accept(1, counter, counter.to_bytes(4, "little"), list(events), seen_at=0.0, rssi_dbm=-90, snr_db=5)


def test_counter_and_events_are_stored_together_and_survive_reopening(tmp_path):
    state = GatewayState(tmp_path / "state.db")
    assert accept(state, 10, event(10, "checkin"))
    state.close()
    reopened = GatewayState(tmp_path / "state.db")
    assert reopened.last_counter(1) == 10
    assert [e.event_id for e in reopened.pending()] == ["1:10"]


def test_an_older_counter_is_not_accepted_even_by_a_second_process(tmp_path):
    first, second = GatewayState(tmp_path / "state.db"), GatewayState(tmp_path / "state.db")
    assert accept(first, 10)
    assert not accept(second, 10, event(10, "telemetry"))
    assert second.depth() == 0


def test_delivered_events_leave_the_outbox_in_order(tmp_path):
    state = GatewayState(tmp_path / "state.db")
    for counter in range(1, 6):
        accept(state, counter, event(counter, "telemetry"))
    pending = state.pending(3)
    assert [e.event_id for e in pending] == ["1:1", "1:2", "1:3"]
    state.delivered(pending[0].seq)
    assert [e.event_id for e in state.pending(2)] == ["1:2", "1:3"]


def test_a_full_outbox_drops_telemetry_before_checkins_and_counts_it(tmp_path):
    state = GatewayState(tmp_path / "state.db", max_outbox=4)
    accept(state, 1, event(1, "checkin"))
    accept(state, 2, event(2, "telemetry"))
    accept(state, 3, event(3, "status"))
    accept(state, 4, event(4, "checkin"))
    accept(state, 5, event(5, "checkin"), event(50, "checkin"))
    assert sorted(e.event_id for e in state.pending()) == ["1:1", "1:4", "1:5", "1:50"]
    assert state.dropped() == {"outbox_full_telemetry": 1, "outbox_full_status": 1}
    accept(state, 6, event(6, "checkin"))
    assert state.dropped()["outbox_full_checkin"] == 1
    assert [e.event_id for e in state.pending()] == ["1:4", "1:5", "1:50", "1:6"]


def test_downlink_counters_are_never_reused(tmp_path):
    state = GatewayState(tmp_path / "state.db")
    accept(state, 1)
    assert [state.next_downlink_counter(1) for _ in range(3)] == [0, 1, 2]
    state.close()
    assert GatewayState(tmp_path / "state.db").next_downlink_counter(1) == 3


def test_lost_frames_are_estimated_from_counter_gaps(tmp_path):
    state = GatewayState(tmp_path / "state.db")
    for counter in (5, 6, 9, 10):
        accept(state, counter)
    (device,) = state.devices()
    assert (device.frames, device.lost_frames) == (4, 2)


def test_the_last_sixteen_accepted_frames_are_recognised_when_resent(tmp_path):
    state = GatewayState(tmp_path / "state.db")
    for counter in range(1, 21):
        accept(state, counter)
    frame = lambda counter: counter.to_bytes(4, "little")  # noqa: E731 (what `accept` stores)
    assert [state.accepted_counter(1, frame(c)) for c in (4, 5, 20)] == [None, 5, 20]


def test_a_late_frame_is_among_the_recent_frames_recognised_when_resent(tmp_path):
    state = GatewayState(tmp_path / "state.db")
    for counter in (1, *range(3, 19)):  # 16 frames after 1, then 2 arrives late
        accept(state, counter)
    assert accept(state, 2)
    assert state.accepted_counter(1, (2).to_bytes(4, "little")) == 2


def test_the_window_survives_reopening(tmp_path):
    state = GatewayState(tmp_path / "state.db")
    accept(state, 10)
    accept(state, 13)  # 11 and 12 not heard yet
    state.close()
    reopened = GatewayState(tmp_path / "state.db")
    assert reopened.window(1) == (13, ALL_SEEN & ~0b11)
    assert accept(reopened, 11)
    assert not accept(reopened, 11)
    assert not accept(reopened, 10)
    assert reopened.window(1) == (13, ALL_SEEN & ~0b01)  # only 12 still unheard


def test_a_counter_below_the_window_is_not_accepted_even_by_a_second_process(tmp_path):
    first, second = GatewayState(tmp_path / "state.db"), GatewayState(tmp_path / "state.db")
    assert accept(first, 1)
    assert accept(first, 100)
    assert accept(second, 36)
    assert not accept(first, 36)
    assert not accept(second, 35)


# The devices table as the first release created it, before the receive window.
OLD_DEVICES = """
CREATE TABLE devices (
    device_id INTEGER PRIMARY KEY,
    last_counter INTEGER NOT NULL,
    next_downlink_counter INTEGER NOT NULL DEFAULT 0,
    first_counter INTEGER NOT NULL,
    frames INTEGER NOT NULL DEFAULT 0,
    last_seen REAL,
    rssi_dbm REAL,
    snr_db REAL,
    battery_mv INTEGER
);
INSERT INTO devices (device_id, last_counter, next_downlink_counter, first_counter, frames)
VALUES (1, 50, 7, 1, 40);
"""


def test_a_state_file_from_before_the_window_opens_and_still_refuses_older_counters(tmp_path):
    old = sqlite3.connect(tmp_path / "state.db")
    old.executescript(OLD_DEVICES)
    old.close()
    state = GatewayState(tmp_path / "state.db")
    assert state.window(1) == (50, ALL_SEEN)
    assert not accept(state, 49)
    assert accept(state, 52, event(52, "telemetry"))
    assert accept(state, 51)
    assert state.next_downlink_counter(1) == 7
    (device,) = state.devices()
    assert (device.last_counter, device.frames) == (52, 42)


def test_a_moved_key_epoch_starts_the_device_counters_over_uplink_and_downlink(tmp_path):
    state = GatewayState(tmp_path / "state.db")
    assert state.follow_key_epochs({1: 0, 2: 0}) == []
    assert accept(state, 500)
    state.next_downlink_counter(1)
    assert state.follow_key_epochs({1: 0, 2: 0}) == []  # the same epochs: nothing moves
    assert state.follow_key_epochs({1: 1, 2: 0}) == [1]
    assert state.window(1) == (None, ALL_SEEN)
    assert accept(state, 0)
    assert state.next_downlink_counter(1) == 0
    assert state.follow_key_epochs({1: 1}) == []


def test_counters_from_before_key_epochs_belong_to_epoch_0(tmp_path):
    old = sqlite3.connect(tmp_path / "state.db")
    old.executescript(OLD_DEVICES)
    old.close()
    state = GatewayState(tmp_path / "state.db")
    assert state.follow_key_epochs({1: 0}) == []
    assert state.window(1) == (50, ALL_SEEN)
    assert state.follow_key_epochs({1: 1}) == [1]
    assert state.window(1) == (None, ALL_SEEN)


def checkin_event(number: int) -> OutboxEvent:
    return OutboxEvent(f"1:checkin:{number}", "checkin", "borne/s/d/checkin", "{}", checkin_number=number)


def test_check_in_numbers_are_marked_published_in_the_commit_of_their_frame(tmp_path):
    state = GatewayState(tmp_path / "state.db")
    assert accept(state, 10, checkin_event(4), checkin_event(5))
    assert not accept(state, 10, checkin_event(6))  # a refused frame marks nothing
    state.close()
    reopened = GatewayState(tmp_path / "state.db")
    assert reopened.last_checkin_number(1) == 5
    assert accept(reopened, 11, checkin_event(5), checkin_event(6))
    assert [e.event_id for e in reopened.pending()] == ["1:checkin:4", "1:checkin:5", "1:checkin:6"]


def test_a_check_in_number_below_the_window_counts_as_published(tmp_path):
    state = GatewayState(tmp_path / "state.db")
    accept(state, 1, checkin_event(100))
    accept(state, 2, checkin_event(102))  # 101 not heard yet: within the window, still publishable
    assert [e.checkin_number for e in state.unpublished(1, [checkin_event(n) for n in (30, 101, 102)])] == [101]


def test_the_check_ins_before_a_devices_first_one_heard_are_still_published(tmp_path):
    # The node's first check-in frame was lost on air; the next one, which carries the check-ins after
    # it, is heard first. The first frame's numbers come again in a later frame: they were never published.
    state = GatewayState(tmp_path / "state.db")
    accept(state, 1, checkin_event(1), checkin_event(2))
    assert [e.checkin_number for e in state.unpublished(1, [checkin_event(n) for n in (0, 1, 2, 3)])] == [0, 3]
    accept(state, 2, checkin_event(0))
    assert [e.event_id for e in state.pending()] == ["1:checkin:1", "1:checkin:2", "1:checkin:0"]
    assert state.unpublished(1, [checkin_event(0)]) == []


# The outbox as releases before MQTT 5's refusals created it, with an event waiting.
OLD_OUTBOX = """
CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at REAL NOT NULL
);
INSERT INTO outbox (event_id, kind, topic, payload, created_at) VALUES ('1:checkin:4', 'checkin', 't', '{}', 0);
"""


def test_an_event_the_broker_refused_is_held_until_its_time_or_released_and_an_old_outbox_holds_too(tmp_path):
    old = sqlite3.connect(tmp_path / "state.db")
    old.executescript(OLD_OUTBOX)
    old.close()
    state = GatewayState(tmp_path / "state.db")
    (waiting,) = state.pending()
    assert state.held() == (0, None)
    state.hold(waiting.seq, until=4102444800.0)  # 2100: not pending again before it, or a release
    assert state.pending() == [] and state.depth() == 1
    assert state.held() == (1, 4102444800.0)
    state.release_held()
    assert [e.event_id for e in state.pending()] == ["1:checkin:4"]
    state.hold(waiting.seq, until=1.0)  # a hold whose time has come
    assert [e.event_id for e in state.pending()] == ["1:checkin:4"]


def test_a_state_file_damaged_on_its_disk_is_refused_at_start_with_what_to_do(tmp_path):
    path = tmp_path / "state.db"
    state = GatewayState(path)
    for counter in range(1, 200):
        accept(state, counter, event(counter, "checkin"))
    state.close()
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4096] = bytes(range(256)) * 16  # a page the disk garbled, past the header
    path.write_bytes(bytes(data))
    with pytest.raises(StateError, match=rf"the state file {path} is damaged \(.*\): move it aside \(`mv {path} "):
        GatewayState(path)


def test_a_state_file_under_a_file_is_refused_at_start_with_what_to_do(tmp_path):
    (tmp_path / "not-a-folder").write_text("")
    with pytest.raises(StateError, match="cannot be opened for writing"):
        GatewayState(tmp_path / "not-a-folder" / "state.db")
