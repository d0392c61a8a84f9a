"""Properties of the air frames, for every message type.

Round trips hold for every valid message; whatever is done to a valid frame, the
codec answers with one of its error values and never with another exception.
"""

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payload_codec import (
    AGE_MAX_S,
    DOWN,
    MESSAGE_TYPES,
    UP,
    Ack,
    Checkin,
    CheckinBatch,
    CodecError,
    Config,
    Message,
    Status,
    Telemetry,
    build_frame,
    decode_body,
    derive_device_keys,
    encode_body,
    message_from_json,
    open_frame,
    read_envelope,
)
from payload_codec.errors import FRAME_REASONS

from .strategies import FIELDS_BY_TYPE, MESSAGES_BY_TYPE

KEYS = derive_device_keys(bytes(range(16)), 0x0102)
OTHER_KEYS = derive_device_keys(bytes(range(1, 17)), 0x0102)
TYPES = [kind.name for kind in MESSAGE_TYPES]
DIRECTION = {kind.name: kind.direction for kind in MESSAGE_TYPES}


@st.composite
def frames(draw, msg_type=None):
    """A valid frame with what a receiver needs to open it."""
    msg_type = msg_type or draw(st.sampled_from(TYPES))
    message = draw(MESSAGES_BY_TYPE[msg_type])
    last = draw(st.none() | st.integers(0, 0xFFFF_0000))
    counter = draw(st.integers(0, 0xFFFF)) if last is None else last + draw(st.integers(1, 16384))
    uplink = DIRECTION[msg_type] == UP
    options = {
        "encrypt": draw(st.booleans()),
        "ack_requested": uplink and draw(st.booleans()),
        "time_requested": uplink and draw(st.booleans()),
    }
    raw = build_frame(message, 0x0102, counter, KEYS, **options)
    return msg_type, message, counter, last, raw


def _open(raw, last, msg_type, keys=KEYS):
    return open_frame(raw, keys, last, DIRECTION[msg_type])


@pytest.mark.parametrize("msg_type", TYPES)
@given(data=st.data())
def test_parse_of_build_is_identity(msg_type, data):
    msg_type, message, counter, last, raw = data.draw(frames(msg_type))
    frame = _open(raw, last, msg_type)
    assert not isinstance(frame, CodecError), frame
    assert (frame.message, frame.counter, frame.msg_type) == (message, counter, msg_type)


@pytest.mark.parametrize("msg_type", TYPES)
@given(data=st.data())
def test_build_of_parse_is_identity_on_bodies(msg_type, data):
    body = encode_body(data.draw(MESSAGES_BY_TYPE[msg_type]))
    assert encode_body(decode_body(msg_type, body)) == body


@pytest.mark.parametrize("msg_type", TYPES)
@given(data=st.data())
def test_json_form_of_a_message_reads_back_as_the_same_message(msg_type, data):
    fields = data.draw(FIELDS_BY_TYPE[msg_type])
    message = message_from_json(msg_type, fields)
    assert type(message).msg_type.name == msg_type
    assert message.to_json() == fields
    # Keys in the order of the message's fields, the order they are published in.
    assert list(message.to_json()) == [field.name for field in dataclasses.fields(message) if field.name in fields]
    assert type(message).from_json(message.to_json()) == message


@given(frames(), st.data())
def test_any_bit_flip_is_refused(frame, data):
    msg_type, _, _, last, raw = frame
    bit = data.draw(st.integers(0, len(raw) * 8 - 1))
    flipped = bytearray(raw)
    flipped[bit // 8] ^= 1 << (bit % 8)
    result = _open(bytes(flipped), last, msg_type)
    assert isinstance(result, CodecError) and result.reason in FRAME_REASONS


@pytest.mark.parametrize("msg_type", TYPES)
def test_every_single_bit_flip_of_a_frame_is_refused(msg_type):
    example = {
        "checkin": {
            "first_number16": 3,
            "checkins": [{"badge_token": "00" * 8, "tag_type": "ntag", "direction": "in", "uid_length": 7, "age_s": 3}]
            * 3,
        },
        "telemetry": {"temperature_c": 20.0, "co2_ppm": 500},
        "status": {"firmware": "1.0.0", "uptime_s": 60},
        "ack": {"acked_counter16": 12, "gateway_time": 1_800_000_000},
        "config": {"report_interval_s": 300, "reboot": True},
    }[msg_type]
    raw = build_frame(message_from_json(msg_type, example), 0x0102, 70_000, KEYS)
    for bit in range(len(raw) * 8):
        flipped = bytearray(raw)
        flipped[bit // 8] ^= 1 << (bit % 8)
        assert isinstance(_open(bytes(flipped), 69_999, msg_type), CodecError), f"bit {bit} flipped was accepted"


@given(frames(), st.integers(1, 40))
def test_truncated_frame_is_refused(frame, cut):
    msg_type, _, _, last, raw = frame
    assert isinstance(_open(raw[:-cut], last, msg_type), CodecError)


@given(frames(), st.binary(min_size=1, max_size=40))
def test_extended_frame_is_refused(frame, tail):
    msg_type, _, _, last, raw = frame
    assert isinstance(_open(raw + tail, last, msg_type), CodecError)


@given(frames())
def test_frame_under_another_key_is_refused_as_forged(frame):
    msg_type, _, _, last, raw = frame
    result = _open(raw, last, msg_type, keys=OTHER_KEYS)
    assert isinstance(result, CodecError) and result.reason == "bad_mic"


@given(frames(), st.integers(0, 100))
def test_replayed_frame_is_refused(frame, later):
    msg_type, _, counter, _, raw = frame
    result = _open(raw, counter + later, msg_type)
    assert isinstance(result, CodecError) and result.reason == "replay"


@given(st.binary(max_size=300), st.sampled_from([UP, DOWN]))
def test_random_bytes_give_only_codec_errors(raw, direction):
    result = open_frame(raw, KEYS, None, direction)
    assert isinstance(result, CodecError) and result.reason in FRAME_REASONS


@given(st.sampled_from(TYPES), st.binary(max_size=250))
def test_random_bodies_give_messages_or_codec_errors(msg_type, body):
    result = decode_body(msg_type, body)
    assert isinstance(result, Message | CodecError)
    if not isinstance(result, CodecError):
        assert result.msg_type.name == msg_type
        assert encode_body(result) == body


@given(frames())
def test_envelope_needs_no_key_and_names_the_sender(frame):
    msg_type, _, counter, _, raw = frame
    envelope = read_envelope(raw, DIRECTION[msg_type])
    assert (envelope.device_id, envelope.counter16, envelope.msg_type.name) == (0x0102, counter & 0xFFFF, msg_type)


def test_builder_refuses_fields_it_cannot_carry():
    for msg_type, fields in [
        ("telemetry", {"temperature_c": 400.0}),
        ("telemetry", {"humidity_pct": 100.5}),
        ("telemetry", {"wind_kmh": 3}),
        ("telemetry", {}),
        ("checkin", {"first_number16": 0, "checkins": []}),
        ("checkin", {"checkins": [{"badge_token": "00" * 8, "uid_length": 7, "age_s": 1}]}),
        ("checkin", {"first_number16": 0, "checkins": [{"badge_token": "zz", "uid_length": 7, "age_s": 1}]}),
        ("config", {"spreading_factor": 13}),
        ("status", {"firmware": "1.2", "uptime_s": 5}),
        ("ack", {"acked_counter16": 70_000}),
        ("config", {"report_interval_s": float("nan")}),
        ("config", {"report_interval_s": 300.4}),
        ("config", {"reboot": 1}),
        ("status", {"firmware": "1.0.0", "uptime_s": 5, "bogus": 1}),
        ("checkin", {"first_number16": 0, "checkins": ["not an event"]}),
    ]:
        with pytest.raises(CodecError) as refused:
            build_frame(message_from_json(msg_type, fields), 1, 1, KEYS)
        assert refused.value.reason in {"bad_value", "unknown_field"}, fields


TOKEN = bytes(8)


@pytest.mark.parametrize(
    "message",
    [
        Telemetry(temperature_c=400.0),
        Telemetry(humidity_pct=100.5),
        Telemetry(co2_ppm=True),
        Telemetry(),
        CheckinBatch(0, ()),
        CheckinBatch(0, tuple(Checkin(badge_token=TOKEN, uid_length=7, age_s=1) for _ in range(17))),
        CheckinBatch(0, (Checkin(badge_token=bytes(7), uid_length=7, age_s=1),)),
        CheckinBatch(0, (Checkin(badge_token=TOKEN.hex(), uid_length=7, age_s=1),)),
        CheckinBatch(0, (Checkin(badge_token=TOKEN, uid_length=8, age_s=1),)),
        CheckinBatch(0, (Checkin(badge_token=TOKEN, direction="sideways", uid_length=7, age_s=1),)),
        CheckinBatch(0, (Checkin(badge_token=TOKEN, tag_type="felica", uid_length=7, age_s=1),)),
        CheckinBatch(0, (Checkin(badge_token=TOKEN, uid_length=7, age_s=-1),)),
        CheckinBatch(0, ({"badge_token": TOKEN.hex(), "uid_length": 7, "age_s": 1},)),
        Status(firmware="1.2", uptime_s=5),
        Status(firmware="1.2.3", uptime_s=5, reset_cause="meteor"),
        Status(firmware="1.2.3", uptime_s=5, sensor_faults=("wind_kmh",)),
        Status(firmware="1.2.3", uptime_s=5, queue_depth=65536),
        Ack(acked_counter16=70_000),
        Ack(acked_counter16=1, gateway_time=2**32),
        Config(spreading_factor=13),
        Config(checkin_direction="sideways"),
        Config(reboot="yes"),
        Config(),
    ],
    ids=repr,
)
def test_builder_refuses_typed_values_the_contract_cannot_carry(message):
    with pytest.raises(CodecError) as refused:
        build_frame(message, 1, 1, KEYS)
    assert refused.value.reason == "bad_value"


@pytest.mark.parametrize(
    ("age_s", "raw"),
    [
        (32767, 0x7FFF),  # the last whole second
        (32797, 0x8000),  # under half a minute past: down
        (32798, 0x8001),  # half a minute: up, not to the even minute
        (32918, 0x8003),  # two and a half minutes: up
        (AGE_MAX_S, 0xFFFF),
        (AGE_MAX_S + 29, 0xFFFF),  # rounds into the field
    ],
)
def test_an_age_in_minutes_rounds_a_half_minute_up(age_s, raw):
    batch = CheckinBatch(0, (Checkin(badge_token=TOKEN, uid_length=7, age_s=age_s),))
    assert encode_body(batch)[-2:] == raw.to_bytes(2, "little")


def test_an_age_past_what_rounds_into_the_field_is_refused():
    batch = CheckinBatch(0, (Checkin(badge_token=TOKEN, uid_length=7, age_s=AGE_MAX_S + 30),))
    with pytest.raises(CodecError) as refused:
        encode_body(batch)
    assert refused.value.reason == "bad_value"
    assert f"from 0 to {AGE_MAX_S + 29}" in refused.value.detail


def test_builder_refuses_what_is_not_a_message():
    with pytest.raises(CodecError) as refused:
        build_frame({"acked_counter16": 1}, 1, 1, KEYS)
    assert refused.value.reason == "unknown_type"


def test_json_of_an_unknown_type_is_refused():
    with pytest.raises(CodecError) as refused:
        message_from_json("weather", {"temperature_c": 20.0})
    assert refused.value.reason == "unknown_type"


def test_downlinks_cannot_request_acks():
    with pytest.raises(CodecError):
        build_frame(Ack(acked_counter16=1), 1, 1, KEYS, ack_requested=True)
