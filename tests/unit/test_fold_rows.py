"""jobs.fold_rows: scored values and dead-letter entries -> table rows (pure logic)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from jobs.fold_rows import (
    QUARANTINE_SCHEMA,
    STREAM_SCHEMA,
    Position,
    dlq_row,
    first_of_each,
    scored_row,
    to_arrow,
    unreadable_scored_row,
)
from shared.schemas import CLICK_EVENT

NOW = datetime(2024, 1, 1, tzinfo=timezone.utc)
POS = Position("clicks.scored", 2, 41)


def _scored(**over) -> bytes:
    event = {
        "event_id": "e1",
        "user_id": "u",
        "session_id": None,
        "item_id": "i",
        "event_type": "view",
        "ts": "2017-11-25T10:00:00.000Z",
        "query": None,
        "category_id": "c",
        "model_name": "propensity",
        "model_version": "7",
        "score": 0.5,
        "received_at": "2017-11-25T10:00:00.005Z",
        "scored_at": "2017-11-25T10:00:00.009Z",
    }
    event.update(over)
    return json.dumps(event).encode()


def test_silver_clicks_columns_come_first():
    assert STREAM_SCHEMA.names[: len(CLICK_EVENT.names) + 2] == [*CLICK_EVENT.names, "source", "_batch_id"]
    assert QUARANTINE_SCHEMA.names[:7] == [
        "source_table",
        "reason",
        "detail",
        "record",
        "_source",
        "_batch_id",
        "_row_number",
    ]


def test_scored_row_keeps_the_event_model_and_position():
    row = scored_row(_scored(), POS, batch_id="b", folded_at=NOW)
    assert row["event_id"] == "e1" and row["score"] == 0.5 and row["model_version"] == "7"
    assert row["ts"] == datetime(2017, 11, 25, 10, tzinfo=timezone.utc)
    assert (row["_topic"], row["_partition"], row["_offset"]) == ("clicks.scored", 2, 41)
    assert to_arrow([row], STREAM_SCHEMA).num_rows == 1


def test_a_null_score_is_kept_as_null():
    assert scored_row(_scored(score=None, event_type="purchase"), POS, batch_id="b", folded_at=NOW)["score"] is None


@pytest.mark.parametrize("value", [None, b"\xff", b"[1]", _scored(event_id=None), _scored(ts="yesterday")])
def test_unreadable_scored_values_raise(value):
    with pytest.raises(ValueError):
        scored_row(value, POS, batch_id="b", folded_at=NOW)


def test_unreadable_scored_value_becomes_a_quarantine_row():
    row = unreadable_scored_row(b"junk", POS, "not UTF-8 JSON", batch_id="b", folded_at=NOW)
    assert row["reason"] == "unreadable_scored_event" and row["record"] == "junk" and row["raw_size"] == 4
    assert row["dedupe_key"] == "input:clicks.scored[2]@41" and row["source_offset"] == 41
    assert to_arrow([row], QUARANTINE_SCHEMA).num_rows == 1


def test_dlq_entry_old_format_uses_the_step_as_reason():
    entry = {
        "raw": "x",
        "raw_encoding": "latin-1",
        "step": "parse_validate",
        "reasons": ["a", "b"],
        "source": {"topic": "clicks", "partition": 1, "offset": 9},
        "failed_at": "2024-01-01T00:00:00.000Z",
    }
    row = dlq_row(json.dumps(entry).encode(), Position("clicks.dlq", 0, 3), batch_id="b", folded_at=NOW)
    assert row["reason"] == "parse_validate" and row["detail"] == "a; b" and row["reason_code"] is None
    assert row["raw_size"] is None and row["source_offset"] == 9
    assert row["dedupe_key"] == "input:clicks[1]@9" and row["key_offset"] == 9


def test_dlq_entry_new_fields_are_kept():
    entry = {
        "raw": "x",
        "step": "parse_validate",
        "reason_code": "not_utf8",
        "reasons": ["bad"],
        "raw_size": 300000,
        "raw_truncated": True,
        "raw_sha256": "ab" * 32,
        "source": {"topic": "clicks", "partition": 0, "offset": 1},
        "failed_at": "2024-01-01T00:00:00.000Z",
    }
    row = dlq_row(json.dumps(entry).encode(), Position("clicks.dlq", 0, 3), batch_id="b", folded_at=NOW)
    assert row["reason"] == "not_utf8" and row["raw_size"] == 300000 and row["raw_truncated"] is True
    assert row["raw_sha256"] == "ab" * 32
    assert to_arrow([row], QUARANTINE_SCHEMA).num_rows == 1


@pytest.mark.parametrize("value", [None, b"\xff\xfe", b"[]", b'{"reasons": 3, "source": "nowhere", "failed_at": "x"}'])
def test_any_dlq_value_becomes_a_row(value):
    row = dlq_row(value, Position("clicks.dlq", 1, 5), batch_id="b", folded_at=NOW)
    assert row["reason"] and row["dedupe_key"]
    assert to_arrow([row], QUARANTINE_SCHEMA).num_rows == 1


def test_first_of_each_drops_later_repeats():
    rows = [{"k": "a", "n": 1}, {"k": "b", "n": 2}, {"k": "a", "n": 3}]
    kept, dropped = first_of_each(rows, "k")
    assert [r["n"] for r in kept] == [1, 2] and dropped == 1
