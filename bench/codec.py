"""Bytes and time on air against LoRaWAN + Cayenne LPP and JSON; gateway decode speed.

Every figure is computed here from real encodings: Borne's own codec, the
`pycayennelpp` encoder inside a LoRaWAN frame's minimum 13-byte overhead, and
short-key JSON carrying the same device id, counter and MIC.
"""

from __future__ import annotations

import json
import statistics
import timeit
from typing import NamedTuple

from cayennelpp import LppFrame

from payload_codec import (
    Ack,
    Checkin,
    CheckinBatch,
    Config,
    Frame,
    Status,
    Telemetry,
    build_frame,
    derive_device_keys,
    open_frame,
)
from payload_codec.airtime import time_on_air_ms
from payload_codec.messages import decode_body, encode_body
from payload_codec.schema import BODY_SCHEMAS, COMPILED_BODY_SCHEMAS, MAX_CHECKINS
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
STATUS = Status(
    firmware="1.3.9",
    uptime_s=10807,
    reset_cause="watchdog",
    queue_depth=3,
    checkins_dropped=0,
    sensor_faults=(),
    radio_errors=1,
    reader_errors=0,
    flash_errors=0,
    duty_cycle_deferrals=0,
    config_digest=0x1234,
    next_downlink_counter=42,
)
ALL_SETTINGS = Config(
    report_interval_s=300,
    status_interval_s=3600,
    spreading_factor=9,
    tx_power_dbm=14,
    badge_retap_s=10,
    checkin_direction="in",
    reboot=True,
)

# The budgets on air, envelope included, of the design: telemetry of 5 values, one check-in and
# each further one batched with it, a plain ACK. The other frames have none: their size is shown.
TELEMETRY_BUDGET = 18
CHECKIN_BUDGET = 22
FURTHER_CHECKIN_BUDGET = 11
ACK_BUDGET = 12


def checkin_budget(n: int) -> int:
    """The most bytes on air a frame of `n` check-ins may take."""
    return CHECKIN_BUDGET + FURTHER_CHECKIN_BUDGET * (n - 1)


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


class Row(NamedTuple):
    """One message of the table: Borne's bytes on air, its budget (None: the design sets none), and
    the same content as LoRaWAN + Cayenne LPP and as short-key JSON (None: no such message there)."""

    message: str
    kind: str  # the frame's message type
    borne: int
    budget: int | None
    lpp: int | None
    short_json: int | None


def rows() -> list[Row]:
    """Every frame kind of the wire contract, at the sizes that hold it to its budget."""
    short = {"t": 21.53, "h": 45.5, "p": 1013.2, "co2": 612, "b": 3700}
    table = [
        Row(
            "telemetry, 5 values",
            "telemetry",
            len(build_frame(FIVE, 258, 1234, KEYS)),
            TELEMETRY_BUDGET,
            LORAWAN_OVERHEAD + _lpp_telemetry(),
            _json(short),
        )
    ]
    for n in (1, 2, 4, 10, MAX_CHECKINS):
        borne = len(build_frame(_checkins(n), 258, 1234, KEYS))
        table.append(
            Row(
                f"check-in x{n}",
                "checkin",
                borne,
                checkin_budget(n),
                LORAWAN_OVERHEAD + _lpp_checkins(n),
                _json_checkins(n),
            )
        )
    status_json = {"f": "1.3.9", "u": 10807, "r": 3, "q": 3, "d": 0, "s": 0, "e": [1, 0, 0, 0], "g": 4660, "n": 42}
    table.append(Row("status", "status", len(build_frame(STATUS, 258, 1234, KEYS)), None, None, _json(status_json)))
    ack = len(build_frame(Ack(acked_counter16=1234), 258, 1, KEYS))
    timed = len(build_frame(Ack(acked_counter16=1234, gateway_time=1_800_000_000), 258, 1, KEYS))
    table.append(Row("ACK", "ack", ack, ACK_BUDGET, LORAWAN_EMPTY_ACK, _json({"a": 1234})))
    table.append(
        Row("ACK with time", "ack", timed, None, LORAWAN_DEVICE_TIME_ACK, _json({"a": 1234, "g": 1_800_000_000}))
    )
    config_json = {"ri": 300, "si": 3600, "sf": 9, "tx": 14, "rt": 10, "dir": 1, "rb": 1}
    table.append(
        Row(
            "config, all 7 settings",
            "config",
            len(build_frame(ALL_SETTINGS, 258, 2, KEYS)),
            None,
            None,
            _json(config_json),
        )
    )
    return table


def airtime_table() -> str:
    lines = [
        "## Bytes and time on air (BW125, CR 4/5, 8-symbol preamble, explicit header, CRC on)",
        "",
        "Budgets are the design's, envelope included; a message with none shows its size only.",
        "",
        "| message | Borne B | budget B | LoRaWAN+LPP B | JSON B | SF7 ms Borne / LPP / JSON "
        "| SF9 ms Borne / LPP / JSON | SF12 ms Borne / LPP / JSON |",
        "|---|---:|---:|---:|---:|---|---|---|",
    ]
    for row in rows():
        sizes = (row.borne, row.lpp, row.short_json)
        cells = [" / ".join(_ms(size, sf) for size in sizes) for sf in (7, 9, 12)]
        budget = "—" if row.budget is None else f"≤ {row.budget}"
        lpp = "—" if row.lpp is None else str(row.lpp)
        lines.append(f"| {row.message} | {row.borne} | {budget} | {lpp} | {row.short_json} | {' | '.join(cells)} |")
    return "\n".join(lines)


def _ms(size: int | None, sf: int) -> str:
    return "—" if size is None else f"{time_on_air_ms(size, sf):.1f}"


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
