"""Frame counters: 16 bits on air, 32 bits in the MIC, never accepted twice."""

from hypothesis import given
from hypothesis import strategies as st

from payload_codec import MAX_COUNTER_GAP, CodecError, resolve_counter


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
