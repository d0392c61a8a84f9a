"""Bytes and time on air against LoRaWAN + Cayenne LPP and JSON; gateway decode speed.

Every figure is computed here from real encodings: Borne's own codec, the
`pycayennelpp` encoder inside a LoRaWAN frame's minimum 13-byte overhead, and
short-key JSON carrying the same device id, counter and MIC.
"""

from __future__ import annotations

import json
import statistics
import timeit

from cayennelpp import LppFrame

from payload_codec import Ack, Checkin, CheckinBatch, Frame, Telemetry, build_frame, derive_device_keys, open_frame
from payload_codec.airtime import time_on_air_ms
from payload_codec.messages import decode_body, encode_body
from payload_codec.schema import BODY_SCHEMAS, COMPILED_BODY_SCHEMAS
from payload_codec.vectorgen import TELEMETRY_SAMPLE

LORAWAN_OVERHEAD = 13  # MHDR 1 + DevAddr 4 + FCtrl 1 + FCnt 2 + FPort 1 + MIC 4
LORAWAN_EMPTY_ACK = 12  # a downlink with the ACK bit and no FPort/payload
LORAWAN_DEVICE_TIME_ACK = 12 + 6  # + DeviceTimeAns (CID + 5 bytes) in FOpts
KEYS = derive_device_keys(bytes(range(16)), 0x0102)
TOKEN = "9f86d081884c7d65"
FIVE_VALUES = {
    k: TELEMETRY_SAMPLE[k] for k in ("temperature_c", "humidity_pct", "pressure_hpa", "co2_ppm", "battery_mv")
}
FIVE = Telemetry.from_json(FIVE_VALUES)


def _checkins(n: int) -> CheckinBatch:
    token = bytes.fromhex(TOKEN)
    return CheckinBatch(
        42,
        tuple(
            Checkin(badge_token=token, tag_type="ntag", direction="in", uid_length=7, age_s=30 + i) for i in range(n)
        ),
    )


def _lpp_telemetry() -> int:
    frame = LppFrame()
    frame.add_temperature(1, FIVE_VALUES["temperature_c"])
    frame.add_humidity(2, FIVE_VALUES["humidity_pct"])
    frame.add_pressure(3, FIVE_VALUES["pressure_hpa"])
    frame.add_concentration(4, FIVE_VALUES["co2_ppm"])
    frame.add_voltage(5, FIVE_VALUES["battery_mv"] / 1000)
    return len(bytes(frame))


def _lpp_checkins(n: int) -> int:
    # LPP has no byte string: the token rides in two 4-byte generic sensors, the time
    # as unixtime (LPP has no age), the direction as a digital input.
    frame = LppFrame()
    for i in range(n):
        frame.add_unix_time(4 * i, 1_800_000_000)
        frame.add_generic(4 * i + 1, int(TOKEN[:8], 16))
        frame.add_generic(4 * i + 2, int(TOKEN[8:], 16))
        frame.add_digital_input(4 * i + 3, 1)
    return len(bytes(frame))


def _json(body: dict) -> int:
    return len(json.dumps({"d": 258, "c": 1234, **body, "m": "7be582a7"}, separators=(",", ":")))


def _json_checkins(n: int) -> int:
    return _json({"k": [{"b": TOKEN, "t": 3, "i": 1, "a": 30 + i} for i in range(n)]})


def _rows() -> list[tuple[str, int, int, int]]:
    """(message, Borne bytes, LoRaWAN + LPP bytes, short JSON bytes)"""
    short = {"t": 21.53, "h": 45.5, "p": 1013.2, "co2": 612, "b": 3700}
    rows = [
        (
            "telemetry, 5 values",
            len(build_frame(FIVE, 258, 1234, KEYS)),
            LORAWAN_OVERHEAD + _lpp_telemetry(),
            _json(short),
        )
    ]
    for n in (1, 2, 4, 10):
        borne = len(build_frame(_checkins(n), 258, 1234, KEYS))
        rows.append((f"check-in x{n}", borne, LORAWAN_OVERHEAD + _lpp_checkins(n), _json_checkins(n)))
    ack = len(build_frame(Ack(acked_counter16=1234), 258, 1, KEYS))
    timed = len(build_frame(Ack(acked_counter16=1234, gateway_time=1_800_000_000), 258, 1, KEYS))
    rows.append(("ACK", ack, LORAWAN_EMPTY_ACK, _json({"a": 1234})))
    rows.append(("ACK with time", timed, LORAWAN_DEVICE_TIME_ACK, _json({"a": 1234, "g": 1_800_000_000})))
    return rows


def airtime_table() -> str:
    lines = [
        "## Bytes and time on air (BW125, CR 4/5, 8-symbol preamble, explicit header, CRC on)",
        "",
        "| message | Borne B | LoRaWAN+LPP B | JSON B | SF7 ms Borne / LPP / JSON | SF9 ms Borne / LPP / JSON "
        "| SF12 ms Borne / LPP / JSON |",
        "|---|---:|---:|---:|---|---|---|",
    ]
    for name, borne, lpp, short_json in _rows():
        cells = [
            " / ".join(f"{time_on_air_ms(size, sf):.1f}" for size in (borne, lpp, short_json)) for sf in (7, 9, 12)
        ]
        lines.append(f"| {name} | {borne} | {lpp} | {short_json} | {' | '.join(cells)} |")
    return "\n".join(lines)


def _per_second(call, number: int) -> float:
    runs = timeit.repeat(call, number=number, repeat=5)
    return number / statistics.median(runs)


def decode_speed_table() -> str:
    samples = {
        "telemetry": (build_frame(FIVE, 258, 5000, KEYS), 4999),
        "checkin x1": (build_frame(_checkins(1), 258, 5000, KEYS), 4999),
        "checkin x10": (build_frame(_checkins(10), 258, 5000, KEYS), 4999),
    }
    lines = [
        "## Gateway: verify + decrypt + decode, compiled Construct schemas against interpreted ones",
        "",
        "| frame | open_frame/s (MIC, decrypt, decode) | body parse/s compiled | body parse/s interpreted | speed-up |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, (raw, last) in samples.items():
        frame = open_frame(raw, KEYS, last)
        assert isinstance(frame, Frame), frame
        msg_type = name.split()[0]
        message = frame.message
        body = encode_body(message)
        assert decode_body(msg_type, body) == message
        whole = _per_second(lambda raw=raw, last=last: open_frame(raw, KEYS, last), 2000)
        compiled_schema, interpreted_schema = COMPILED_BODY_SCHEMAS[msg_type], BODY_SCHEMAS[msg_type]
        compiled = _per_second(lambda s=compiled_schema, b=body: s.parse(b, size=len(b)), 5000)
        interpreted = _per_second(lambda s=interpreted_schema, b=body: s.parse(b, size=len(b)), 2000)
        lines.append(
            f"| {name} | {whole:,.0f} | {compiled:,.0f} | {interpreted:,.0f} | {compiled / interpreted:.1f}x |"
        )
    lines.append("")
    lines.append("For scale: one LoRa channel at SF7 carries at most ~19 frames/s.")
    return "\n".join(lines)
