"""The bridge's serial records: round trips, and a stream that survives any garbage."""

from hypothesis import given
from hypothesis import strategies as st

from payload_codec import CodecError
from payload_codec.bridge_link import (
    LOG_LEVELS,
    MAX_ENCODED_SIZE,
    TX_RESULTS,
    TX_TIMINGS,
    Record,
    RecordStream,
    encode_record,
)
from payload_codec.errors import RECORD_REASONS
from payload_codec.schema import MAX_FRAME_SIZE

u8, u16, u32 = st.integers(0, 0xFF), st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF)
frames_hex = st.binary(min_size=1, max_size=MAX_FRAME_SIZE).map(bytes.hex)
radio = {"frequency_hz": u32, "spreading_factor": u8, "bandwidth_hz": u32, "coding_rate": u8}

records = st.one_of(
    st.tuples(
        st.just("received"),
        st.fixed_dictionaries(
            {
                **radio,
                "rssi_dbm": st.integers(-32768, 32767),
                "snr_db": st.integers(-128, 127).map(lambda q: q / 4),
                "timestamp_us": u32,
                "frame": frames_hex,
            }
        ),
    ),
    st.tuples(
        st.just("transmit"),
        st.fixed_dictionaries(
            {
                "tx_id": u16,
                **radio,
                "tx_power_dbm": st.integers(-128, 127),
                "timing": st.sampled_from(TX_TIMINGS),
                "timestamp_us": u32,
                "frame": frames_hex,
            }
        ),
    ),
    st.tuples(
        st.just("transmit_result"),
        st.fixed_dictionaries({"tx_id": u16, "result": st.sampled_from(TX_RESULTS), "airtime_us": u32}),
    ),
    st.tuples(
        st.just("heartbeat"),
        st.fixed_dictionaries(
            {
                "link_version": u8,
                "firmware_major": u8,
                "firmware_minor": u8,
                "firmware_patch": u8,
                "uptime_s": u32,
                "received": u32,
                "transmitted": u32,
                "radio_errors": u16,
                "records_dropped": u16,
            }
        ),
    ),
    st.tuples(
        st.just("log"),
        st.fixed_dictionaries({"level": st.sampled_from(LOG_LEVELS), "text": st.text(max_size=200)}),
    ),
)


@given(records)
def test_record_round_trips(record):
    kind, fields = record
    assert RecordStream().feed(encode_record(kind, fields)) == [Record(kind, fields)]


@given(st.lists(records, max_size=8), st.lists(st.integers(1, 64), max_size=20))
def test_records_survive_any_chunking(batch, cuts):
    stream = RecordStream()
    line = b"".join(encode_record(kind, fields) for kind, fields in batch)
    received, start = [], 0
    for cut in [*cuts, len(line)]:
        received += stream.feed(line[start : start + cut])
        start += cut
    received += stream.feed(line[start:])
    assert received == [Record(kind, fields) for kind, fields in batch]


@given(st.lists(st.tuples(st.binary(max_size=600), records), min_size=1, max_size=6))
def test_garbage_between_records_costs_no_record(pieces):
    """Garbage yields error values in its place; every record after it still comes out."""
    stream = RecordStream()
    results = []
    for garbage, (kind, fields) in pieces:
        results += stream.feed(garbage)
        results += stream.feed(encode_record(kind, fields))
    records_out = [r for r in results if isinstance(r, Record)]
    errors = [r for r in results if isinstance(r, CodecError)]
    expected = [Record(kind, fields) for _, (kind, fields) in pieces]
    # Garbage can itself decode as a record only if it holds a valid CRC-16: allow for that chance.
    assert [r for r in records_out if r in expected] == expected
    assert all(error.reason in RECORD_REASONS for error in errors)


@given(st.binary(max_size=4000))
def test_random_bytes_never_raise(data):
    results = RecordStream().feed(data)
    assert all(isinstance(r, (Record, CodecError)) for r in results)


def test_endless_garbage_is_reported_once_and_bounded():
    stream = RecordStream()
    errors = []
    for _ in range(100):
        errors += stream.feed(b"\xff" * 1000)
    assert [e.reason for e in errors] == ["too_long"]
    assert len(stream._pending) <= MAX_ENCODED_SIZE
    record = encode_record("transmit_result", {"tx_id": 9, "result": "sent", "airtime_us": 1})
    assert stream.feed(record)[-1] == Record("transmit_result", {"tx_id": 9, "result": "sent", "airtime_us": 1})


def test_every_single_bit_flip_of_a_record_is_refused():
    record = encode_record(
        "received",
        {
            "frequency_hz": 868_100_000,
            "spreading_factor": 7,
            "bandwidth_hz": 125_000,
            "coding_rate": 5,
            "rssi_dbm": -60,
            "snr_db": 9.5,
            "timestamp_us": 5,
            "frame": "50" * 18,
        },
    )
    for bit in range(8, (len(record) - 1) * 8):  # the bytes between the two delimiters
        flipped = bytearray(record)
        flipped[bit // 8] ^= 1 << (bit % 8)
        assert not any(isinstance(r, Record) for r in RecordStream().feed(bytes(flipped))), f"bit {bit}"


def test_largest_transmit_request_fits_the_stream_limit():
    fields = {
        "tx_id": 1,
        "frequency_hz": 1,
        "spreading_factor": 7,
        "bandwidth_hz": 1,
        "coding_rate": 5,
        "tx_power_dbm": 14,
        "timing": "immediate",
        "timestamp_us": 0,
        "frame": "ff" * MAX_FRAME_SIZE,
    }
    assert RecordStream().feed(encode_record("transmit", fields)) == [Record("transmit", fields)]
