"""Frame counters: 16 bits on air, 32 bits in the MIC, never accepted twice."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payload_codec import (
    ALL_SEEN,
    MAX_COUNTER_GAP,
    WINDOW_SIZE,
    CodecError,
    already_seen,
    resolve_counter,
    slide_window,
)


def test_first_frame_of_a_new_device_takes_the_low_bits():
    assert resolve_counter(None, 42) == 42


def test_next_counter_is_accepted():
    assert resolve_counter(41, 42) == 42


def test_counter_crossing_a_16_bit_boundary_is_resolved():
    assert resolve_counter(0x0001_FFFE, 0x0003) == 0x0002_0003


def test_same_counter_is_a_replay():
    assert resolve_counter(42, 42).reason == "replay"


def test_older_counter_is_a_replay():
    assert resolve_counter(0x0002_0005, 0xFFF0).reason == "replay"


def test_gap_up_to_the_limit_is_accepted_and_beyond_is_refused():
    assert resolve_counter(1000, 1000 + MAX_COUNTER_GAP) == 1000 + MAX_COUNTER_GAP
    assert resolve_counter(1000, 1000 + MAX_COUNTER_GAP + 1).reason == "counter_gap"


def test_exhausted_counter_is_refused():
    assert isinstance(resolve_counter(0xFFFF_FFFF, 0x0000), CodecError)


@given(st.integers(0, 0xFFFF_0000), st.integers(1, MAX_COUNTER_GAP))
def test_any_counter_within_the_gap_resolves_exactly(last, ahead):
    assert resolve_counter(last, (last + ahead) & 0xFFFF) == last + ahead


@given(st.integers(0, 0xFFFF_FFFF), st.integers(0, 0xFFFF))
def test_resolution_is_newer_or_an_error(last, counter16):
    result = resolve_counter(last, counter16)
    assert isinstance(result, CodecError) or last < result <= last + MAX_COUNTER_GAP


# --- the receive window (uplinks at the gateway) ---------------------------------------


def test_an_unseen_counter_just_below_the_top_resolves_below_not_a_wrap_ahead():
    assert resolve_counter(100, 90, seen_below=0) == 90


def test_a_late_counter_resolves_below_across_a_16_bit_boundary():
    assert resolve_counter(0x0001_0002, 0xFFF0, seen_below=0) == 0x0000_FFF0


def test_a_counter_the_window_marks_seen_is_a_replay():
    _, seen_below = slide_window(100, 0, 90)
    assert resolve_counter(100, 90, seen_below=seen_below).reason == "replay"
    assert resolve_counter(100, 91, seen_below=seen_below) == 91


def test_exactly_the_window_size_below_the_top_is_accepted_and_one_more_is_a_replay():
    assert resolve_counter(1000, 1000 - WINDOW_SIZE, seen_below=0) == 1000 - WINDOW_SIZE
    assert resolve_counter(1000, 1000 - WINDOW_SIZE - 1, seen_below=0).reason == "replay"


def test_the_top_itself_is_a_replay_whatever_the_window():
    assert resolve_counter(1000, 1000, seen_below=0).reason == "replay"


def test_the_window_never_reaches_below_counter_zero():
    assert resolve_counter(10, 0xFFF0, seen_below=0).reason == "replay"


def strict_rule(last: int, counter16: int) -> int | str:
    """The node's rule for downlinks (firmware/borne/frame.py): newer than `last`, within the gap."""
    ahead = (counter16 - last) & 0xFFFF
    if ahead == 0 or ahead > 0x8000:
        return "replay"
    if ahead > MAX_COUNTER_GAP:
        return "counter_gap"
    return "replay" if last + ahead > 0xFFFF_FFFF else last + ahead


@given(st.integers(0, 0xFFFF_FFFF), st.integers(0, 0xFFFF))
def test_a_full_window_is_the_nodes_rule_and_the_default(last, counter16):
    result = resolve_counter(last, counter16)
    assert (result.reason if isinstance(result, CodecError) else result) == strict_rule(last, counter16)


def test_a_first_counter_opens_a_full_window():
    assert slide_window(None, 0, 500) == (500, ALL_SEEN)


def test_sliding_by_more_than_the_window_forgets_everything_below():
    assert slide_window(100, ALL_SEEN, 100 + WINDOW_SIZE + 1) == (100 + WINDOW_SIZE + 1, 0)


def test_marking_a_counter_already_seen_is_a_bug():
    with pytest.raises(ValueError):
        slide_window(100, ALL_SEEN, 99)


@given(st.integers(0, 1000), st.lists(st.integers(-80, 80), max_size=60))
def test_the_window_accepts_each_counter_once_and_nothing_below_its_reach(first, steps):
    """Against a model that remembers every counter: refused iff seen, below the first counter
    accepted, or more than WINDOW_SIZE below the highest."""
    accepted = {first}
    last, seen_below = slide_window(None, 0, first)
    for step in steps:
        counter = last + step
        model_refuses = counter in accepted or counter < first or counter < max(accepted) - WINDOW_SIZE
        assert already_seen(last, seen_below, counter) == model_refuses
        if not model_refuses:
            assert resolve_counter(last, counter & 0xFFFF, seen_below=seen_below) == counter
            last, seen_below = slide_window(last, seen_below, counter)
            accepted.add(counter)
        elif step <= 0:
            assert resolve_counter(last, counter & 0xFFFF, seen_below=seen_below).reason == "replay"
