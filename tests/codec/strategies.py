"""Hypothesis strategies for valid messages: every field on its grid, every layout reachable.

`FIELDS_BY_TYPE` draws the JSON form of a message, `MESSAGES_BY_TYPE` the typed message.
"""

from __future__ import annotations

from hypothesis import strategies as st

from payload_codec.messages import field_range, message_from_json
from payload_codec.schema import (
    AGE_MAX_S,
    AGE_SECONDS_LIMIT,
    CONFIG_FIELDS,
    DIRECTIONS,
    MAX_CHECKINS,
    RESET_CAUSES,
    TAG_TYPES,
    TELEMETRY_FIELDS,
    UID_LENGTHS,
    BitmapField,
)

ages = st.one_of(
    st.integers(0, AGE_SECONDS_LIMIT - 1),
    st.integers(0, (AGE_MAX_S - AGE_SECONDS_LIMIT) // 60).map(lambda minutes: AGE_SECONDS_LIMIT + minutes * 60),
)

checkin = st.fixed_dictionaries(
    {
        "badge_token": st.binary(min_size=8, max_size=8).map(bytes.hex),
        "tag_type": st.sampled_from(TAG_TYPES),
        "direction": st.sampled_from(DIRECTIONS),
        "uid_length": st.sampled_from(UID_LENGTHS),
        "age_s": ages,
        "age_is_bound": st.booleans(),
    }
)
checkin_fields = st.fixed_dictionaries(
    {"first_number16": st.integers(0, 0xFFFF), "checkins": st.lists(checkin, min_size=1, max_size=MAX_CHECKINS)}
)


def _value(field: BitmapField) -> st.SearchStrategy:
    if field.fmt is None:
        return st.just(True)
    low, high = field_range(field)
    raws = st.integers(low, high)
    if field.enum:
        return raws.filter(lambda raw: raw < len(field.enum)).map(lambda raw: field.enum[raw])
    if field.divisor > 1:
        return raws.map(lambda raw: raw / field.divisor)
    return raws.map(lambda raw: field.offset + raw * field.step)


def _bitmap_fields(table: tuple[BitmapField, ...]) -> st.SearchStrategy:
    return st.fixed_dictionaries({}, optional={f.name: _value(f) for f in table}).filter(bool)


telemetry_fields = _bitmap_fields(TELEMETRY_FIELDS)
config_fields = _bitmap_fields(CONFIG_FIELDS)

status_fields = st.fixed_dictionaries(
    {
        "firmware": st.tuples(*[st.integers(0, 255)] * 3).map(lambda v: ".".join(map(str, v))),
        "uptime_s": st.integers(0, 0xFFFFFFFF),
        "reset_cause": st.sampled_from(RESET_CAUSES),
        "sensor_faults": st.sets(st.sampled_from([f.name for f in TELEMETRY_FIELDS])).map(
            lambda names: [f.name for f in TELEMETRY_FIELDS if f.name in names]
        ),
        **{
            name: st.integers(0, 0xFFFF)
            for name in (
                "queue_depth",
                "checkins_dropped",
                "radio_errors",
                "reader_errors",
                "flash_errors",
                "duty_cycle_deferrals",
                "config_digest",
            )
        },
        "next_downlink_counter": st.integers(0, 0xFFFFFFFF),
    }
)

ack_fields = st.fixed_dictionaries(
    {"acked_counter16": st.integers(0, 0xFFFF)}, optional={"gateway_time": st.integers(0, 0xFFFFFFFF)}
)

FIELDS_BY_TYPE = {
    "checkin": checkin_fields,
    "telemetry": telemetry_fields,
    "status": status_fields,
    "ack": ack_fields,
    "config": config_fields,
}
MESSAGES_BY_TYPE = {
    msg_type: fields.map(lambda fields, msg_type=msg_type: message_from_json(msg_type, fields))
    for msg_type, fields in FIELDS_BY_TYPE.items()
}
