"""Every reason the gateway can publish on …/rejected is in the schema and in docs/mqtt.md, and no other."""

import re
from pathlib import Path

from gateway_daemon.pipeline import UNENCRYPTED_CHECKIN
from gateway_daemon.sources.semtech_protocol import REFUSALS
from payload_codec import REASONS

from .site import schema

DOCS = Path(__file__).parents[2] / "docs" / "mqtt.md"
SERVER_SIDE_ONLY = {"bad_txpk"}  # refused by the rig's forwarder, never by the gateway
REPORTED = set(REASONS) | (set(REFUSALS) - SERVER_SIDE_ONLY) | {"unexpected_record", UNENCRYPTED_CHECKIN}


def documented_reasons() -> list[str]:
    section = DOCS.read_text(encoding="utf-8").split("## Rejections", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.MULTILINE)


def test_the_schema_admits_every_reason_the_gateway_reports_and_no_other():
    assert set(schema("rejected")["properties"]["reason"]["enum"]) == REPORTED


def test_docs_list_every_reason_once():
    listed = documented_reasons()
    assert len(listed) == len(set(listed))
    assert set(listed) == REPORTED
