"""Time on air of a LoRa frame, and the duty cycle of the EU868 sub-bands it is spent from.

Semtech AN1200.13 (SX1276 datasheet §4.1.1.7; the same for SX126x at SF7-SF12), in whole
microseconds so that no float is boxed on the heap; payload_codec/airtime.py is the reference
and the shared vectors hold both to the same figures. Its tables (the largest frame per
spreading factor, the ETSI sub-bands of EU868 with their duty cycles in ‰) are in contract.py.
"""

import time

from micropython import const

from .contract import LOWEST_SF, MAX_FRAME_BY_SF, SUB_BANDS

_HOUR_MS = const(3600000)


def time_on_air_us(size, sf, bw=125000, cr=5, preamble=8, explicit_header=True, crc=True, ldro=None):
    """Microseconds on air of a `size`-byte LoRa packet; `cr` 5..8 stands for 4/5..4/8.

    Low data rate optimisation defaults to what the radio mandates: on when a symbol lasts
    16 ms or more (SF11 and SF12 at 125 kHz).
    """
    if ldro is None:
        ldro = (125 << sf) >= 2 * bw  # 2**sf / bw >= 16 ms
    numerator = 8 * size - 4 * sf + 28 + (16 if crc else 0) - (0 if explicit_header else 20)
    step = 4 * (sf - (2 if ldro else 0))
    blocks = -(-numerator // step) if numerator > 0 else 0
    quarter_symbols = 4 * preamble + 17 + 4 * (8 + blocks * cr)  # preamble + 4.25 + payload
    if bw % 1000:
        return (quarter_symbols << sf) * 250000 // bw  # a long int, for bandwidths EU868 does not use
    return (quarter_symbols << sf) * 250 // (bw // 1000)  # µs = quarter symbols × 2**sf / (4 × bw)


def max_frame_size(sf):
    """The largest frame EU868 allows at this spreading factor (125 kHz), envelope included."""
    return MAX_FRAME_BY_SF[sf - LOWEST_SF]


def sub_band(frequency_hz):
    """The index in SUB_BANDS of the sub-band a carrier frequency falls in; ValueError outside."""
    for i in range(len(SUB_BANDS)):
        if SUB_BANDS[i][0] <= frequency_hz <= SUB_BANDS[i][1]:
            return i
    raise ValueError("frequency outside EU868 sub-bands")


def _refill_ms(band, airtime_us):
    return -(-2 * airtime_us // SUB_BANDS[band][2])  # a bucket refills ‰ / 2 µs of air per ms


class DutyCycle:
    """The transmit budget of each sub-band, a token bucket in microseconds of air.

    The hour's budget (duty cycle × 1 h) is split in two: half is the bucket's depth, for
    bursts such as a retry, and half refills it evenly over the hour. So in whatever hour a
    regulator watches, the node spends at most its duty cycle. Buckets start full.
    """

    def __init__(self, now_ms=None):
        now = time.ticks_ms() if now_ms is None else now_ms
        count = len(SUB_BANDS)
        self._credit_us = [self._depth_us(i) for i in range(count)]
        self._at_ms = [now] * count

    @staticmethod
    def _depth_us(band):
        return 1800000 * SUB_BANDS[band][2]  # half an hour × duty cycle, in µs

    def _refill(self, band, now):
        elapsed = time.ticks_diff(now, self._at_ms[band])
        self._at_ms[band] = now
        depth = self._depth_us(band)
        if elapsed < 0 or elapsed >= _HOUR_MS:
            self._credit_us[band] = depth  # idle an hour or more (or ticks wrapped): full
        else:
            # Half the duty cycle per ms elapsed: ‰ / 2 µs of air per ms.
            self._credit_us[band] = min(depth, self._credit_us[band] + elapsed * SUB_BANDS[band][2] // 2)

    def wait_ms(self, frequency_hz, airtime_us, now_ms=None):
        """Milliseconds until a frame of `airtime_us` may go on this frequency; 0 means now.

        ValueError if the frame is longer than the sub-band's bucket: it can never go.
        """
        band = sub_band(frequency_hz)
        if airtime_us > self._depth_us(band):
            raise ValueError("frame longer than the duty cycle allows")
        self._refill(band, time.ticks_ms() if now_ms is None else now_ms)
        missing = airtime_us - self._credit_us[band]
        if missing <= 0:
            return 0
        return _refill_ms(band, missing)

    def pace_ms(self, frequency_hz, airtime_us):
        """Milliseconds the bucket takes to earn back a frame of `airtime_us` on this frequency: the
        pace at which such frames may go on for good, the bucket's depth being for bursts."""
        return _refill_ms(sub_band(frequency_hz), airtime_us)

    def spend(self, frequency_hz, airtime_us, now_ms=None):
        """Record a frame of `airtime_us` sent now on this frequency."""
        band = sub_band(frequency_hz)
        self._refill(band, time.ticks_ms() if now_ms is None else now_ms)
        self._credit_us[band] -= airtime_us
