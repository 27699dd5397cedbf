"""The worker's pure steps: validation, pseudonymization, enrichment, the scored values of a batch.

The bytes of scored events and dead-letter entries are tested with their readers (test_contract)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from shared.errors import ValidationError
from shared.features import ITEM_FEATURES, SESSION_FEATURES
from shared.pseudonymize import pseudonymize
from shared.schemas import CLICK_EVENT, to_wire
from stream import sessions, steps
from tests.reference_features import fold_user_events
from tests.scored_events import check_scored

KEY = b"unit-test-key"
T0 = datetime(2017, 11, 26, 1, 0, tzinfo=timezone.utc)


def _event(i: int, user: str = "u1", item: str = "i1", kind: str = "view", seconds: int = 0) -> dict:
    return {
        "event_id": f"e{i}",
        "user_id": user,
        "session_id": None,
        "item_id": item,
        "event_type": kind,
        "ts": T0.replace(second=seconds),
        "query": None,
        "category_id": "c1",
    }


def _items(item_id: str) -> dict:
    return steps.item_features_from_counts(10, 2, 1) if item_id == "i1" else steps.item_features_from_counts(0, 0, 0)


def test_parse_validate_returns_typed_event_and_lists_every_problem():
    assert steps.parse_validate(to_wire(_event(1)))["ts"] == T0
    with pytest.raises(ValidationError) as info:
        steps.parse_validate(b'{"event_id": "x", "event_type": "teleport", "ts": "never"}')
    text = " ".join(info.value.reasons)
    assert "user_id: required" in text and "event_type" in text and "ts: bad timestamp" in text
    with pytest.raises(ValidationError):
        steps.parse_validate(None)


def test_enrich_matches_the_shared_fold_and_adds_item_features():
    events = [_event(1, seconds=0), _event(2, item="i2", kind="add_to_cart", seconds=5), _event(3, seconds=9)]
    entry, online = None, []
    for event in events:
        entry, record, replayed = steps.enrich(event, entry, _items)
        assert not replayed
        online.append(record)
    for record, expected in zip(online, fold_user_events(events)):
        assert {n: record[n] for n in SESSION_FEATURES.names} == expected
    assert online[0]["item_cart_rate"] == pytest.approx(float(_items("i1")["item_cart_rate"]))
    assert set(ITEM_FEATURES.names) <= set(online[1]) and set(CLICK_EVENT.names) <= set(online[1])


def test_enrich_is_idempotent_for_a_replayed_event_id():
    entry, first, _ = steps.enrich(_event(1), None, _items)
    entry, second, _ = steps.enrich(_event(2, seconds=3), entry, _items)
    again_entry, again, replayed = steps.enrich(_event(2, seconds=3), entry, _items)
    assert replayed and again == second and again_entry == entry
    # The state survives a JSON round trip (that is how the Faust table stores it).
    restored = json.loads(json.dumps(entry))
    _, third, _ = steps.enrich(_event(3, seconds=6), restored, _items)
    assert third["session_event_index"] == 2


def test_enrich_remembers_a_bounded_number_of_events():
    entry = None
    for i in range(sessions.RECENT_EVENTS_KEPT + 5):
        entry, _, _ = steps.enrich(_event(i, seconds=i % 60), entry, _items)
    assert len(entry["recent"]) == sessions.RECENT_EVENTS_KEPT


def test_prepare_batch_is_the_per_record_steps_with_one_read_per_user():
    events = [
        _event(1),
        _event(2, user="u2"),
        _event(3, seconds=4),
        _event(2, user="u2"),
        _event(4, user="u2", seconds=9),
    ]
    raws = [to_wire(e) for e in events] + [b"not json"]
    reads: list[str] = []
    table: dict = {}

    def entry_of(user: str):
        reads.append(user)
        return table.get(user)

    batch = steps.prepare_batch(raws, entry_of=entry_of, pseudonym=steps.Pseudonyms(KEY), items=_items)
    assert sorted(reads) == sorted({pseudonymize(u, "user", key=KEY) for u in ("u1", "u2")})
    one_by_one: dict = {}
    expected = []
    for event in events:
        record = {**event, "user_id": pseudonymize(event["user_id"], "user", key=KEY)}
        one_by_one[record["user_id"]], scoring, _ = steps.enrich(record, one_by_one.get(record["user_id"]), _items)
        expected.append(scoring)
    assert batch.records[:5] == expected
    assert isinstance(batch.records[5], steps.Failed) and batch.records[5].step == steps.STEP_PARSE
    assert batch.replayed == 1  # u2's event e2 a second time
    u1, u2 = (pseudonymize(u, "user", key=KEY) for u in ("u1", "u2"))
    assert batch.changed == {u1: 2, u2: 4} and set(batch.entries) == {u1, u2}


def test_pseudonyms_are_the_shared_pseudonyms_and_bounded():
    cached = steps.Pseudonyms(KEY, max_size=3)
    for i in range(10):
        assert cached(f"u{i % 5}") == pseudonymize(f"u{i % 5}", "user", key=KEY)
    assert len(cached._known) <= 3


def test_scored_values_fail_only_the_records_that_cannot_be_written():
    records = [_event(1), _event(2)]
    out = steps.scored_values(
        records, [0.5, float("inf")], model_name="m", model_version="1", received_at=T0, scored_at=T0
    )
    assert json.loads(out[0])["score"] == 0.5
    assert isinstance(out[1], steps.Failed) and out[1].step == steps.STEP_SERIALIZE


@pytest.mark.parametrize(
    "raw, code",
    [
        (None, "not_json"),
        (b"\xff\xfe", "not_utf8"),
        (
            b'{"event_id":"s","user_id":"\\ud800","item_id":"1","event_type":"view","ts":"2017-11-26T01:00:00Z"}',
            "not_utf8",
        ),
        (
            b'{"event_id":"s","user_id":"u","item_id":"\\udfff","event_type":"view","ts":"2017-11-26T01:00:00Z"}',
            "not_utf8",
        ),
        (b"[" * 100_000, "not_json"),
        (b'{"event_id":"s","user_id":" ","item_id":"1","event_type":"view","ts":"2017-11-26T01:00:00Z"}', "blank_id"),
    ],
)
def test_parse_validate_rejects_with_a_reason_code(raw, code):
    with pytest.raises(ValidationError) as info:
        steps.parse_validate(raw)
    assert steps.failure_reason(steps.STEP_PARSE, info.value)[0] == code


def test_a_failure_outside_validation_has_a_step_code_and_a_bounded_reason():
    code, reasons = steps.failure_reason(steps.STEP_ENRICH, KeyError("k" * 10_000))
    assert code == "enrich_error" and len(reasons) == 1 and len(reasons[0]) < 260
    # The exception's text may hold a sender's value: only its type is kept.
    assert steps.failure_reason(steps.STEP_ENRICH, KeyError("alice@example.com")) == ("enrich_error", ["KeyError"])


def test_only_views_are_scored_and_the_others_pass_with_a_null_score():
    assert steps.is_scored(_event(1)) and not steps.is_scored(_event(2, kind="add_to_cart"))
    out = steps.scored_values(
        [_event(2, kind="purchase")], [None], model_name="m", model_version="3", received_at=T0, scored_at=T0
    )
    scored = check_scored(out[0])
    assert scored["score"] is None and scored["model_version"] == "3"


def test_prepare_batch_leaves_only_pseudonyms_of_user_and_session_ids():
    raws = [to_wire({**_event(1, user="alice@example.com"), "session_id": "Zelda Session"}), to_wire(_event(2))]
    batch = steps.prepare_batch(raws, entry_of=lambda user: None, pseudonym=steps.Pseudonyms(KEY), items=_items)
    first, second = batch.records
    assert first["user_id"] == pseudonymize("alice@example.com", "user", key=KEY)
    assert first["session_id"] == pseudonymize("Zelda Session", "session", key=KEY)
    assert second["session_id"] is None  # no session: nothing to pseudonymize
    assert set(batch.entries) == {first["user_id"], second["user_id"]}
    assert "alice" not in repr(batch) and "Zelda" not in repr(batch)
