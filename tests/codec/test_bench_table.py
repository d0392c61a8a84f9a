"""`make bench`'s byte table: every frame kind of the wire contract, beside the design's budget."""

from __future__ import annotations

from bench.codec import airtime_table, checkin_budget, rows
from payload_codec.schema import ENVELOPE_SIZE, MAX_CHECKINS, MESSAGE_TYPES, STATUS_SIZE

FULL_COUNTER_EXTRA = 2  # a status frame carries all 32 bits of its counter


def test_the_byte_table_has_a_row_for_every_frame_kind_of_the_contract():
    assert {row.kind for row in rows()} == {t.name for t in MESSAGE_TYPES}


def test_the_budgeted_messages_have_their_budget_and_keep_to_it():
    by_message = {row.message: row for row in rows()}
    budgets = {"telemetry, 5 values": 18, "check-in x1": 22, "ACK": 12}
    budgets |= {f"check-in x{n}": 22 + 11 * (n - 1) for n in (2, 4, 10, MAX_CHECKINS)}
    assert {name: by_message[name].budget for name in budgets} == budgets
    assert checkin_budget(MAX_CHECKINS) == budgets[f"check-in x{MAX_CHECKINS}"]
    for row in rows():
        assert row.budget is None or row.borne <= row.budget, row


def test_a_status_takes_its_27_byte_body_and_an_envelope_with_the_whole_counter():
    (status,) = (row for row in rows() if row.kind == "status")
    assert STATUS_SIZE == 27
    assert status.borne == ENVELOPE_SIZE + FULL_COUNTER_EXTRA + STATUS_SIZE == 38


def test_the_printed_table_shows_each_size_beside_its_budget():
    table = airtime_table()
    for row in rows():
        budget = "—" if row.budget is None else f"≤ {row.budget}"
        assert f"| {row.message} | {row.borne} | {budget} |" in table
