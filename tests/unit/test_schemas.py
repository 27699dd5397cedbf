"""The click-event schema: one definition, its derived forms, the wire form of a time,
and validation by the click rules that read it."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone

import pyarrow as pa
import pytest

from shared.click_rules import ClickRejected, check_click, check_click_bytes
from shared.contract import WIRE_VERSION, WIRE_VERSION_KEY
from shared.errors import ValidationError
from shared.schemas import (
    CLICK_EVENT,
    PERSONAL_FIELDS,
    SCORED_EVENT,
    NoTimeZoneError,
    click_event_id,
    format_timestamp,
    parse_timestamp,
    personal_columns,
    to_wire,
)
from tests.scored_events import check_scored

GOOD = {
    "event_id": "e1",
    "user_id": "u1",
    "item_id": "i1",
    "event_type": "view",
    "ts": "2017-11-26T01:00:00Z",
    "category_id": "c1",
}


def test_arrow_and_spark_forms_follow_the_one_definition():
    arrow = CLICK_EVENT.arrow_schema()
    assert arrow.names == CLICK_EVENT.names
    assert arrow.field("ts").type == pa.timestamp("us", tz="UTC")
    assert not arrow.field("event_id").nullable and arrow.field("query").nullable
    assert SCORED_EVENT.names[: len(CLICK_EVENT.names)] == CLICK_EVENT.names


def test_valid_event_is_typed():
    event = check_click_bytes(json.dumps(GOOD).encode())
    assert event["ts"] == datetime(2017, 11, 26, 1, tzinfo=timezone.utc)
    assert event["session_id"] is None
    assert check_click_bytes(to_wire(event)) == event  # wire form round-trips


def test_epoch_millis_and_offsets_are_normalized_to_utc():
    assert check_click({**GOOD, "ts": 1511658000000})["ts"] == datetime(2017, 11, 26, 1, tzinfo=timezone.utc)
    assert check_click({**GOOD, "ts": "2017-11-26T09:00:00+08:00"})["ts"].hour == 1


@pytest.mark.parametrize(
    "raw, fragment",
    [
        (b"\xff\xfe", "not UTF-8"),
        (b"{not json", "not JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (json.dumps({**GOOD, "event_type": "teleport"}).encode(), "event_type"),
        (json.dumps({**GOOD, "ts": "2017-11-26 01:00:00"}).encode(), "time zone"),
        (json.dumps({**GOOD, "user_id": None}).encode(), "user_id: required"),
        (json.dumps({**GOOD, "item_id": {"x": 1}}).encode(), "item_id: expected a string"),
        (json.dumps({**GOOD, "surprise": 1}).encode(), "unknown fields: 1"),
        (json.dumps({**GOOD, "user_id": "u" * 500}).encode(), "longer than"),
    ],
)
def test_invalid_events_say_what_is_wrong(raw, fragment):
    with pytest.raises(ValidationError) as info:
        check_click_bytes(raw)
    assert fragment in str(info.value)


def test_every_problem_is_reported_not_only_the_first():
    with pytest.raises(ValidationError) as info:
        check_click({"event_type": "nope"})
    assert len(info.value.reasons) >= 5


def test_times_are_read_one_way_without_bounds():
    one = datetime(2017, 11, 26, 1, tzinfo=timezone.utc)
    assert parse_timestamp("2017-11-26T01:00:00Z") == parse_timestamp("2017-11-26T09:00:00+08:00") == one
    assert parse_timestamp(1511658000) == parse_timestamp(1511658000000) == parse_timestamp(1511658000.0) == one
    assert parse_timestamp(format_timestamp(one)) == one  # the wire form round-trips
    # No bounds here: the click rules refuse these as event times, a reader takes them.
    assert parse_timestamp("2150-01-01T00:00:00Z").year == 2150 and parse_timestamp(-1).year == 1969
    with pytest.raises(ClickRejected):
        check_click({**GOOD, "ts": "2150-01-01T00:00:00Z"})


@pytest.mark.parametrize(
    "value, error",
    [
        ("2017-11-26 01:00:00", NoTimeZoneError),
        ("yesterday", ValueError),
        (float("nan"), ValueError),
        (10**30, ValueError),
        ("0001-01-01T00:00:00+01:00", ValueError),
        (True, TypeError),
        (None, TypeError),
        ([1], TypeError),
    ],
)
def test_a_value_that_is_no_time_says_why(value, error):
    with pytest.raises(error):
        parse_timestamp(value)


def test_a_scored_event_is_checked_by_the_click_rules_and_its_own_fields():
    scored = {
        **json.loads(to_wire(check_click(GOOD))),
        "model_name": "m",
        "model_version": "3",
        "score": 0.25,
        "received_at": "2017-11-26T01:00:01.000Z",
        "scored_at": "2017-11-26T01:00:01.500Z",
        "item_snapshot_version": 3,
        WIRE_VERSION_KEY: WIRE_VERSION,
    }
    assert set(scored) == {*SCORED_EVENT.names, WIRE_VERSION_KEY}
    typed = check_scored(json.dumps(scored).encode())
    assert typed["ts"] == datetime(2017, 11, 26, 1, tzinfo=timezone.utc) and typed["score"] == 0.25
    assert typed["scored_at"] == datetime(2017, 11, 26, 1, 0, 1, 500_000, tzinfo=timezone.utc)
    # An integer id (the old record validator coerced it), a far-future time, a scored
    # field missing or of the wrong type, an unknown field: each one fails the check.
    for wrong in (
        {"item_id": 7},
        {"ts": "2150-01-01T00:00:00Z"},
        {"model_version": None},
        {"model_version": 3},
        {"score": "high"},
        {"score": float("inf")},
        {"scored_at": "soon"},
        {"features": [1.0]},
        {WIRE_VERSION_KEY: 1},
    ):
        with pytest.raises((ClickRejected, AssertionError, ValueError)):
            check_scored({**scored, **wrong})


def test_event_ids_are_deterministic_source_scoped_and_keyed():
    key = b"k"
    assert click_event_id("taobao", ["1", "2"], key=key) == click_event_id("taobao", ("1", "2"), key=key)
    assert click_event_id("taobao", ["1", "2"], key=key) != click_event_id("diginetica_views", ["1", "2"], key=key)
    assert len(click_event_id("taobao", ["1"], key=key)) == 24
    # Keyed: without the key, enumerating small user ids recovers nothing.
    assert click_event_id("taobao", ["1", "2"], key=key) != click_event_id("taobao", ["1", "2"], key=b"other")
    unkeyed = hashlib.sha1(b"taobao:1,2").hexdigest()[:24]
    assert click_event_id("taobao", ["1", "2"], key=key) != unkeyed


def test_one_list_of_personal_fields_covers_the_click_schema_and_the_sources():
    assert {"user_id", "session_id", "customer_id", "email"} <= set(PERSONAL_FIELDS)
    assert personal_columns(["item_id", "session_id", "user_id"]) == {"session_id": "session", "user_id": "user"}
    assert PERSONAL_FIELDS["user_id"] == "user" and PERSONAL_FIELDS["customer_id"] == "customer"
