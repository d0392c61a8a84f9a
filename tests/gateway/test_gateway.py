"""The gateway end to end on a real broker: what goes in on air comes out on MQTT, once."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import sys
from dataclasses import replace

import jsonschema
import pytest

from boards.registry import Device
from gateway_daemon import mqtt as gateway_mqtt
from gateway_daemon.pipeline import replay_cause
from gateway_daemon.sources.semtech_udp import SemtechUdp
from payload_codec import (
    DOWN,
    Checkin,
    CheckinBatch,
    CodecError,
    SealedEnvelope,
    Telemetry,
    build_frame,
    derive_device_keys,
    open_frame,
    read_envelope,
)
from payload_codec.vectorgen import DEVICE_ID, STATUS_SAMPLE, TEST_MASTER_KEY
from simulator.broker import free_port

from ..codec.vectors import frame_cases
from .conftest import Subscriber
from .site import Site, config_text, schema, until, write_registry
from .test_semtech_udp import Forwarder, push_data, rxpk

KEYS = derive_device_keys(TEST_MASTER_KEY, DEVICE_ID)
UPLINKS = sorted(
    (
        case
        for case in frame_cases()
        if case["valid"] and case["direction"] == "up" and case["keys"]["mic_key"] == KEYS.mic_key.hex()
    ),
    key=lambda case: case["counter"],
)  # the vectors of the device's epoch 0: the registry's
# The vectors include a check-in sent in clear, which the gateway accepts only when told to.
EVERY_VECTOR = {"allow_unencrypted_checkins": True}


def telemetry(counter: int, temperature: float = 20.5) -> bytes:
    return build_frame(Telemetry(temperature_c=temperature, co2_ppm=600), DEVICE_ID, counter, KEYS)


def checkin(
    counter: int, *, ack: bool = True, time_requested: bool = False, count: int = 1, first_number: int | None = None
) -> bytes:
    """A check-in frame; its check-ins are numbered from `first_number`, by default the frame's counter."""
    events = tuple(
        Checkin(badge_token=i.to_bytes(8, "big"), tag_type="ntag", direction="in", uid_length=7, age_s=10)
        for i in range(count)
    )
    first = counter if first_number is None else first_number
    batch = CheckinBatch(first & 0xFFFF, events)
    return build_frame(batch, DEVICE_ID, counter, KEYS, ack_requested=ack, time_requested=time_requested)


def assert_published_as_documented(subscriber: Subscriber) -> None:
    """Every event is on its device's topic and valid against its JSON Schema."""
    events = [m for m in subscriber.messages if str(m.topic).rsplit("/", 1)[-1] in ("checkin", "telemetry", "status")]
    assert events
    for message in events:
        payload = json.loads(message.payload)
        kind = str(message.topic).rsplit("/", 1)[-1]
        assert (
            str(message.topic)
            == f"borne/{payload['site']}/{payload['device']}/{kind}"
            == f"borne/ecole-jaures/door-{DEVICE_ID}/{kind}"
        )
        jsonschema.validate(payload, schema(kind))


def event_ids(subscriber: Subscriber, kind: str) -> list[str]:
    return [payload["event_id"] for payload in subscriber.on(f"/{kind}")]


async def test_every_uplink_vector_comes_out_on_its_topic_and_validates(tmp_path, broker):
    async with Subscriber(broker.port) as subscriber, Site(tmp_path, broker.port, **EVERY_VECTOR) as site:
        expected = 0
        for case in UPLINKS:
            if case["last_counter"] is not None:  # a counter past 16 bits: the gateway must know the one before
                site.gateway.state.accept(DEVICE_ID, case["last_counter"], b"seed", [], seen_at=0, rssi_dbm=0, snr_db=0)
            site.radio.hear(bytes.fromhex(case["frame_hex"]))
            await site.settle()
            expected += len(case["fields"]["checkins"]) if case["type"] == "checkin" else 1
        await subscriber.wait_for(
            lambda: sum(len(subscriber.on(f"/{k}")) for k in ("checkin", "telemetry", "status")) >= expected
        )
        assert_published_as_documented(subscriber)
        by_counter = {payload["counter"]: payload for payload in subscriber.on("/telemetry")}
        for case in UPLINKS:
            if case["type"] == "telemetry":
                published = by_counter[case["counter"]]
                assert {k: published[k] for k in case["fields"]} == case["fields"]
        assert site.gateway.pipeline.rejected == {}


async def test_checkin_is_acked_after_commit_with_the_time_when_asked(tmp_path, broker):
    async with Subscriber(broker.port) as subscriber, Site(tmp_path, broker.port) as site:
        site.radio.hear(checkin(7, time_requested=True))
        await site.settle()
        assert len(site.radio.sent) == 1
        ack = open_frame(site.radio.sent[0].frame, KEYS, None, DOWN)
        assert (
            ack.message.acked_counter16 == 7
            and abs(ack.message.gateway_time - site.radio.sent[0].answers.received_at) < 5
        )
        assert site.radio.sent[0].frequency_hz == 869_525_000 and site.radio.sent[0].delay_us == 1_000_000
        assert site.gateway.state.pending(10) or event_ids(subscriber, "checkin") == ["258:checkin:7"]
        await subscriber.wait_for(lambda: event_ids(subscriber, "checkin") == ["258:checkin:7"])


async def test_same_frame_from_two_receivers_is_published_once_with_both_receptions(tmp_path, broker):
    async with Subscriber(broker.port) as subscriber, Site(tmp_path, broker.port) as site:
        frame = checkin(11, count=2)
        site.radio.hear(frame, snr_db=2.0)
        site.radio2.hear(frame, snr_db=9.5)
        await site.settle()
        await subscriber.wait_for(lambda: len(subscriber.on("/checkin")) == 2)
        await asyncio.sleep(0.3)
        published = subscriber.on("/checkin")
        assert [p["event_id"] for p in published] == ["258:checkin:11", "258:checkin:12"]
        assert sorted(r["source"] for r in published[0]["receptions"]) == ["sim", "sim2"]
        # The ACK goes out once, through the receiver that heard the node best.
        assert (len(site.radio.sent), len(site.radio2.sent)) == (0, 1)


async def test_an_ack_the_best_receiver_refuses_unsent_goes_through_the_next_that_heard_the_frame(tmp_path, broker):
    # A concentrator whose packet forwarder has not pulled yet (the daemon has just restarted) heard the
    # node best: it refuses the ACK at once, and the bridge that heard the node too sends it instead.
    udp = SemtechUdp(port=0)
    async with Site(tmp_path, broker.port, extra_sources=(udp,)) as site:
        forwarder = Forwarder(await udp.started())
        try:
            frame = checkin(21)
            forwarder.send_up(push_data(1, rxpk=[rxpk(frame, lsnr=9.5)]))
            await forwarder.heard_up()  # its PUSH_ACK: the concentrator's copy is in
            site.radio.hear(frame, snr_db=2.0)
            site.radio2.hear(frame, snr_db=1.0)
            await until(lambda: site.radio.sent)
        finally:
            forwarder.close()
        assert (len(site.radio.sent), len(site.radio2.sent)) == (1, 0)
        counters = site.gateway.pipeline.counters
        assert (counters["acks_failed_no_downlink_path"], counters["acks_sent"]) == (1, 1)


async def test_an_ack_heard_back_by_the_gateways_other_receiver_is_no_rejection(tmp_path, broker):
    # Downlinks keep IQ normal: a concentrator near the bridge hears the bridge's ACKs, and the reverse.
    async with Site(tmp_path, broker.port) as site:
        site.radio.hear(checkin(15))
        await site.settle()
        (ack,) = site.radio.sent
        site.radio2.hear(ack.frame)
        await site.settle()
        assert site.gateway.pipeline.rejected == {}
        assert site.gateway.pipeline.counters["own_downlinks_heard"] == 1
        site.radio2.hear(ack.frame[:-1] + bytes([ack.frame[-1] ^ 1]))  # not ours: refused as any downlink heard
        await site.settle()
        assert site.gateway.pipeline.rejected == {"wrong_direction": 1}


async def test_a_frame_waits_for_the_copy_of_every_receiver_and_no_longer(tmp_path, broker):
    # A window longer than the test may last (and ACKs later still): only the last receiver's copy can end it.
    long_window = Site(tmp_path, broker.port, dedup_window_ms=600_000, radio="ack_delay_ms = 600100\n")
    async with Subscriber(broker.port) as subscriber, long_window as site:
        await until(lambda: site.radio.connected and site.radio2.connected)
        frame = checkin(13)
        site.radio.hear(frame, snr_db=2.0)
        await site.radio.delivered()
        assert site.last_counter() is None and not site.radio.sent
        site.radio2.hear(frame, snr_db=9.5)
        await subscriber.wait_for(lambda: event_ids(subscriber, "checkin") == ["258:checkin:13"])
        assert sorted(r["source"] for r in subscriber.on("/checkin")[0]["receptions"]) == ["sim", "sim2"]
        assert site.gateway.pipeline.counters["windows_closed_early"] == 1


async def test_a_checkin_resent_after_telemetry_is_acked_again_not_republished(tmp_path, broker):
    async with Subscriber(broker.port) as subscriber, Site(tmp_path, broker.port) as site:
        frame = checkin(30)
        site.radio.hear(frame)
        site.radio.hear(telemetry(31))  # the node reported meanwhile; the ACK of 30 was lost
        await site.settle()
        site.gateway.pipeline._recent.clear()
        site.radio.hear(frame)
        await site.settle()
        assert len(site.radio.sent) == 2
        await subscriber.wait_for(lambda: len(subscriber.on("/telemetry")) == 1)
        assert event_ids(subscriber, "checkin") == ["258:checkin:30"]
        assert site.gateway.pipeline.rejected == {}


async def test_a_check_in_frame_built_again_is_acked_and_only_its_new_check_ins_are_published(tmp_path, broker):
    async with Subscriber(broker.port) as subscriber, Site(tmp_path, broker.port) as site:
        site.radio.hear(checkin(50, first_number=7, count=2))  # its ACK was lost
        await site.settle()
        site.radio.hear(telemetry(51))
        # Built again: a new counter, the same first number, and a check-in read meanwhile.
        site.radio.hear(checkin(52, first_number=7, count=3))
        await site.settle()
        assert [open_frame(d.frame, KEYS, None, DOWN).message.acked_counter16 for d in site.radio.sent] == [50, 52]
        await subscriber.wait_for(lambda: len(subscriber.on("/checkin")) >= 3 and subscriber.on("/telemetry"))
        await asyncio.sleep(0.3)
        assert event_ids(subscriber, "checkin") == ["258:checkin:7", "258:checkin:8", "258:checkin:9"]
        assert [p["counter"] for p in subscriber.on("/checkin")] == [50, 50, 52]
        assert site.gateway.pipeline.counters["checkins_published_before"] == 2
        assert site.gateway.pipeline.rejected == {}


async def test_check_in_numbers_resolve_past_16_bits_and_stay_published_after_a_restart(tmp_path, broker):
    async with Subscriber(broker.port) as subscriber:
        async with Site(tmp_path, broker.port) as site:
            site.radio.hear(checkin(1, first_number=0xFFFE, count=2))
            site.radio.hear(checkin(2, first_number=0x1_0000))
            await site.settle()
        async with Site(tmp_path, broker.port) as site:  # the same state file
            site.radio.hear(checkin(3, first_number=0xFFFF, count=3))  # a retry from before the wrap
            await site.settle()
            assert len(site.radio.sent) == 1
            assert site.gateway.pipeline.counters["checkins_published_before"] == 2
            expected = {f"258:checkin:{n}" for n in (65534, 65535, 65536, 65537)}
            # QoS 1: a message whose PUBACK the first run did not see is sent again, with its event id.
            await subscriber.wait_for(lambda: set(event_ids(subscriber, "checkin")) == expected)


async def test_retransmission_of_the_last_frame_is_acked_again_not_republished(tmp_path, broker):
    async with Subscriber(broker.port) as subscriber, Site(tmp_path, broker.port) as site:
        frame = checkin(20)
        site.radio.hear(frame)
        await site.settle()
        site.gateway.pipeline._recent.clear()  # the node retries after its receive window closed
        site.radio.hear(frame)
        await site.settle()
        assert len(site.radio.sent) == 2
        await subscriber.wait_for(lambda: len(subscriber.on("/checkin")) >= 1)
        await asyncio.sleep(0.3)
        assert event_ids(subscriber, "checkin") == ["258:checkin:20"]
        assert site.gateway.pipeline.counters["retransmissions"] == 1


@pytest.mark.parametrize(
    ("attack", "reason"),
    [
        ("replay", "replay"),
        ("older_than_the_window", "replay"),
        ("forged_mic", "bad_mic"),
        ("unknown_device", "unknown_device"),
        ("counter_far_ahead", "counter_gap"),
    ],
)
async def test_attacks_are_refused_counted_and_reported(tmp_path, broker, attack, reason):
    async with Subscriber(broker.port) as subscriber, Site(tmp_path, broker.port) as site:
        site.radio.hear(telemetry(100))
        await site.settle()
        site.gateway.pipeline._recent.clear()
        bad = {
            "replay": telemetry(100),
            "older_than_the_window": telemetry(100 - 65),
            "forged_mic": telemetry(101)[:-1] + bytes([telemetry(101)[-1] ^ 0xFF]),
            "unknown_device": build_frame(Telemetry(co2_ppm=1), 999, 1, derive_device_keys(TEST_MASTER_KEY, 999)),
            "counter_far_ahead": telemetry(100 + 20_000),
        }[attack]
        site.radio.hear(bad)
        await site.settle()
        assert site.gateway.pipeline.rejected[reason] == 1
        await subscriber.wait_for(lambda: subscriber.on("/rejected"))
        report = subscriber.on("/rejected")[0]
        jsonschema.validate(report, schema("rejected"))
        assert report["reason"] == reason and report["raw_hex"] == bad.hex()
        assert report["device_id"] == (999 if attack == "unknown_device" else DEVICE_ID)  # the id the header names
        await subscriber.wait_for(lambda: any(s["rejected"].get(reason) for s in subscriber.on("/stats")))
        assert len(subscriber.on("/telemetry")) == 1


async def test_a_frame_delayed_on_a_slower_path_is_accepted_when_its_counter_was_never_seen(tmp_path, broker):
    async with Subscriber(broker.port) as subscriber, Site(tmp_path, broker.port) as site:
        site.radio.hear(telemetry(40))
        await site.settle()
        # The check-in 41 reached only the slow path; the node's telemetry 42 overtook it.
        site.radio.hear(telemetry(42))
        await site.settle()
        site.radio2.hear(checkin(41))
        await site.settle()
        assert site.gateway.pipeline.rejected == {}
        assert site.gateway.state.window(DEVICE_ID)[0] == 42
        ack = open_frame(site.radio2.sent[0].frame, KEYS, None, DOWN)
        assert ack.message.acked_counter16 == 41
        await subscriber.wait_for(lambda: event_ids(subscriber, "checkin") == ["258:checkin:41"])
        await subscriber.wait_for(lambda: event_ids(subscriber, "telemetry") == ["258:40", "258:42"])


async def test_the_same_counter_twice_is_refused_as_a_replay_naming_the_last_accepted(tmp_path, broker):
    async with Subscriber(broker.port) as subscriber, Site(tmp_path, broker.port) as site:
        for frame in (telemetry(1), telemetry(3), telemetry(2, temperature=20.5)):
            site.radio.hear(frame)
            await site.settle()
        replayed = telemetry(2, temperature=31.0)  # other bytes, a counter already accepted
        site.radio.hear(replayed)
        await site.settle()
        assert site.gateway.pipeline.rejected == {"replay": 1}
        await subscriber.wait_for(lambda: subscriber.on("/rejected"))
        report = subscriber.on("/rejected")[0]
        assert (report["reason"], report["device_id"], report["raw_hex"]) == ("replay", DEVICE_ID, replayed.hex())
        assert "counter 2 was accepted before" in report["detail"] and "last accepted: 3" in report["detail"]
        await subscriber.wait_for(lambda: len(event_ids(subscriber, "telemetry")) == 3)
        assert sorted(event_ids(subscriber, "telemetry")) == ["258:1", "258:2", "258:3"]


@pytest.mark.parametrize("last", [500, 70_000], ids=["last below 65536", "last past 65536"])
@pytest.mark.parametrize(
    ("keys", "cause"),
    [(KEYS, "its MIC verifies"), (derive_device_keys(TEST_MASTER_KEY, DEVICE_ID + 1), "its MIC does not verify")],
    ids=["counters went back", "other keys"],
)
async def test_a_replay_says_whether_its_mic_verifies_so_an_erased_board_is_told_from_a_foreign_key(
    tmp_path, broker, keys, cause, last
):
    async with Subscriber(broker.port) as subscriber, Site(tmp_path, broker.port) as site:
        site.radio.hear(build_frame(STATUS_SAMPLE, DEVICE_ID, last, KEYS))  # its whole counter
        await site.settle()
        assert site.last_counter() == last
        # A board whose flash was erased counts from 0 again: its status (a full counter) and its
        # telemetry (16 bits) are below the window, whether it holds this device's key or another.
        for frame in (
            build_frame(STATUS_SAMPLE, DEVICE_ID, 1, keys),
            build_frame(Telemetry(co2_ppm=600), DEVICE_ID, 2, keys),
        ):
            site.radio.hear(frame)
            await site.settle()
        await subscriber.wait_for(lambda: len(subscriber.on("/rejected")) == 2)
        for report in subscriber.on("/rejected"):
            jsonschema.validate(report, schema("rejected"))
            assert report["reason"] == "replay"  # the wire contract's reason, checked before the MIC
            assert cause in report["detail"] and "borne board flash" in report["detail"]


def test_a_spent_counter_is_not_explained_as_an_old_frame() -> None:
    envelope = read_envelope(telemetry(0xFFFF_FFF0 & 0xFFFF))  # 16 bits ahead of the window, past 2**32
    assert isinstance(envelope, SealedEnvelope)
    device = Device(DEVICE_ID, "door", "site", "hall", KEYS)
    assert replay_cause(envelope, device, last=0xFFFF_FF00) is None


async def test_a_resent_older_frame_is_reported_with_the_last_accepted_counter(tmp_path, broker):
    async with Subscriber(broker.port) as subscriber, Site(tmp_path, broker.port) as site:
        older = telemetry(100)
        for frame in (older, telemetry(101)):
            site.radio.hear(frame)
            await site.settle()
        site.gateway.pipeline._recent.clear()
        site.radio.hear(older)  # the very bytes accepted before, without an ACK asked: a replay
        await site.settle()
        await subscriber.wait_for(lambda: subscriber.on("/rejected"))
        report = subscriber.on("/rejected")[0]
        jsonschema.validate(report, schema("rejected"))
        assert report["reason"] == "replay"
        assert report["detail"] == "copy of frame 100, accepted before (last accepted: 101)"


async def test_exactly_64_below_the_top_is_accepted_and_65_below_is_refused(tmp_path, broker):
    async with Site(tmp_path, broker.port) as site:
        for counter in (1, 200, 200 - 64):
            site.radio.hear(telemetry(counter))
            await site.settle()
        assert site.gateway.pipeline.rejected == {}
        site.radio.hear(telemetry(200 - 65))
        await site.settle()
        assert site.gateway.pipeline.rejected == {"replay": 1}
        assert site.gateway.pipeline.counters["accepted_telemetry"] == 3


async def test_the_window_survives_a_daemon_restart(tmp_path, broker):
    async with Site(tmp_path, broker.port) as site:
        for counter in (10, 12):  # 11 is late
            site.radio.hear(telemetry(counter))
        await site.settle()
    async with Site(tmp_path, broker.port) as site:
        site.radio.hear(telemetry(11))
        await site.settle()
        assert site.gateway.pipeline.rejected == {}
        site.radio.hear(telemetry(11, temperature=25.0))  # counter 11 again, other bytes
        site.radio.hear(telemetry(10, temperature=25.0))
        await site.settle()
        assert site.gateway.pipeline.rejected == {"replay": 2}
        assert site.gateway.pipeline.counters["accepted_telemetry"] == 1


def plain_checkin(counter: int) -> bytes:
    event = Checkin(badge_token=bytes(8), tag_type="ntag", direction="in", uid_length=7, age_s=1)
    return build_frame(CheckinBatch(counter, (event,)), DEVICE_ID, counter, KEYS, encrypt=False, ack_requested=True)


async def test_an_unencrypted_checkin_is_refused_counted_and_reported_by_default(tmp_path, broker, caplog):
    async with Subscriber(broker.port) as subscriber, Site(tmp_path, broker.port) as site:
        plain = plain_checkin(5)
        site.radio.hear(plain)
        await site.settle()
        assert site.gateway.pipeline.rejected == {"unencrypted_checkin": 1}
        assert site.radio.sent == []  # refused: not ACKed
        await subscriber.wait_for(lambda: subscriber.on("/rejected"))
        report = subscriber.on("/rejected")[0]
        jsonschema.validate(report, schema("rejected"))
        assert (report["reason"], report["device_id"], report["raw_hex"]) == (
            "unencrypted_checkin",
            DEVICE_ID,
            plain.hex(),
        )
        await subscriber.wait_for(
            lambda: any(s["rejected"].get("unencrypted_checkin") for s in subscriber.on("/stats"))
        )
        assert site.gateway.state.window(DEVICE_ID)[0] is None  # the counter was not taken
        site.radio.hear(checkin(6))
        await site.settle()
        await subscriber.wait_for(lambda: event_ids(subscriber, "checkin") == ["258:checkin:6"])
    assert "allow_unencrypted_checkins" not in caplog.text


async def test_unencrypted_checkins_are_accepted_when_allowed_and_the_daemon_warns(tmp_path, broker, caplog):
    caplog.set_level(logging.WARNING, logger="gateway_daemon.daemon")
    async with (
        Subscriber(broker.port) as subscriber,
        Site(tmp_path, broker.port, allow_unencrypted_checkins=True) as site,
    ):
        site.radio.hear(plain_checkin(5))
        await site.settle()
        await subscriber.wait_for(lambda: event_ids(subscriber, "checkin") == ["258:checkin:5"])
        assert site.gateway.pipeline.rejected == {}
        assert len(site.radio.sent) == 1
    warnings = [r for r in caplog.records if r.name == "gateway_daemon.daemon" and r.levelno == logging.WARNING]
    assert any("allow_unencrypted_checkins is on" in r.getMessage() for r in warnings)


async def test_replays_are_refused_after_a_gateway_restart(tmp_path, broker):
    older, last = telemetry(300), telemetry(301)
    async with Site(tmp_path, broker.port) as site:
        site.radio.hear(older)
        site.radio.hear(last)
        await site.settle()
    async with Site(tmp_path, broker.port) as site:
        site.radio.hear(older)
        site.radio.hear(last)
        await site.settle()
        assert site.gateway.pipeline.rejected["replay"] == 2


async def test_broker_outage_loses_no_event(tmp_path, broker):
    async with Subscriber(broker.port) as subscriber, Site(tmp_path, broker.port) as site:
        for counter in range(1, 11):
            site.radio.hear(checkin(counter, ack=False))
        await site.settle()
        await subscriber.wait_for(lambda: len(event_ids(subscriber, "checkin")) == 10)
        broker.stop()
        for counter in range(11, 51):
            site.radio.hear(checkin(counter, ack=False))
        await site.settle()
        assert site.gateway.state.depth() == 40
        broker.start()
        expected = {f"258:checkin:{c}" for c in range(1, 51)}
        await subscriber.wait_for(lambda: expected <= set(event_ids(subscriber, "checkin")), timeout=45)
        # The subscriber can see a message before its PUBACK is back at the gateway.
        await subscriber.wait_for(lambda: site.gateway.state.depth() == 0)


async def test_a_state_file_that_cannot_record_deliveries_does_not_make_the_broker_take_them_again(
    tmp_path, broker, caplog
):
    # A full disk: the broker takes each event, the state file cannot record it. Each used to tear the
    # connection down and publish the whole outbox again at once, about once a second.
    async with Subscriber(broker.port) as subscriber, Site(tmp_path, broker.port) as site:
        state = site.gateway.state
        broker.stop()
        for counter in range(1, 5):
            site.radio.hear(checkin(counter, ack=False))
        await site.settle()
        assert state.depth() == 4
        recorded = state.delivered
        full: list[int] = []

        def disk_full(seq: int) -> None:
            full.append(seq)
            raise sqlite3.OperationalError("database or disk is full")

        state.delivered = disk_full  # type: ignore[method-assign]
        broker.start()
        await subscriber.wait_for(lambda: len(event_ids(subscriber, "checkin")) == 4)
        await asyncio.sleep(3 * gateway_mqtt.STATE_RETRY_S)  # the state file still full
        assert sorted(event_ids(subscriber, "checkin")) == [f"258:checkin:{c}" for c in range(1, 5)]  # once each
        assert site.gateway.publisher.reconnects == 1  # the broker's restart only
        (said,) = [r for r in caplog.records if "cannot be written" in r.getMessage()]
        assert said.levelname == "ERROR" and str(state.path) in said.getMessage()
        assert "kept in memory until it can record them" in said.getMessage()
        state.delivered = recorded  # type: ignore[method-assign]
        await until(lambda: state.depth() == 0, timeout=3 * gateway_mqtt.STATE_RETRY_S)
    assert len(event_ids(subscriber, "checkin")) == 4
    assert len(set(full)) == 4


async def test_a_full_state_file_refuses_frames_unacknowledged_and_says_what_to_do(tmp_path, broker, caplog):
    caplog.set_level(logging.INFO, logger="gateway_daemon")
    async with Subscriber(broker.port) as subscriber, Site(tmp_path, broker.port) as site:
        state = site.gateway.state
        pages = state._db.execute("PRAGMA page_count").fetchone()[0]
        state._db.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own "database or disk is full"
        for counter in range(1, 80):  # enough events to need a page more
            site.radio.hear(checkin(counter))
        await site.settle()
        refused = site.gateway.pipeline.counters["state_write_errors"]
        assert refused >= 1 and site.gateway.pipeline.counters["processing_errors"] == 0
        errors = [r for r in caplog.records if r.levelname == "ERROR"]
        assert len(errors) == 1  # said once, however many frames
        assert f"the state file {state.path} cannot be written (database or disk is full)" in errors[0].getMessage()
        assert "check the free space on its disk" in errors[0].getMessage()
        state._db.execute("PRAGMA max_page_count = 1073741823")
        site.radio.hear(checkin(80))
        await site.settle()
        assert any("takes writes again" in r.getMessage() for r in caplog.records)
        await subscriber.wait_for(lambda: "258:checkin:80" in event_ids(subscriber, "checkin"))


async def test_gateway_state_is_retained_online_and_discovery_is_published(tmp_path, broker):
    async with Subscriber(broker.port) as subscriber, Site(tmp_path, broker.port):
        await subscriber.wait_for(
            lambda: any(str(m.topic).endswith("/tag/borne_258/config") for m in subscriber.messages)
        )
        state = [m for m in subscriber.messages if str(m.topic) == "borne/gateway/gw-test/state"]
        assert state[-1].payload == b"online"
        sensor = json.loads(
            next(m.payload for m in subscriber.messages if str(m.topic).endswith("borne_258/temperature_c/config"))
        )
        assert sensor["device_class"] == "temperature" and sensor["unit_of_measurement"] == "°C"
        assert sensor["expire_after"] == 900
        for stats in subscriber.on("/stats"):
            jsonschema.validate(stats, schema("stats"))


async def test_prometheus_metrics_are_served_when_a_port_is_set(tmp_path, broker):
    port = free_port()
    async with Site(tmp_path, broker.port, metrics_port=port) as site:
        site.radio.hear(telemetry(5))
        site.radio.hear(telemetry(5)[:-1] + b"\x00")
        await site.settle()
        async with asyncio.timeout(10):
            while True:
                try:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    break
                except OSError:
                    await asyncio.sleep(0.05)
            writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            text = (await reader.read()).decode()
        assert text.startswith("HTTP/1.1 200 OK")
        assert 'borne_pipeline_total{what="accepted_telemetry"} 1.0' in text
        assert 'borne_device_rssi_dbm{device="258"} -80.0' in text
        assert "borne_outbox_depth" in text


async def test_status_command_shows_devices_signal_battery_losses_and_outbox(tmp_path, broker):
    write_registry(tmp_path / "devices.toml", (DEVICE_ID, 259))  # 259 is never heard
    async with Site(tmp_path, broker.port) as site:
        for counter in (1, 2, 5):  # frames 3 and 4 never arrive
            site.radio.hear(build_frame(Telemetry(battery_mv=3650), DEVICE_ID, counter, KEYS), rssi_dbm=-97, snr_db=4.5)
        await site.settle()
    config = tmp_path / "gateway.toml"
    config.write_text(config_text(tmp_path, broker.port))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "borne", "gateway", "status", "--config", str(config), stdout=asyncio.subprocess.PIPE
    )
    output = (await process.communicate())[0].decode()
    assert process.returncode == 0
    (line,) = [line for line in output.splitlines() if line.strip().startswith("258")]
    assert "ecole-jaures/door-258" in line and "-97" in line and "3650 mV" in line
    assert line.split()[-2:] == ["3", "2"]  # frames heard, frames lost
    assert "registered, not heard yet: 259 door-259 (each appears above with its first frame)" in output
    assert "outbox:" in output


def status(counter: int, keys=KEYS, next_downlink_counter: int = 0) -> bytes:
    return build_frame(replace(STATUS_SAMPLE, next_downlink_counter=next_downlink_counter), DEVICE_ID, counter, keys)


async def test_a_gateway_whose_state_file_was_deleted_learns_the_counter_again_from_a_status_frame(tmp_path, broker):
    async with Site(tmp_path, broker.port) as site:
        site.radio.hear(status(70_000))  # past 16 bits: only a frame with the whole counter is learnt from nothing
        await site.settle()
        site.radio.hear(telemetry(70_001))
        await site.settle()
        assert site.last_counter() == 70_001
    for path in tmp_path.glob("state.db*"):
        path.unlink()
    async with Site(tmp_path, broker.port) as site:
        site.radio.hear(telemetry(70_002))  # its 16 bits resolve to 4466, whose MIC fails: nothing is stored
        await site.settle()
        assert (site.gateway.pipeline.rejected, site.last_counter()) == ({"bad_mic": 1}, None)
        site.radio.hear(status(70_003))
        await site.settle()
        site.radio.hear(telemetry(70_004))
        await site.settle()
        assert site.last_counter() == 70_004
        site.radio.hear(status(70_000))  # recorded before the state was lost: older than the window
        await site.settle()
        assert site.gateway.pipeline.rejected == {"bad_mic": 1, "replay": 1}


async def test_after_its_state_was_lost_the_gateway_continues_the_downlink_counter_the_node_reports(tmp_path, broker):
    async with Site(tmp_path, broker.port) as site:
        site.radio.hear(checkin(10))
        await site.settle()
    for path in tmp_path.glob("state.db*"):
        path.unlink()
    async with Site(tmp_path, broker.port) as site:
        site.radio.hear(status(11, next_downlink_counter=5_000))  # the node accepted downlink 4999 last
        await site.settle()
        site.radio.hear(checkin(12))
        await site.settle()
        ack = open_frame(site.radio.sent[-1].frame, KEYS, 4_999, DOWN)  # as the node reads it
        assert not isinstance(ack, CodecError), ack
        assert (ack.counter, ack.message.acked_counter16) == (5_000, 12)
        site.radio.hear(status(13, next_downlink_counter=10))  # older news: the counter never goes back
        site.radio.hear(checkin(14))
        await site.settle()
        assert open_frame(site.radio.sent[-1].frame, KEYS, 5_000, DOWN).counter == 5_001


async def test_a_device_back_after_a_long_silence_is_heard_again_from_its_next_status_frame(tmp_path, broker):
    async with Site(tmp_path, broker.port) as site:
        site.radio.hear(telemetry(100))
        await site.settle()
        site.radio.hear(telemetry(100 + 20_000))  # more than the 16,384 frames 16 bits may skip
        await site.settle()
        assert site.gateway.pipeline.rejected == {"counter_gap": 1}
        site.radio.hear(status(100 + 20_001))
        await site.settle()
        site.radio.hear(telemetry(100 + 20_002))
        await site.settle()
        assert site.last_counter() == 100 + 20_002
        assert site.gateway.pipeline.counters["accepted_telemetry"] == 2


async def test_a_new_key_epoch_in_the_reloaded_registry_starts_the_device_over(tmp_path, broker):
    new_keys = derive_device_keys(TEST_MASTER_KEY, DEVICE_ID, 1)
    async with Site(tmp_path, broker.port) as site:
        site.radio.hear(telemetry(500))
        await site.settle()
        write_registry(tmp_path / "devices.toml", key_epoch=1)  # the device was flashed onto another board
        site.gateway.reload_registry()
        assert site.last_counter() is None
        site.radio.hear(build_frame(Telemetry(co2_ppm=700), DEVICE_ID, 0, new_keys))  # it counts from 0 again
        await site.settle()
        assert site.last_counter() == 0
        site.radio.hear(telemetry(501))  # the old board, or a recording, under the old keys
        await site.settle()
        assert site.gateway.pipeline.rejected == {"bad_mic": 1}
    async with Site(tmp_path, broker.port) as site:  # a restart keeps the new epoch's counters
        assert site.last_counter() == 0


async def test_a_registry_file_gone_keeps_the_devices_loaded_and_says_so(tmp_path, broker, caplog):
    async with Site(tmp_path, broker.port) as site:
        site.radio.hear(telemetry(1))
        await site.settle()
        (tmp_path / "devices.toml").rename(tmp_path / "devices.away")  # a hand's slip
        site.gateway.reload_registry()  # SIGHUP
        site.radio.hear(telemetry(2))
        site.radio.hear(telemetry(3))
        await site.settle()
        assert site.last_counter() == 3 and "unknown_device" not in site.gateway.pipeline.rejected
        (said,) = [r for r in caplog.records if "is gone or empty" in r.getMessage()]  # once
        assert said.levelname == "ERROR" and "keeping the devices already loaded (1)" in said.getMessage()
        (tmp_path / "devices.away").rename(tmp_path / "devices.toml")
        site.radio.hear(telemetry(4))
        await site.settle()
        assert site.last_counter() == 4
        (tmp_path / "devices.toml").write_bytes(b"")  # an editor, a full disk: emptied, not saved by borne
        site.radio.hear(telemetry(5))
        await site.settle()
        assert site.last_counter() == 5
        assert len([r for r in caplog.records if "is gone or empty" in r.getMessage()]) == 2
