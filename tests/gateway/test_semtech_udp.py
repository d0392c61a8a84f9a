"""SemtechUdp over real UDP sockets on loopback. The test plays `lora_pkt_fwd`, which uses two sockets:
one pushes what it hears (PUSH_DATA), the other pulls downlinks (PULL_DATA, PULL_RESP, TX_ACK)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import logging
import socket
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway_daemon.sources import Downlink, Reception, TransmitError
from gateway_daemon.sources.semtech_protocol import (
    PULL_ACK,
    PULL_DATA,
    PULL_RESP,
    PUSH_ACK,
    PUSH_DATA,
    TX_ACK,
    PullData,
    PushData,
    Refused,
    TxAck,
    parse_from_forwarder,
    reception_from_rxpk,
)
from gateway_daemon.sources.semtech_udp import FORWARDER_QUIET_S, SemtechUdp

from .recording import RecordingPipeline

EUI = bytes.fromhex("0016c001ff10a235")
SOURCE = "udp:0016c001ff10a235"
NOW = 1_700_000_000.5
FRAME = bytes.fromhex("4801020304aabbccdd")
ACK = bytes.fromhex("4a0102030405")
DROP = object()  # a field to leave out of an rxpk


def rxpk(frame: bytes = FRAME, **fields: Any) -> dict[str, Any]:
    """An rxpk entry as lora_pkt_fwd writes one for a good LoRa frame."""
    entry = {
        "jver": 1,
        "tmst": 4_000_000_123,
        "chan": 2,
        "rfch": 1,
        "freq": 868.5,
        "stat": 1,
        "modu": "LORA",
        "datr": "SF9BW125",
        "codr": "4/5",
        "rssis": -89,
        "lsnr": 7.2,
        "foff": -112,
        "rssi": -87,
        "size": len(frame),
        "data": base64.b64encode(frame).decode(),
    } | fields
    return {name: value for name, value in entry.items() if value is not DROP}


HEARD = Reception(
    frame=FRAME,
    source=SOURCE,
    received_at=NOW,
    frequency_hz=868_500_000,
    spreading_factor=9,
    bandwidth_hz=125_000,
    rssi_dbm=-87.0,
    snr_db=7.2,
    timestamp_us=4_000_000_123,
)


def datagram(identifier: int, token: int, body: bytes = b"", eui: bytes = EUI, version: int = 2) -> bytes:
    return struct.pack(">BHB", version, token, identifier) + eui + body


def push_data(token: int, **message: Any) -> bytes:
    return datagram(PUSH_DATA, token, json.dumps(message).encode())


def downlink(answers: Reception = HEARD, **fields: Any) -> Downlink:
    return Downlink(
        **{"frame": ACK, "answers": answers, "delay_us": 1_000_000, "frequency_hz": 869_525_000, "spreading_factor": 9}
        | fields
    )


class Forwarder:
    """The packet forwarder's two sockets, both on loopback."""

    def __init__(self, port: int) -> None:
        self.server = ("127.0.0.1", port)
        self.up = self._socket()
        self.down = self._socket()

    @staticmethod
    def _socket() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        return sock

    def send_up(self, data: bytes) -> None:
        self.up.sendto(data, self.server)

    def send_down(self, data: bytes) -> None:
        self.down.sendto(data, self.server)

    async def heard_up(self) -> bytes:
        return await asyncio.get_running_loop().sock_recv(self.up, 65_535)

    async def heard_down(self) -> bytes:
        return await asyncio.get_running_loop().sock_recv(self.down, 65_535)

    async def pull(self, token: int = 0x0F0F) -> None:
        """What lora_pkt_fwd does every keepalive_interval: PULL_DATA, and wait for the PULL_ACK."""
        self.send_down(datagram(PULL_DATA, token))
        assert await self.heard_down() == struct.pack(">BHB", 2, token, PULL_ACK)

    def close(self) -> None:
        self.up.close()
        self.down.close()


@contextlib.asynccontextmanager
async def running(
    pipeline: RecordingPipeline | None = None, clock: Callable[[], float] = lambda: NOW, **options: Any
) -> AsyncIterator[tuple[SemtechUdp, RecordingPipeline, Forwarder]]:
    source = SemtechUdp(port=0, clock=clock, **options)
    pipeline = pipeline or RecordingPipeline()
    task = asyncio.create_task(source.run(pipeline.deliver, pipeline.reject))
    forwarder: Forwarder | None = None
    try:
        async with asyncio.timeout(5):
            forwarder = Forwarder(await source.started())
        yield source, pipeline, forwarder
    finally:
        task.cancel()
        async with asyncio.timeout(5):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if forwarder is not None:
            forwarder.close()


# --- uplinks ---------------------------------------------------------------------------------


async def test_push_data_is_acked_with_its_token_and_each_rxpk_is_heard_or_rejected() -> None:
    async with running() as (source, pipeline, forwarder), asyncio.timeout(5):
        forwarder.send_up(push_data(0x1234, rxpk=[rxpk(), rxpk(stat=-1)]))
        assert await forwarder.heard_up() == bytes([2, 0x12, 0x34, PUSH_ACK])
        assert await pipeline.receptions.get() == HEARD
        rejected = await pipeline.rejected.get()
    assert (rejected.source, rejected.reason) == (SOURCE, "crc_failed")
    assert json.loads(rejected.raw)["stat"] == -1
    assert source.stats.received == 1
    assert source.stats.rejected == {"crc_failed": 1}


async def test_a_bad_rxpk_costs_only_itself() -> None:
    async with running() as (_, pipeline, forwarder), asyncio.timeout(5):
        forwarder.send_up(push_data(1, rxpk=[rxpk(), rxpk(data="not base64!"), rxpk(frame=ACK, tmst=5)]))
        heard = [await pipeline.receptions.get(), await pipeline.receptions.get()]
        rejected = await pipeline.rejected.get()
    assert [reception.frame for reception in heard] == [FRAME, ACK]
    assert rejected.reason == "bad_rxpk"
    assert "data" in rejected.detail


async def test_the_gateways_stat_report_is_kept_under_its_eui() -> None:
    report = {"time": "2024-05-01 10:00:00 GMT", "rxnb": 3, "rxok": 2, "rxfw": 2, "ackr": 100.0, "txnb": 0}
    async with running() as (source, _, forwarder), asyncio.timeout(5):
        forwarder.send_up(push_data(2, stat=report))
        await forwarder.heard_up()
    assert source.stats.gateway_stats == {EUI.hex(): report | {"received_at": NOW}}
    assert source.stats.to_json(NOW + 2.25)["forwarders"] == {
        EUI.hex(): {"heard_s_ago": 2.2, "push_data_s_ago": 2.2, "stat": report | {"received_at": NOW}}
    }
    assert source.stats.push_data == 1


async def test_a_pipeline_that_fails_does_not_stop_the_source() -> None:
    class Failing(RecordingPipeline):
        async def deliver(self, reception: Reception) -> None:
            if reception.timestamp_us == 1:
                raise RuntimeError("a bug in the pipeline")
            await super().deliver(reception)

    async with running(Failing()) as (_, pipeline, forwarder), asyncio.timeout(5):
        forwarder.send_up(push_data(3, rxpk=[rxpk(tmst=1), rxpk(tmst=2)]))
        assert (await pipeline.receptions.get()).timestamp_us == 2


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"stat": -1}, "crc_failed"),
        ({"stat": 0}, "no_crc"),
        ({"modu": "FSK", "datr": 50000}, "not_lora"),
        ({"stat": 2}, "bad_rxpk"),
        ({"stat": True}, "bad_rxpk"),
        ({"stat": DROP}, "bad_rxpk"),
        ({"data": "@@@@"}, "bad_rxpk"),
        ({"data": DROP}, "bad_rxpk"),
        ({"size": 3}, "bad_rxpk"),
        ({"freq": "868.5"}, "bad_rxpk"),
        ({"freq": -868.5}, "bad_rxpk"),
        ({"datr": "SF13BW125"}, "bad_rxpk"),
        ({"datr": "SF9BW100"}, "bad_rxpk"),
        ({"datr": "SF9BW125 "}, "bad_rxpk"),
        ({"tmst": -1}, "bad_rxpk"),
        ({"tmst": 2**32}, "bad_rxpk"),
        ({"tmst": 1.5}, "bad_rxpk"),
        ({"rssi": DROP}, "bad_rxpk"),
        ({"lsnr": None}, "bad_rxpk"),
        ({"lsnr": 10**400}, "bad_rxpk"),
    ],
)
def test_an_unusable_rxpk_is_refused_with_its_reason(fields: dict[str, Any], reason: str) -> None:
    with pytest.raises(Refused) as refused:
        reception_from_rxpk(rxpk(**fields), SOURCE, NOW)
    assert refused.value.reason == reason


def test_where_the_forwarder_reports_each_antenna_the_best_ones_signal_is_the_frames() -> None:
    # SX1301 v2 gateways (Kerlink's iBTS) give RSSI and SNR per antenna in rsig, not in the entry.
    antennas = [{"ant": 0, "chan": 2, "rssic": -101, "lsnr": -3.5}, {"ant": 1, "chan": 2, "rssic": -95, "lsnr": 4.25}]
    heard = reception_from_rxpk(rxpk(rssi=DROP, lsnr=DROP, rsig=antennas), SOURCE, NOW)
    assert (heard.rssi_dbm, heard.snr_db) == (-95.0, 4.25)
    # Where the entry gives both, they are the frame's (lora_pkt_fwd may add rsig beside them).
    assert reception_from_rxpk(rxpk(rsig=antennas), SOURCE, NOW) == HEARD


@pytest.mark.parametrize(
    "rsig", [[], {"rssic": -95, "lsnr": 4}, [{"rssic": -95}], [{"lsnr": 4.0, "rssic": "-95"}], ["ant 0"]]
)
def test_an_rsig_without_each_antennas_signal_is_refused(rsig: Any) -> None:
    with pytest.raises(Refused) as refused:
        reception_from_rxpk(rxpk(rssi=DROP, lsnr=DROP, rsig=rsig), SOURCE, NOW)
    assert refused.value.reason == "bad_rxpk"
    assert "rsig" in refused.value.detail or "lsnr" in refused.value.detail or "rssic" in refused.value.detail


@pytest.mark.parametrize(("freq", "hz"), [(868.1, 868_100_000), (869.525, 869_525_000), (867.8999999, 867_900_000)])
def test_the_frequency_in_mhz_becomes_whole_hertz(freq: float, hz: int) -> None:
    assert reception_from_rxpk(rxpk(freq=freq), SOURCE, NOW).frequency_hz == hz


def test_base64_without_its_padding_is_accepted() -> None:
    assert reception_from_rxpk(rxpk(frame=b"\x01\x02", data="AQI"), SOURCE, NOW).frame == b"\x01\x02"


@given(
    frame=st.binary(max_size=255),
    spreading_factor=st.integers(5, 12),
    bandwidth_khz=st.sampled_from([125, 250, 500]),
    tmst=st.integers(0, 2**32 - 1),
)
def test_any_frame_the_concentrator_heard_arrives_byte_for_byte(
    frame: bytes, spreading_factor: int, bandwidth_khz: int, tmst: int
) -> None:
    entry = rxpk(frame, datr=f"SF{spreading_factor}BW{bandwidth_khz}", tmst=tmst)
    heard = reception_from_rxpk(entry, SOURCE, NOW)
    assert (heard.frame, heard.spreading_factor, heard.bandwidth_hz, heard.timestamp_us) == (
        frame,
        spreading_factor,
        bandwidth_khz * 1000,
        tmst,
    )


# --- malformed input ---------------------------------------------------------------------------

NESTED = b"[" * 5000 + b"]" * 5000
MALFORMED = [
    (b"", "bad_header"),
    (b"\x02\x12", "bad_header"),
    (b"\x03\x12\x34\x00" + EUI + b'{"rxpk":[]}', "bad_version"),
    (b"\x00\x12\x34\x02" + EUI, "bad_version"),
    (b"\x01\x12\x34\x05" + EUI, "unknown_packet"),  # a TX_ACK, which version 1 does not have
    (datagram(PUSH_ACK, 7), "unknown_packet"),
    (datagram(PULL_RESP, 7, b'{"txpk":{}}'), "unknown_packet"),
    (datagram(0x42, 7), "unknown_packet"),
    (datagram(PUSH_DATA, 7, eui=EUI[:5]), "bad_header"),
    (datagram(PUSH_DATA, 7, b'{"rxpk": [{"stat": 1}'), "bad_json"),
    (datagram(PUSH_DATA, 7, b"[1, 2]"), "bad_json"),
    (datagram(PUSH_DATA, 7, b"\xff\xfe\xfa"), "bad_json"),
    (datagram(PUSH_DATA, 7, b'{"rxpk": [{"lsnr": NaN}]}'), "bad_json"),
    (datagram(PUSH_DATA, 7, b'{"rxpk": ' + NESTED + b"}"), "bad_json"),
    (datagram(PUSH_DATA, 7, b'{"rxpk": ' + b"9" * 5000 + b"}"), "bad_json"),
    (datagram(PUSH_DATA, 7, b'{"rxpk": {"stat": 1}}'), "bad_rxpk"),
    (datagram(TX_ACK, 7, b"{txpk_ack"), "bad_json"),
    (datagram(TX_ACK, 7, b'{"txpk_ack": "NONE"}'), "bad_tx_ack"),
    (datagram(TX_ACK, 7, b'{"txpk_ack": {"error": 3}}'), "bad_tx_ack"),
]


async def test_malformed_datagrams_are_rejected_unanswered_and_the_source_keeps_serving() -> None:
    async with running() as (source, pipeline, forwarder), asyncio.timeout(5):
        for data, _ in MALFORMED:
            forwarder.send_up(data)
        forwarder.send_up(push_data(0xBEEF, rxpk=[rxpk()]))
        # Replies go out in order: had a malformed datagram been answered, its reply would come first.
        assert await forwarder.heard_up() == bytes([2, 0xBE, 0xEF, PUSH_ACK])
        assert await pipeline.receptions.get() == HEARD
        rejected = pipeline.rejected_so_far()  # handed on in order, so all before that reception
    assert [(r.reason, r.raw) for r in rejected] == [(reason, data[:512]) for data, reason in MALFORMED]
    # A datagram whose header got as far as the forwarder's EUI is reported under that forwarder.
    named = {"bad_json", "bad_rxpk", "bad_tx_ack"}
    assert [r.source for r in rejected] == [SOURCE if reason in named else "udp" for _, reason in MALFORMED]
    assert all(r.detail.startswith("from 127.0.0.1:") for r in rejected)
    assert source.stats.datagrams == len(MALFORMED) + 1
    assert sum(source.stats.rejected.values()) == len(MALFORMED)


def test_an_oversized_datagram_is_refused_unread() -> None:
    # IPv4 cannot carry it, so only the parser sees it.
    with pytest.raises(Refused) as refused:
        parse_from_forwarder(push_data(1, rxpk=[]) + b" " * 65_500)
    assert refused.value.reason == "oversized"


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
RXPK_ENTRY = st.fixed_dictionaries(
    {},
    optional={
        "stat": st.sampled_from([-1, 0, 1]) | JSON,
        "modu": st.just("LORA") | JSON,
        "datr": st.sampled_from(["SF7BW125", "SF12BW500", "SF4BW125"]) | JSON,
        "freq": st.floats(allow_nan=True) | JSON,
        "tmst": st.integers(-1, 2**32) | JSON,
        "rssi": st.integers(-150, 0) | JSON,
        "lsnr": st.floats() | JSON,
        "size": st.integers(0, 256) | JSON,
        "data": st.sampled_from(["", "AQI=", "AQI", "A", "****"]) | JSON,
    },
)


@given(st.binary(max_size=64))
def test_parsing_any_bytes_gives_a_packet_or_a_refusal(data: bytes) -> None:
    with contextlib.suppress(Refused):
        assert isinstance(parse_from_forwarder(data), PushData | PullData | TxAck)


@given(st.sampled_from([PUSH_DATA, TX_ACK]), st.dictionaries(st.sampled_from(["rxpk", "stat", "txpk_ack"]), JSON))
def test_parsing_any_json_body_gives_a_packet_or_a_refusal(identifier: int, body: dict[str, Any]) -> None:
    with contextlib.suppress(Refused):
        assert isinstance(parse_from_forwarder(datagram(identifier, 1, json.dumps(body).encode())), PushData | TxAck)


@given(st.one_of(RXPK_ENTRY, JSON))
def test_reading_any_rxpk_entry_gives_a_reception_or_a_refusal(entry: Any) -> None:
    try:
        assert isinstance(reception_from_rxpk(entry, SOURCE, NOW), Reception)
    except Refused as refused:
        assert len(refused.detail) < 200


async def test_the_receivers_a_copy_may_come_from_are_the_forwarders_heard_in_the_last_minute() -> None:
    now = NOW
    async with running(clock=lambda: now) as (source, pipeline, forwarder), asyncio.timeout(5):
        assert source.receivers() == set()
        forwarder.send_up(push_data(1, rxpk=[rxpk()]))
        await pipeline.receptions.get()
        assert source.receivers() == {SOURCE}
        now += FORWARDER_QUIET_S + 1  # it stopped: no PULL_DATA since
        assert source.receivers() == set()
        await forwarder.pull()
        assert source.receivers() == {SOURCE}


async def test_a_forwarder_that_only_pulls_is_not_waited_for_and_its_serv_port_up_is_named(caplog) -> None:
    # serv_port_up set to another port: its keep-alives come, its frames and stat reports do not.
    now = NOW
    async with running(clock=lambda: now) as (source, _, forwarder), asyncio.timeout(5):
        await forwarder.pull()
        assert source.receivers() == set()  # it would never give its copy of a frame
        now += FORWARDER_QUIET_S - 1
        await forwarder.pull()
        assert not [r for r in caplog.records if r.levelname == "WARNING"]
        now += 1
        await forwarder.pull()
        await forwarder.pull()
        port = source.bound_port
    (warning,) = [r for r in caplog.records if r.levelname == "WARNING"]  # once
    assert "0016c001ff10a235" in warning.getMessage()
    assert f"check that its serv_port_up is {port}" in warning.getMessage()


async def test_two_forwarders_with_one_gateway_id_are_told_apart_by_their_keep_alives(caplog) -> None:
    async with running() as (_, _, first), asyncio.timeout(5):
        second = Forwarder(first.server[1])
        try:
            await first.pull()
            await second.pull()  # alone, this could be the first forwarder restarted
            assert not [r for r in caplog.records if r.levelname == "WARNING"]
            await first.pull()  # back to the first address: two forwarders
            await second.pull()
        finally:
            second.close()
    (warning,) = [r for r in caplog.records if r.levelname == "WARNING"]
    assert "two packet forwarders use gateway_ID 0016c001ff10a235" in warning.getMessage()
    assert "Give each concentrator its own gateway_ID" in warning.getMessage()


async def test_a_forwarder_restarted_on_new_ports_is_no_second_forwarder(caplog) -> None:
    caplog.set_level(logging.INFO, logger="gateway_daemon")
    async with running() as (_, _, before), asyncio.timeout(5):
        port = before.down.getsockname()[1]
        await before.pull()
        after = Forwarder(before.server[1])
        try:
            await after.pull()
            await after.pull()
        finally:
            after.close()
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    assert [r.getMessage() for r in caplog.records if "heard" in r.getMessage()] == [
        f"udp: packet forwarder 0016c001ff10a235 heard, from 127.0.0.1:{port}"
    ]


# --- downlinks -------------------------------------------------------------------------------


async def test_pull_data_is_acked_with_its_token() -> None:
    async with running() as (source, _, forwarder), asyncio.timeout(5):
        forwarder.send_down(datagram(PULL_DATA, 0xA55A))
        assert await forwarder.heard_down() == bytes([2, 0xA5, 0x5A, PULL_ACK])
    assert source.stats.pull_data == 1


@pytest.mark.parametrize(
    "verdict",
    [b"", b'{"txpk_ack":{"error":"NONE"}}', b'{"txpk_ack":{"warn":"TX_POWER","value":12}}'],
    ids=["no json", "error NONE", "power warning"],
)
async def test_a_downlink_goes_as_pull_resp_to_the_pulling_socket_and_returns_on_its_tx_ack(verdict: bytes) -> None:
    near_the_wrap = dataclasses.replace(HEARD, timestamp_us=2**32 - 300_000)
    async with running() as (source, _, forwarder), asyncio.timeout(5):
        await forwarder.pull()
        sending = asyncio.create_task(source.transmit(downlink(near_the_wrap)))
        resp = await forwarder.heard_down()
        assert resp[0] == 2 and resp[3] == PULL_RESP
        forwarder.send_down(datagram(TX_ACK, int.from_bytes(resp[1:3]), verdict))
        await sending
    assert json.loads(resp[4:]) == {
        "txpk": {
            "imme": False,
            "tmst": 700_000,  # 2^32 - 300 000 + 1 000 000, on a counter that wraps
            "freq": 869.525,
            "rfch": 0,
            "powe": 14,
            "modu": "LORA",
            "datr": "SF9BW125",
            "codr": "4/5",
            "ipol": False,
            "ncrc": False,
            "size": len(ACK),
            "data": base64.b64encode(ACK).decode(),
        }
    }
    assert source.stats.transmits == {"sent": 1}


@pytest.mark.parametrize(
    ("error", "reason"),
    [("TOO_LATE", "too_late"), ("COLLISION_PACKET", "collision_packet"), ("NEW_IN_V9", "tx_failed")],
)
async def test_a_downlink_the_forwarder_refuses_raises_its_error(error: str, reason: str) -> None:
    async with running() as (source, _, forwarder), asyncio.timeout(5):
        await forwarder.pull()
        sending = asyncio.create_task(source.transmit(downlink()))
        token = int.from_bytes((await forwarder.heard_down())[1:3])
        forwarder.send_down(datagram(TX_ACK, token, json.dumps({"txpk_ack": {"error": error}}).encode()))
        with pytest.raises(TransmitError) as failed:
            await sending
    assert failed.value.reason == reason
    assert source.stats.transmits == {reason: 1}


async def test_a_version_1_forwarder_is_answered_in_version_1_and_its_downlink_needs_no_tx_ack() -> None:
    # PROTOCOL.TXT up to v1.2: no TX_ACK, and PULL_RESP's token bytes are unused.
    async with running(tx_ack_timeout_s=0.2) as (source, pipeline, forwarder), asyncio.timeout(5):
        forwarder.send_up(datagram(PUSH_DATA, 0x1234, json.dumps({"rxpk": [rxpk()]}).encode(), version=1))
        assert await forwarder.heard_up() == bytes([1, 0x12, 0x34, PUSH_ACK])
        assert await pipeline.receptions.get() == HEARD
        forwarder.send_down(datagram(PULL_DATA, 0xA55A, version=1))
        assert await forwarder.heard_down() == bytes([1, 0xA5, 0x5A, PULL_ACK])
        await source.transmit(downlink())  # returns without a TX_ACK, well within the timeout
        resp = await forwarder.heard_down()
    assert resp[:4] == bytes([1, 0, 0, PULL_RESP])
    assert json.loads(resp[4:])["txpk"]["data"] == base64.b64encode(ACK).decode()
    assert source.stats.transmits == {"sent": 1}


async def test_a_downlink_without_tx_ack_fails_with_no_tx_ack() -> None:
    async with running(tx_ack_timeout_s=0.2) as (source, _, forwarder), asyncio.timeout(5):
        await forwarder.pull()
        with pytest.raises(TransmitError) as failed:
            await source.transmit(downlink())
    assert failed.value.reason == "no_tx_ack"


async def test_a_tx_ack_with_another_token_does_not_confirm_the_downlink() -> None:
    async with running(tx_ack_timeout_s=0.3) as (source, _, forwarder), asyncio.timeout(5):
        await forwarder.pull()
        sending = asyncio.create_task(source.transmit(downlink()))
        token = int.from_bytes((await forwarder.heard_down())[1:3])
        forwarder.send_down(datagram(TX_ACK, (token + 1) % 65_536))
        with pytest.raises(TransmitError) as failed:
            await sending
    assert failed.value.reason == "no_tx_ack"
    assert source.stats.late_tx_acks == 1


async def test_a_downlink_before_any_pull_data_fails_with_no_downlink_path() -> None:
    async with running() as (source, _, forwarder), asyncio.timeout(5):
        forwarder.send_up(push_data(1, rxpk=[rxpk()]))  # heard, but never pulled
        await forwarder.heard_up()
        with pytest.raises(TransmitError) as failed:
            await source.transmit(downlink())
    assert failed.value.reason == "no_downlink_path"
    assert "PULL_DATA" in str(failed.value)


async def test_a_downlink_answering_another_receivers_reception_is_refused() -> None:
    from_the_bridge = dataclasses.replace(HEARD, source="bridge:/dev/ttyUSB0")
    async with running() as (source, _, forwarder), asyncio.timeout(5):
        await forwarder.pull()
        with pytest.raises(TransmitError) as failed:
            await source.transmit(downlink(from_the_bridge))
    assert failed.value.reason == "bad_request"


async def test_a_downlink_the_concentrator_cannot_send_is_refused_before_it_goes_out() -> None:
    async with running() as (source, _, forwarder), asyncio.timeout(5):
        await forwarder.pull()
        with pytest.raises(TransmitError) as failed:
            await source.transmit(downlink(spreading_factor=13))
    assert failed.value.reason == "bad_request"


# --- the socket ------------------------------------------------------------------------------


async def test_the_socket_opens_without_an_error_and_is_closed_when_the_source_stops(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with running() as (source, _, forwarder), asyncio.timeout(5):
        await forwarder.pull()
        port = source.bound_port
    assert port is not None
    errors = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
    assert errors == []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
        again.bind(("127.0.0.1", port))  # free: the stopped source closed its socket
