"""The one set of click rules (issue 10, defect 5): what the stream used to score and batch
quarantined is now rejected by both, with one reason code."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from shared.click_rules import (
    REASON_CODES, ClickRejected, check_click, check_click_bytes, check_click_columns, excerpt,
)

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
GOOD = {"event_id": "e1", "user_id": "u1", "item_id": "i1", "event_type": "view", "ts": "2017-11-26T01:00:00Z"}


def _code(**change) -> str | None:
    try:
        check_click({**GOOD, **change}, now=NOW)
    except ClickRejected as exc:
        assert exc.code in REASON_CODES
        return exc.code
    return None


@pytest.mark.parametrize("ts", [-1, 0, "0001-01-01T00:00:00Z", "9999-12-31T00:00:00Z", "2150-01-01T00:00:00Z",
                                9999, 10**30, "1999-12-31T23:59:59Z", float("nan"), float("inf"),
                                "2026-01-02T00:00:01Z", "2017-11-26 01:00:00", "yesterday"])
def test_implausible_or_unreadable_times_are_bad_timestamps(ts):
    assert _code(ts=ts) == "bad_timestamp"


def test_epoch_seconds_and_milliseconds_are_told_apart_by_one_rule():
    expected = datetime(2017, 11, 26, 1, tzinfo=timezone.utc)
    assert check_click({**GOOD, "ts": 1511658000}, now=NOW)["ts"] == expected
    assert check_click({**GOOD, "ts": 1511658000000}, now=NOW)["ts"] == expected
    assert check_click({**GOOD, "ts": 1511658000.5}, now=NOW)["ts"].microsecond == 500_000


@pytest.mark.parametrize("change, code", [
    ({"user_id": " "}, "blank_id"), ({"item_id": "\t\n"}, "blank_id"), ({"session_id": "  "}, "blank_id"),
    ({"user_id": ""}, "missing_field"), ({"item_id": None}, "missing_field"), ({"ts": ""}, "missing_field"),
    ({"user_id": 17}, "bad_type"), ({"item_id": 4625350}, "bad_type"), ({"event_type": True}, "bad_type"),
    ({"ts": True}, "bad_type"), ({"ts": [1]}, "bad_type"), ({"category_id": 7}, "bad_type"),
    ({"item_id": "x" * 129}, "too_long"), ({"query": "q" * 1025}, "too_long"),
    ({"event_type": "teleport"}, "unknown_event_type"), ({"extra": 1}, "unknown_field"),
    ({"user_id": "\ud800"}, "not_utf8"), ({"item_id": "a\udfff"}, "not_utf8"),
])
def test_each_rule_has_its_reason_code(change, code):
    assert _code(**change) == code


def test_the_primary_code_follows_the_documented_order_and_every_reason_is_kept():
    with pytest.raises(ClickRejected) as info:
        check_click({**GOOD, "user_id": None, "event_type": "teleport", "ts": 0, "x": 1}, now=NOW)
    assert info.value.code == "missing_field"
    assert [p.code for p in info.value.problems] == ["missing_field", "unknown_event_type", "bad_timestamp",
                                                     "unknown_field"]


def test_ids_lose_surrounding_spaces_like_batch():
    event = check_click({**GOOD, "user_id": "  u1 ", "item_id": " i1"}, now=NOW)
    assert event["user_id"] == "u1" and event["item_id"] == "i1"


def test_bytes_level_codes_and_bounded_messages():
    for raw, code in [(b"\xff", "not_utf8"), (b"{", "not_json"), (b"[1]", "not_json"), (b"[" * 50_000, "not_json"),
                      (b'{"ts": 1' + b"0" * 5000 + b"}", "not_json")]:
        with pytest.raises(ClickRejected) as info:
            check_click_bytes(raw, now=NOW)
        assert info.value.code == code and all(len(r) < 400 for r in info.value.reasons)
    with pytest.raises(ClickRejected) as info:
        check_click_bytes(json.dumps({**GOOD, "ts": "x" * 100_000}), now=NOW)
    assert len(str(info.value)) < 400
    assert len(excerpt("y" * 10_000)) == 200 and excerpt("\ud800") == "'\\ud800'"


def test_batch_candidate_rows_get_the_same_verdict():
    row = {"event_id": "e1", "user_id": "u1", "item_id": "i1", "event_type": "view", "ts_epoch": 1511658000}
    verdict = check_click_columns(row, now=NOW)
    assert verdict.reason is None and verdict.ts_micros == 1511658000 * 1_000_000
    assert check_click_columns({**row, "ts_epoch": None, "ts_text": "not-a-time"}, now=NOW).reason == "bad_timestamp"
    assert check_click_columns({**row, "ts_epoch": None}, now=NOW).reason == "missing_field"
    assert check_click_columns({**row, "user_id": " "}, now=NOW).reason == "blank_id"
