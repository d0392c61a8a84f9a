"""The Semtech UDP protocol both ways: what one end encodes, the other end parses back unchanged."""

from __future__ import annotations

import base64
import contextlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway_daemon.sources import Downlink, Reception
from gateway_daemon.sources.semtech_protocol import (
    PullAck,
    PullData,
    PullResp,
    PushAck,
    PushData,
    Refused,
    TxAck,
    Txpk,
    datr_of,
    parse_from_forwarder,
    parse_from_server,
    reception_from_rxpk,
    rxpk_of,
    txpk_of,
)

TOKENS = st.integers(0, 0xFFFF)
EUIS = st.binary(min_size=8, max_size=8).map(bytes.hex)
FRAMES = st.binary(min_size=1, max_size=255)
SPREADING_FACTORS = st.integers(5, 12)
BANDWIDTHS = st.sampled_from([125_000, 250_000, 500_000])
FREQUENCIES = st.integers(400_000_000, 1_000_000_000).map(lambda hz: hz // 100 * 100)  # 100 Hz steps, as SX1302
CLOCK = st.integers(0, 2**32 - 1)
VERDICTS = st.sampled_from(["NONE", "TOO_LATE", "TOO_EARLY", "COLLISION_PACKET", "TX_FREQ", "GPS_UNLOCKED"])


@given(FRAMES, CLOCK, FREQUENCIES, SPREADING_FACTORS, BANDWIDTHS, st.integers(-140, 0), st.integers(-200, 150))
def test_a_frame_a_forwarder_heard_is_read_back_as_heard(
    frame: bytes, tmst: int, frequency_hz: int, sf: int, bw: int, rssi: int, snr_tenths: int
) -> None:
    rxpk = rxpk_of(
        frame,
        timestamp_us=tmst,
        frequency_hz=frequency_hz,
        spreading_factor=sf,
        bandwidth_hz=bw,
        rssi_dbm=rssi,
        snr_db=snr_tenths / 10,
    )
    (entry,) = parse_from_forwarder(PushData(1, "0016c001ff10a235", [rxpk]).encode()).rxpk
    assert reception_from_rxpk(entry, "udp:x", 5.0) == Reception(
        frame, "udp:x", 5.0, frequency_hz, sf, bw, float(rssi), snr_tenths / 10, tmst
    )


@given(TOKENS, EUIS, st.lists(st.fixed_dictionaries({"stat": st.integers(-1, 1)}), max_size=3))
def test_push_data_is_parsed_back_as_sent(token: int, eui: str, rxpk: list[Any]) -> None:
    report = {"rxnb": 3, "rxok": 2}
    assert parse_from_forwarder(PushData(token, eui, rxpk, report).encode()) == PushData(token, eui, rxpk, report)


@given(TOKENS, EUIS)
def test_pull_data_is_parsed_back_as_sent(token: int, eui: str) -> None:
    assert parse_from_forwarder(PullData(token, eui).encode()) == PullData(token, eui)


@given(TOKENS, EUIS, VERDICTS, st.sampled_from(["", "TX_POWER"]))
def test_a_tx_ack_is_parsed_back_as_sent(token: int, eui: str, error: str, warning: str) -> None:
    assert parse_from_forwarder(TxAck(token, eui, error, warning).encode()) == TxAck(token, eui, error, warning)


@given(TOKENS)
def test_the_servers_acks_are_parsed_back_as_sent(token: int) -> None:
    assert parse_from_server(PushAck(token).encode()) == PushAck(token)
    assert parse_from_server(PullAck(token).encode()) == PullAck(token)


@given(
    TOKENS,
    FRAMES,
    FREQUENCIES,
    SPREADING_FACTORS,
    BANDWIDTHS,
    st.integers(0, 27),
    st.none() | CLOCK,
    st.booleans(),
    st.booleans(),
)
def test_a_downlink_the_server_sends_is_read_by_the_forwarder_as_sent(
    token: int, frame: bytes, hz: int, sf: int, bw: int, power: int, tmst: int | None, ipol: bool, crc: bool
) -> None:
    txpk = Txpk(frame, hz, sf, bw, power, tmst, invert_iq=ipol, crc=crc)
    resp = parse_from_server(PullResp(token, txpk.to_json()).encode())
    assert isinstance(resp, PullResp) and resp.token == token
    assert Txpk.from_json(resp.txpk) == txpk


def test_a_downlink_is_timed_on_the_clock_of_the_reception_it_answers_which_wraps() -> None:
    heard = Reception(b"\x01", "udp:x", 0.0, 868_100_000, 9, 125_000, -90.0, 5.0, 2**32 - 300_000)
    txpk = txpk_of(Downlink(b"\x60", heard, 1_000_000, 869_525_000, 9))
    assert (txpk.timestamp_us, txpk.frequency_hz, txpk.crc, txpk.invert_iq) == (700_000, 869_525_000, True, False)
    assert txpk.to_json()["datr"] == datr_of(9, 125_000) == "SF9BW125"


@pytest.mark.parametrize(
    "settings",
    [{"spreading_factor": 13}, {"bandwidth_hz": 100_000}, {"frame": b""}, {"frame": bytes(256)}],
)
def test_a_txpk_a_concentrator_cannot_send_is_not_built(settings: dict[str, Any]) -> None:
    fields = {"frame": b"\x60", "frequency_hz": 869_525_000, "spreading_factor": 9, "bandwidth_hz": 125_000}
    with pytest.raises(ValueError):
        Txpk(**(fields | settings), tx_power_dbm=14, timestamp_us=0)


GOOD_TXPK = Txpk(b"\x60\x01", 869_525_000, 9, 125_000, 14, 1000).to_json()


@pytest.mark.parametrize(
    "change",
    [
        {"datr": "SF13BW125"},
        {"modu": "FSK"},
        {"data": "@@"},
        {"size": 9},
        {"freq": "869.525"},
        {"imme": "no"},
        {"ipol": 1},
        {"tmst": -1},
        {"powe": None},
    ],
)
def test_a_txpk_a_forwarder_cannot_send_is_refused(change: dict[str, Any]) -> None:
    with pytest.raises(Refused) as refused:
        Txpk.from_json(GOOD_TXPK | change)
    assert refused.value.reason == "bad_txpk"


@pytest.mark.parametrize(
    ("datagram", "reason"),
    [
        (b"\x02\x00", "bad_header"),
        (b"\x03\x00\x01\x01", "bad_version"),
        (PullData(1, "0016c001ff10a235").encode(), "unknown_packet"),
        (b"\x02\x00\x01\x03{", "bad_json"),
        (b"\x02\x00\x01\x03{}", "bad_txpk"),
    ],
)
def test_what_a_server_must_not_send_is_refused_with_its_reason(datagram: bytes, reason: str) -> None:
    with pytest.raises(Refused) as refused:
        parse_from_server(datagram)
    assert refused.value.reason == reason


@given(st.binary(max_size=64))
def test_reading_any_bytes_from_a_server_gives_a_packet_or_a_refusal(data: bytes) -> None:
    with contextlib.suppress(Refused):
        packet = parse_from_server(data)
        assert isinstance(packet, PushAck | PullAck | PullResp)
        if isinstance(packet, PullResp):
            with contextlib.suppress(Refused):
                assert isinstance(Txpk.from_json(packet.txpk), Txpk)


def test_rxpk_carries_the_frame_in_base64_with_its_size() -> None:
    rxpk = rxpk_of(
        b"\x01\x02", timestamp_us=7, frequency_hz=868_100_000, spreading_factor=7, bandwidth_hz=125_000,
        rssi_dbm=-97.4, snr_db=6.25,
    )  # fmt: skip
    assert rxpk["data"] == base64.b64encode(b"\x01\x02").decode() and rxpk["size"] == 2
    assert (rxpk["freq"], rxpk["datr"], rxpk["rssi"], rxpk["lsnr"]) == (868.1, "SF7BW125", -97, 6.2)
