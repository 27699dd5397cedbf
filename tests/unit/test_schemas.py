"""The click-event schema: one definition, its derived forms, and validation."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pyarrow as pa
import pytest

from shared.errors import ValidationError
from shared.schemas import CLICK_EVENT, SCORED_EVENT, click_event_id, to_wire, validate_click_event

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
    event = validate_click_event(json.dumps(GOOD).encode())
    assert event["ts"] == datetime(2017, 11, 26, 1, tzinfo=timezone.utc)
    assert event["session_id"] is None
    assert validate_click_event(to_wire(event)) == event  # wire form round-trips


def test_epoch_millis_and_offsets_are_normalized_to_utc():
    assert validate_click_event({**GOOD, "ts": 1511658000000})["ts"] == datetime(2017, 11, 26, 1, tzinfo=timezone.utc)
    assert validate_click_event({**GOOD, "ts": "2017-11-26T09:00:00+08:00"})["ts"].hour == 1


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
        (json.dumps({**GOOD, "surprise": 1}).encode(), "unknown fields: surprise"),
        (json.dumps({**GOOD, "user_id": "u" * 500}).encode(), "longer than"),
    ],
)
def test_invalid_events_say_what_is_wrong(raw, fragment):
    with pytest.raises(ValidationError) as info:
        validate_click_event(raw)
    assert fragment in str(info.value)


def test_every_problem_is_reported_not_only_the_first():
    with pytest.raises(ValidationError) as info:
        validate_click_event({"event_type": "nope"})
    assert len(info.value.reasons) >= 5


def test_event_ids_are_deterministic_and_source_scoped():
    assert click_event_id("taobao", ["1", "2"]) == click_event_id("taobao", ("1", "2"))
    assert click_event_id("taobao", ["1", "2"]) != click_event_id("diginetica_views", ["1", "2"])
    assert len(click_event_id("taobao", ["1"])) == 24
