"""The exported JavaScript formatter (TS013) answers like the Python codec, byte for byte.

Every call runs in one Node process: the vector cases, bodies mutated from them (which
must get the same fields or the same refusal reason as `decode_body`), and downlink
fields (which must encode to the same bytes, or be refused for the same reason, as
`encode_body` of the message read from them). The formatter runs in a bare `vm`
context, as network servers run it.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from construct import Int8ul

from payload_codec import TYPE_BY_NAME, UP, CodecError, decode_body, encode_body, message_from_json
from payload_codec import export_js as export_module
from payload_codec.export_js import export_js
from payload_codec.schema import MESSAGE_TYPES, BitmapField

from .vectors import frame_cases

NODE = shutil.which("node")

DRIVER = r"""
const fs = require("fs");
const vm = require("vm");
const formatter = {};
vm.runInNewContext(fs.readFileSync(process.argv[2], "utf8"), formatter);
const calls = JSON.parse(fs.readFileSync(0, "utf8"));
const answers = calls.map(([name, input]) => {
  try {
    return formatter[name](input);
  } catch (error) {
    return {thrown: String(error)};
  }
});
process.stdout.write(JSON.stringify(answers));
"""

BODY_CASES = [case for case in frame_cases() if case["body_hex"] is not None]
VALID = [case for case in BODY_CASES if case["valid"]]
INVALID = [case for case in BODY_CASES if not case["valid"]]
DOWNLINKS = [case for case in VALID if TYPE_BY_NAME[case["type"]].direction != UP]

# Downlink fields at the edges of the contract: halves to round, ranges, enumerations, unknown keys.
ENCODE_EDGES = [
    {"report_interval_s": 10.5},
    {"report_interval_s": 11.5},
    {"tx_power_dbm": -8.5},
    {"tx_power_dbm": 2.5},
    {"report_interval_s": 9},
    {"report_interval_s": 65536},
    {"report_interval_s": 1e300},
    {"spreading_factor": 13},
    {"tx_power_dbm": -10},
    {"report_interval_s": "300"},
    {"report_interval_s": True},
    {"checkin_direction": "sideways"},
    {"checkin_direction": 1},
    {"reboot": False},
    {"reboot": "yes"},
    {"reboot": None, "badge_retap_s": 5},
    {},
    {"colour": "red", "zeta": 1},
    {"acked_counter16": 65535, "gateway_time": 0xFFFFFFFF},
    {"acked_counter16": 65536},
    {"acked_counter16": -1},
    {"acked_counter16": 1.5},
    {"acked_counter16": 1, "gateway_time": 2**32},
    {"acked_counter16": 1, "gateway_time": None},
    {"acked_counter16": 1, "extra": 2},
]


def decoder_of(msg_type: str) -> str:
    return "decodeUplink" if TYPE_BY_NAME[msg_type].direction == UP else "decodeDownlink"


def decode_call(msg_type: str, body: bytes) -> tuple[str, dict]:
    return decoder_of(msg_type), {"bytes": list(body), "fPort": TYPE_BY_NAME[msg_type].code}


def inferred_type(fields: dict) -> str:
    return "ack" if "acked_counter16" in fields else "config"


def mutated_bodies() -> list[tuple[str, bytes]]:
    """Each vector body, cut short, lengthened, with its leading bytes overwritten, and randomised."""
    rng = random.Random(13)
    seen: dict[tuple[str, bytes], None] = {}
    for case in BODY_CASES:
        body = bytes.fromhex(case["body_hex"])
        variants = [body, body[:-1], body + b"\x00", rng.randbytes(len(body))]
        for i in range(min(len(body), 12)):  # tag bytes, bitmaps, enumerations sit at the front
            variants += [body[:i] + bytes([value]) + body[i + 1 :] for value in (0x00, 0xFF, rng.randrange(256))]
        seen.update(((case["type"], variant), None) for variant in variants)
    return list(seen)


MUTATED = mutated_bodies()


def calls() -> dict[str, tuple[str, dict]]:
    """Every call the Node run answers, by a key the tests look it up with."""
    table: dict[str, tuple[str, dict]] = {}
    for case in BODY_CASES:
        table[f"decode/{case['name']}"] = decode_call(case["type"], bytes.fromhex(case["body_hex"]))
    for case in DOWNLINKS:
        table[f"encode/{case['name']}"] = ("encodeDownlink", {"data": case["fields"]})
        table[f"encode-port/{case['name']}"] = ("encodeDownlink", {"data": case["fields"], "fPort": case["fport"]})
    for i, (msg_type, body) in enumerate(MUTATED):
        table[f"mutated/{i}"] = decode_call(msg_type, body)
    for i, fields in enumerate(ENCODE_EDGES):
        table[f"edge/{i}"] = ("encodeDownlink", {"data": fields})
    table["port/uplink-to-decodeDownlink"] = ("decodeDownlink", {"bytes": [0x40, 0xAA], "fPort": 2})
    table["port/downlink-to-decodeUplink"] = ("decodeUplink", {"bytes": [0xE9, 0x03], "fPort": 4})
    table["port/unknown"] = ("decodeUplink", {"bytes": [0x40, 0xAA], "fPort": 7})
    table["port/encode-uplink"] = ("encodeDownlink", {"data": {"battery_mv": 3700}, "fPort": 2})
    table["input/not-bytes"] = ("decodeUplink", {"bytes": [0x40, 256], "fPort": 2})
    return table


CALLS = calls()


def run_formatter(source: str, named_calls: dict[str, tuple[str, dict]], workdir: Path) -> dict[str, dict]:
    """The formatter's answer to each named (function, input) call, from one Node process."""
    formatter, driver = workdir / "formatter.js", workdir / "driver.js"
    formatter.write_text(source, encoding="utf-8")
    driver.write_text(DRIVER, encoding="utf-8")
    run = subprocess.run(
        [NODE, str(driver), str(formatter)],
        input=json.dumps(list(named_calls.values())),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    return dict(zip(named_calls, json.loads(run.stdout), strict=True))


@pytest.fixture(scope="module")
def answers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    if NODE is None:
        pytest.skip("node is not on PATH: install Node.js to run the exported formatter")
    return run_formatter(export_js(), CALLS, tmp_path_factory.mktemp("formatter"))


def typed(value: Any) -> Any:
    """`value` with booleans kept apart from numbers, and every number a double, as in JavaScript."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        return ("number", float(value))
    if isinstance(value, list):
        return [typed(item) for item in value]
    if isinstance(value, dict):
        return {key: typed(item) for key, item in value.items()}
    return value


def outcome(answer: dict) -> tuple[str, Any]:
    """A formatter answer as ("error", reason), ("bytes", [...]) or ("data", typed fields)."""
    assert "thrown" not in answer, answer["thrown"]
    if answer["errors"]:
        return "error", answer["errors"][0].split(":")[0]
    return ("bytes", answer["bytes"]) if "bytes" in answer else ("data", typed(answer["data"]))


def python_decoded(msg_type: str, body: bytes) -> tuple[str, Any]:
    result = decode_body(msg_type, body)
    return ("error", result.reason) if isinstance(result, CodecError) else ("data", typed(result.to_json()))


def python_encoded(msg_type: str, fields: dict) -> tuple[str, Any]:
    try:
        return "bytes", list(encode_body(message_from_json(msg_type, fields)))
    except CodecError as error:
        return "error", error.reason


# --- the shared vectors ----------------------------------------------------------------------
@pytest.mark.parametrize("case", VALID, ids=lambda case: case["name"])
def test_body_decodes_to_the_vector_fields(answers, case):
    answer = answers[f"decode/{case['name']}"]
    assert answer["errors"] == [] and answer["warnings"] == []
    assert typed(answer["data"]) == typed(case["fields"])


@pytest.mark.parametrize("case", INVALID, ids=lambda case: case["name"])
def test_invalid_body_is_refused_for_the_vector_reason(answers, case):
    answer = answers[f"decode/{case['name']}"]
    assert "data" not in answer and answer["warnings"] == []
    assert answer["errors"][0].startswith(f"{case['error']}: ")


@pytest.mark.parametrize("case", DOWNLINKS, ids=lambda case: case["name"])
def test_downlink_fields_encode_to_the_vector_body_with_its_port(answers, case):
    for key in ("encode", "encode-port"):  # fPort inferred from the fields, then given
        answer = answers[f"{key}/{case['name']}"]
        assert answer["errors"] == []
        assert (bytes(answer["bytes"]).hex(), answer["fPort"]) == (case["body_hex"], case["fport"])


# --- agreement with the Python codec beyond the vectors --------------------------------------
def test_mutated_bodies_get_the_python_codec_answer(answers):
    disagreements = [
        (msg_type, body.hex(), python_decoded(msg_type, body), outcome(answers[f"mutated/{i}"]))
        for i, (msg_type, body) in enumerate(MUTATED)
        if outcome(answers[f"mutated/{i}"]) != python_decoded(msg_type, body)
    ]
    assert disagreements == [], f"{len(disagreements)} of {len(MUTATED)} differ, e.g. {disagreements[:3]}"


def test_mutations_reach_every_outcome(answers):
    kinds = [outcome(answers[f"mutated/{i}"]) for i in range(len(MUTATED))]
    reasons = {detail for kind, detail in kinds if kind == "error"}
    assert {"bad_length", "bad_value", "unknown_field"} <= reasons
    assert any(kind == "data" for kind, _ in kinds)


def test_decoded_downlink_encodes_back_to_its_body(answers, tmp_path):
    decoded = {
        key: (body, answers[key]["data"], TYPE_BY_NAME[msg_type].code)
        for key, (msg_type, body) in ((f"mutated/{i}", m) for i, m in enumerate(MUTATED))
        if TYPE_BY_NAME[msg_type].direction != UP and not answers[key]["errors"]
    }
    assert decoded, "no mutated downlink body decodes"
    reencoded = run_formatter(
        export_js(),
        {key: ("encodeDownlink", {"data": data, "fPort": port}) for key, (_, data, port) in decoded.items()},
        tmp_path,
    )
    assert {key: bytes(answer["bytes"]) for key, answer in reencoded.items()} == {
        key: body for key, (body, _, _) in decoded.items()
    }


@pytest.mark.parametrize("index", range(len(ENCODE_EDGES)), ids=lambda i: json.dumps(ENCODE_EDGES[i]))
def test_edge_fields_encode_as_the_python_codec_does(answers, index):
    fields = ENCODE_EDGES[index]
    assert outcome(answers[f"edge/{index}"]) == python_encoded(inferred_type(fields), fields)


# --- ports and inputs ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("port/uplink-to-decodeDownlink", "wrong_direction"),
        ("port/downlink-to-decodeUplink", "wrong_direction"),
        ("port/unknown", "unknown_type"),
        ("port/encode-uplink", "wrong_direction"),
        ("input/not-bytes", "bad_value"),
    ],
)
def test_port_and_input_mistakes_are_refused_with_a_reason(answers, key, reason):
    assert outcome(answers[key]) == ("error", reason)


# --- the exported source ---------------------------------------------------------------------
def test_export_uses_only_es5_syntax():
    source = export_js()
    assert [token for token in ("=>", "`", "let ", "const ", "class ") if token in source] == []
    assert source.isascii()


def test_export_is_deterministic():
    assert export_js() == export_js()


def test_header_says_what_the_file_is_and_where_it_comes_from():
    header = export_js().split("\n\n")[0]
    assert "borne codec export-js" in header and "Do not edit" in header
    for kind in MESSAGE_TYPES:
        assert re.search(rf"fPort {kind.code}: {kind.name}\b", header)


def test_a_telemetry_field_changed_in_the_schema_reaches_the_formatter(monkeypatch, tmp_path):
    if NODE is None:
        pytest.skip("node is not on PATH: install Node.js to run the exported formatter")
    fields = (*export_module.TELEMETRY_FIELDS[:-1], BitmapField("light_lux", Int8ul, step=100))
    monkeypatch.setattr(export_module, "TELEMETRY_FIELDS", fields)
    body = bytes([1 << (len(fields) - 1), 7])  # the last field's bit, then its raw value
    answer = run_formatter(export_js(), {"lux": decode_call("telemetry", body)}, tmp_path)
    assert answer["lux"]["data"] == {"light_lux": 700}
