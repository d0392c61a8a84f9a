"""Airtime budget: how long a frame occupies the channel and how many check-ins a frame may batch."""

from payload_codec.airtime import MAX_FRAME_BY_SF, max_checkins, sub_band, time_on_air_ms
from payload_codec.schema import CHECKIN_HEAD_SIZE, CHECKIN_SIZE, ENVELOPE_SIZE


def test_low_data_rate_optimisation_switches_on_at_sf11_and_sf12():
    assert time_on_air_ms(18, 12) > time_on_air_ms(18, 12, low_data_rate_optimize=False)
    assert time_on_air_ms(18, 10) == time_on_air_ms(18, 10, low_data_rate_optimize=False)


def test_airtime_grows_in_symbol_blocks():
    assert time_on_air_ms(18, 9) == time_on_air_ms(21, 9) < time_on_air_ms(22, 9)


def test_a_full_batch_fits_the_largest_frame_of_its_spreading_factor():
    for sf, limit in MAX_FRAME_BY_SF.items():
        assert ENVELOPE_SIZE + CHECKIN_HEAD_SIZE + max_checkins(sf) * CHECKIN_SIZE <= limit
        assert max_checkins(sf) >= 1


def test_acks_go_to_the_ten_percent_sub_band():
    assert sub_band(869_525_000).duty_cycle == 0.10
    assert sub_band(868_100_000).duty_cycle == 0.01
    assert sub_band(869_300_000) is None
