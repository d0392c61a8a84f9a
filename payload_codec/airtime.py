"""Time on air and the EU868 duty cycle, the budget every frame is spent from.

Formula of Semtech AN1200.13 (SX1276 datasheet §4.1.1.7), which SX126x gives too for
SF7-SF12. The node uses the same arithmetic to pace itself; the shared vectors hold
both to the same figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .schema import CHECKIN_HEAD_SIZE, CHECKIN_SIZE, ENVELOPE_SIZE, MAX_CHECKINS

# Largest PHY payload per spreading factor at 125 kHz in EU868 (LoRaWAN RP002 M values).
MAX_FRAME_BY_SF = {7: 250, 8: 250, 9: 123, 10: 59, 11: 59, 12: 59}


@dataclass(frozen=True)
class SubBand:
    """An ETSI EN 300 220 sub-band, the share of each hour a device may transmit in it and the
    highest effective radiated power allowed in it (ERC Recommendation 70-03, Annex 1, bands h1.3-h1.7)."""

    name: str
    low_hz: int
    high_hz: int
    duty_cycle: float
    max_erp_dbm: int


SUB_BANDS = (
    SubBand("g", 863_000_000, 868_000_000, 0.01, 14),  # 25 mW ERP
    SubBand("g1", 868_000_000, 868_600_000, 0.01, 14),
    SubBand("g2", 868_700_000, 869_200_000, 0.001, 14),
    SubBand("g3", 869_400_000, 869_650_000, 0.10, 27),  # where ACKs go: 10 %, 500 mW
    SubBand("g4", 869_700_000, 870_000_000, 0.01, 14),  # 25 mW with a duty cycle (5 mW without)
)


def sub_band(frequency_hz: int) -> SubBand | None:
    """The sub-band a carrier frequency falls in, or None outside EU868's LoRa bands."""
    return next((band for band in SUB_BANDS if band.low_hz <= frequency_hz <= band.high_hz), None)


def time_on_air_ms(
    payload_size: int,
    spreading_factor: int,
    bandwidth_hz: int = 125_000,
    coding_rate: int = 5,
    preamble_symbols: int = 8,
    explicit_header: bool = True,
    crc: bool = True,
    low_data_rate_optimize: bool | None = None,
) -> float:
    """Milliseconds on air of one LoRa packet; `coding_rate` 5..8 stands for 4/5..4/8.

    Low data rate optimisation defaults to what the radio mandates: on when a symbol
    lasts 16 ms or more (SF11 and SF12 at 125 kHz).
    """
    symbol_ms = (1 << spreading_factor) / bandwidth_hz * 1000
    if low_data_rate_optimize is None:
        low_data_rate_optimize = symbol_ms >= 16
    de = 1 if low_data_rate_optimize else 0
    numerator = 8 * payload_size - 4 * spreading_factor + 28 + 16 * crc - 20 * (not explicit_header)
    blocks = max(math.ceil(numerator / (4 * (spreading_factor - 2 * de))), 0)
    payload_symbols = 8 + blocks * coding_rate
    return (preamble_symbols + 4.25) * symbol_ms + payload_symbols * symbol_ms


def max_checkins(spreading_factor: int) -> int:
    """How many check-ins one frame may batch at this spreading factor."""
    return min(MAX_CHECKINS, (MAX_FRAME_BY_SF[spreading_factor] - ENVELOPE_SIZE - CHECKIN_HEAD_SIZE) // CHECKIN_SIZE)
