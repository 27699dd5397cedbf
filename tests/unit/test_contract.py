"""shared.contract: what the stream writes and the fold reads, both sides of each format
(pure logic, no broker, no Delta), including the bytes today's topics already hold."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone

import pytest

from shared.brokers import bootstrap_addresses, broker_accepts_connections, confirmed_end
from shared.contract import DLQ_MAX_RAW_BYTES, WIRE_VERSION, WIRE_VERSION_KEY
from shared.contract.announcement import announcement_value, parse_announcement
from shared.contract.dead_letter import MAX_DLQ_REASONS, dlq_entry, dlq_row, minimal_dlq_entry
from shared.contract.folded import (
    QUARANTINE_SCHEMA,
    STREAM_SCHEMA,
    WIRE_VERSION_COLUMN,
    Position,
    quarantine_table_label,
    quarantine_table_path,
    stream_table_label,
    stream_table_path,
    to_arrow,
)
from shared.contract.scored import ScoredBatch, scored_row, unreadable_scored_row
from shared.pseudonymize import pseudonymize
from shared.redaction import Redactor, keyed_hash
from shared.schemas import CLICK_EVENT, SCORED_EVENT, to_wire
from shared.settings import Settings
from tests.faust_records import click_event_record, scored_event_record
from tests.scored_events import check_scored

NOW = datetime(2024, 1, 1, tzinfo=timezone.utc)
T0 = datetime(2017, 11, 26, 1, 0, tzinfo=timezone.utc)
POS = Position("clicks.scored", 2, 41)
CAP = DLQ_MAX_RAW_BYTES
KEY = b"contract-test-key"
REDACTOR = Redactor(KEY)
EMAIL = "alice.zelda@example.com"

# Written by the worker before the formats carried a version (wire version 1), byte for byte.
V1_SCORED = (
    b'{"event_id":"e1","user_id":"p1","session_id":null,"item_id":"i1","event_type":"view",'
    b'"ts":"2017-11-26T01:00:00.000Z","query":null,"category_id":"c1","model_name":"propensity",'
    b'"model_version":"3","received_at":"2017-11-26T01:00:00.005Z","scored_at":"2017-11-26T01:00:00.009Z",'
    b'"score":0.25}'
)
V1_DLQ = (
    b'{"raw":"\\u00ffnot json","raw_encoding":"latin-1","raw_truncated":false,"reasons":["not UTF-8"],'
    b'"step":"parse_validate","reason_code":"not_utf8","source":{"topic":"clicks","partition":2,"offset":41},'
    b'"failed_at":"2017-11-26T01:00:00.000Z","raw_size":9,'
    b'"raw_sha256":"7de3f1be82fb9268cc4eb1a2fd8a9eab636f0577eb0ccbd2ab30480d0771b5ef"}'
)
V1_MINIMAL_DLQ = (
    b'{"raw":null,"raw_encoding":"latin-1","raw_truncated":true,"reasons":[],"step":"produce",'
    b'"reason_code":"produce_error","source":{"topic":"clicks","partition":2,"offset":41},'
    b'"failed_at":"2017-11-26T01:00:00.000Z","raw_size":9,'
    b'"raw_sha256":"7de3f1be82fb9268cc4eb1a2fd8a9eab636f0577eb0ccbd2ab30480d0771b5ef"}'
)
V1_ANNOUNCEMENT = (
    b'{"task": "propensity", "version": 3, "alias": "champion", "reason": "r", '
    b'"announced_at": "2024-01-01T00:00:00.000Z"}'
)


def _event(i: int = 1, kind: str = "view") -> dict:
    return {
        "event_id": f"e{i}",
        "user_id": "p1",
        "session_id": None,
        "item_id": "i1",
        "event_type": kind,
        "ts": T0,
        "query": None,
        "category_id": "c1",
    }


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


def _event_fields(wire: bytes) -> dict:
    """A scored event's fields without its wire version: what SCORED_EVENT describes."""
    return {k: v for k, v in json.loads(wire).items() if k != WIRE_VERSION_KEY}


# ---------------------------------------------------------------------- the tables


def test_silver_columns_come_first_and_later_columns_at_the_end():
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
    # Columns are only added, at the end, in the order they came.
    assert STREAM_SCHEMA.names[-2:] == [WIRE_VERSION_COLUMN, "item_snapshot_version"]
    assert all(STREAM_SCHEMA.field(name).nullable for name in STREAM_SCHEMA.names[-2:])
    assert QUARANTINE_SCHEMA.names[-2:] == [WIRE_VERSION_COLUMN, "raw_hmac_sha256"]
    assert all(QUARANTINE_SCHEMA.field(name).nullable for name in QUARANTINE_SCHEMA.names[-2:])


def test_table_paths_follow_the_settings(tmp_path):
    settings = Settings(lake={"root": tmp_path}, fold={"stream_table": "live_clicks", "quarantine_table": "live_bad"})
    assert stream_table_path(settings) == tmp_path / "silver" / "live_clicks"
    assert quarantine_table_path(settings) == tmp_path / "silver" / "live_bad"
    assert (stream_table_label(settings), quarantine_table_label(settings)) == ("silver/live_clicks", "silver/live_bad")


def test_the_features_job_reads_the_stream_table_the_settings_name(tmp_path):
    from batch.features import GOLD_TABLES

    settings = Settings(lake={"root": tmp_path}, fold={"stream_table": "live_clicks"})
    readers = {spec.name: spec.optional(settings) for spec in GOLD_TABLES if spec.optional(settings)}
    assert readers == {
        "click_sessions": ("silver/live_clicks",),
        "item_click_stats": ("silver/live_clicks",),
        "train_propensity": ("silver/live_clicks",),  # the item snapshot version that served each event
    }


# ---------------------------------------------------------------- scored events


def test_scored_bytes_are_what_the_schema_record_writes_plus_the_version():
    record = {**_event(1), "query": "ä \u2028 q", "session_event_index": 4}
    scored_at = T0.replace(microsecond=123456)
    for score in (0.25, None):
        wire = ScoredBatch("m", "3", T0, scored_at).value(record, score)
        reference = to_wire(
            scored_event_record()(
                **{name: record.get(name) for name in CLICK_EVENT.names},
                model_name="m",
                model_version="3",
                score=score,
                received_at=T0,
                scored_at=scored_at,
            ).asdict()
        )
        assert json.loads(wire) == {**json.loads(reference), WIRE_VERSION_KEY: WIRE_VERSION}
        assert set(_event_fields(wire)) == set(SCORED_EVENT.names)  # features stay out of the topic


def test_scored_bytes_are_a_valid_scored_event_whether_scored_or_not():
    batch = ScoredBatch("m", "3", T0, T0)
    scored = check_scored(batch.value({**_event(1), "session_event_index": 0}, 0.25))
    assert scored["score"] == 0.25 and scored["model_version"] == "3" and scored["user_id"] == "p1"
    other = check_scored(batch.value(_event(2, kind="purchase"), None))
    assert other["score"] is None and other["model_version"] == "3"


def test_a_score_that_is_not_a_number_is_refused():
    with pytest.raises(ValueError):
        ScoredBatch("m", "1", T0, T0).value(_event(1), float("nan"))


def test_what_the_worker_writes_the_fold_reads_with_its_version():
    wire = ScoredBatch("propensity", "3", T0, T0).value(_event(1), 0.25)
    row = scored_row(wire, POS, redactor=REDACTOR, batch_id="b", folded_at=NOW)
    assert row["event_id"] == "e1" and row["score"] == 0.25 and row["ts"] == T0
    assert row[WIRE_VERSION_COLUMN] == WIRE_VERSION == 4
    assert row["item_snapshot_version"] is None  # the worker had no item snapshot
    assert to_arrow([row], STREAM_SCHEMA).num_rows == 1


def test_a_scored_event_names_the_item_snapshot_that_enriched_it():
    wire = ScoredBatch("propensity", "3", T0, T0, item_snapshot_version=7).value(_event(1), 0.25)
    assert check_scored(wire)["item_snapshot_version"] == 7
    row = scored_row(wire, POS, redactor=REDACTOR, batch_id="b", folded_at=NOW)
    assert row["item_snapshot_version"] == 7
    assert to_arrow([row], STREAM_SCHEMA).column("item_snapshot_version").to_pylist() == [7]


def test_scored_events_already_in_the_topic_are_read_as_version_1():
    row = scored_row(V1_SCORED, POS, redactor=REDACTOR, batch_id="b", folded_at=NOW)
    assert row[WIRE_VERSION_COLUMN] == 1
    assert (row["event_id"], row["model_version"], row["score"]) == ("e1", "3", 0.25)
    assert row["scored_at"] == T0.replace(microsecond=9000)
    # The same event written now differs only by its version.
    now = ScoredBatch("propensity", "3", T0.replace(microsecond=5000), T0.replace(microsecond=9000)).value(
        {**_event(1), "session_event_index": 0}, 0.25
    )
    assert {**json.loads(V1_SCORED), WIRE_VERSION_KEY: WIRE_VERSION, "item_snapshot_version": None} == json.loads(now)
    assert row["item_snapshot_version"] is None


def test_a_newer_version_is_read_for_the_fields_it_shares():
    row = scored_row(
        _scored(**{WIRE_VERSION_KEY: 9, "new_field": 1}), POS, redactor=REDACTOR, batch_id="b", folded_at=NOW
    )
    assert row[WIRE_VERSION_COLUMN] == 9 and row["event_id"] == "e1"


def test_scored_row_keeps_the_event_model_and_position():
    row = scored_row(_scored(), POS, redactor=REDACTOR, batch_id="b", folded_at=NOW)
    assert row["event_id"] == "e1" and row["score"] == 0.5 and row["model_version"] == "7"
    assert row["ts"] == datetime(2017, 11, 25, 10, tzinfo=timezone.utc)
    assert (row["_topic"], row["_partition"], row["_offset"]) == ("clicks.scored", 2, 41)
    assert to_arrow([row], STREAM_SCHEMA).num_rows == 1


def test_a_null_score_is_kept_as_null():
    assert (
        scored_row(_scored(score=None, event_type="purchase"), POS, redactor=REDACTOR, batch_id="b", folded_at=NOW)[
            "score"
        ]
        is None
    )


@pytest.mark.parametrize(
    "value",
    [
        None,
        b"\xff",
        b"[1]",
        _scored(event_id=None),
        _scored(ts="yesterday"),
        _scored(**{WIRE_VERSION_KEY: "two"}),
        _scored(**{WIRE_VERSION_KEY: 0}),
        _scored(item_snapshot_version=-1),
        _scored(item_snapshot_version="7"),
    ],
)
def test_unreadable_scored_values_raise(value):
    with pytest.raises(ValueError):
        scored_row(value, POS, redactor=REDACTOR, batch_id="b", folded_at=NOW)


@pytest.mark.parametrize(
    "value",
    [
        f"{EMAIL},bob".encode(),
        b"\xff" + EMAIL.encode(),
        _scored(ts="yesterday", user_id=EMAIL, session_id=EMAIL),
        _scored(**{WIRE_VERSION_KEY: EMAIL}),
        _scored(event_id=None, user_id=EMAIL),
    ],
)
def test_why_a_scored_value_is_unreadable_quotes_none_of_it(value):
    with pytest.raises(ValueError) as info:
        scored_row(value, POS, redactor=REDACTOR, batch_id="b", folded_at=NOW)
    assert "alice" not in str(info.value)
    row = unreadable_scored_row(
        value, POS, str(info.value), max_raw_bytes=CAP, redactor=REDACTOR, batch_id="b", folded_at=NOW
    )
    assert "alice" not in json.dumps(row, default=str)


def test_unreadable_scored_value_becomes_a_redacted_quarantine_row_cut_at_the_cap():
    row = unreadable_scored_row(
        b"junk", POS, "not UTF-8 JSON", max_raw_bytes=CAP, redactor=REDACTOR, batch_id="b", folded_at=NOW
    )
    assert row["reason"] == "unreadable_scored_event" and row["raw_size"] == 4
    assert json.loads(row["record"]) == REDACTOR.click_value(b"junk")  # a summary: size, keyed hash, outline
    assert row["raw_hmac_sha256"] == keyed_hash(b"junk", key=KEY) and row["raw_sha256"] is None
    assert row["dedupe_key"] == "input:clicks.scored[2]@41" and row["source_offset"] == 41
    assert row[WIRE_VERSION_COLUMN] is None
    assert to_arrow([row], QUARANTINE_SCHEMA).num_rows == 1
    cut = unreadable_scored_row(
        b"x" * 100, POS, "bad", max_raw_bytes=10, redactor=REDACTOR, batch_id="b", folded_at=NOW
    )
    summary = json.loads(cut["record"])
    assert summary["form"] == "summary" and summary["size"] == 10 and summary["outline"] == "a" * 10
    assert cut["raw_truncated"] is True and cut["raw_size"] == 100


def test_a_session_id_scored_before_it_was_pseudonymized_is_pseudonymized_when_folded():
    row = scored_row(_scored(session_id=EMAIL), POS, redactor=REDACTOR, batch_id="b", folded_at=NOW)
    assert row["session_id"] == pseudonymize(EMAIL, "session", key=KEY)
    already = pseudonymize("s1", "session", key=KEY)
    row = scored_row(_scored(session_id=already), POS, redactor=REDACTOR, batch_id="b", folded_at=NOW)
    assert row["session_id"] == already


def test_faust_records_are_derived_from_the_schemas():
    assert set(click_event_record()._options.fields) == set(CLICK_EVENT.names)
    assert set(scored_event_record()._options.fields) == set(SCORED_EVENT.names)
    optional = {f.name for f in CLICK_EVENT.fields if not f.required}
    record = click_event_record()(**{k: v for k, v in _event(1).items() if k not in optional})
    assert record.session_id is None and record.item_id == "i1"


# ------------------------------------------------------------ dead-letter entries


def _entry(raw: bytes | None, reasons: list[str], **over) -> bytes:
    where = {
        "step": "parse_validate",
        "reason_code": "not_utf8",
        "topic": "clicks",
        "partition": 2,
        "offset": 41,
        "failed_at": T0,
        "max_raw_bytes": CAP,
    }
    return dlq_entry(raw, reasons, redactor=REDACTOR, **{**where, **over})


def test_dlq_entry_keeps_the_redacted_value_reasons_and_origin():
    raw = b"\xff\x00not json " + EMAIL.encode()
    entry = json.loads(_entry(raw, ["not UTF-8"]))
    assert entry[WIRE_VERSION_KEY] == WIRE_VERSION == 4
    assert entry["raw_encoding"] == "redacted-summary" and json.loads(entry["raw"]) == REDACTOR.click_value(raw)
    assert entry["reasons"] == ["not UTF-8"] and entry["source"] == {"topic": "clicks", "partition": 2, "offset": 41}
    assert entry["reason_code"] == "not_utf8" and entry["raw_size"] == len(raw) and entry["raw_truncated"] is False
    assert entry["raw_hmac_sha256"] == keyed_hash(raw, key=KEY) and "raw_sha256" not in entry
    assert b"alice" not in _entry(raw, ["not UTF-8"])


def test_a_dlq_entry_that_parses_keeps_its_declared_fields_with_pseudonyms():
    raw = json.dumps(
        {
            "user_id": EMAIL,
            "session_id": "Zelda Smith",
            "item_id": "1",
            "event_type": "teleport",
            "ts": 1511658100,
            "Alice Zelda": EMAIL,
        }
    ).encode()
    wire = _entry(raw, ["event_type: not one of view"], reason_code="unknown_event_type")
    entry = json.loads(wire)
    assert entry["raw_encoding"] == "redacted-json"
    record = json.loads(entry["raw"])
    assert record["record"]["user_id"] == pseudonymize(EMAIL, "user", key=KEY)
    assert record["record"]["session_id"] == pseudonymize("Zelda Smith", "session", key=KEY)
    # An event type off the list is the sender's free text: only its outline is kept.
    assert record["record"]["event_type"] == "aaaaaaaa" and record["unknown_fields"] == 1
    assert b"alice" not in wire.lower() and b"zelda" not in wire.lower()


def test_dlq_entry_is_bounded_whatever_the_record():
    raw = bytes(range(256)) * 8000  # 2 MB of the bytes JSON escapes the most
    reasons = ["x" * 5000] * 100
    wire = _entry(raw, reasons, step="enrich", reason_code="enrich_error", max_reason_chars=512)
    assert len(wire) < 500_000  # a producer's request limit is 1,000,000 bytes
    entry = json.loads(wire)
    summary = json.loads(entry["raw"])
    assert summary["form"] == "summary" and summary["size"] == CAP and entry["raw_truncated"] is True
    assert entry["raw_size"] == len(raw) and entry["raw_hmac_sha256"] == keyed_hash(raw, key=KEY)
    assert len(entry["reasons"]) == MAX_DLQ_REASONS + 1 and all(len(r) <= 512 for r in entry["reasons"])
    # A value that parses is bounded too: its declared fields only, each cut.
    big = json.dumps({"user_id": "u", "query": "q" * 900_000, **{f"f{i}": "v" * 100 for i in range(5000)}}).encode()
    assert len(_entry(big, ["too long"], max_raw_bytes=2_000_000)) < 10_000
    minimal = json.loads(
        minimal_dlq_entry(
            raw,
            redactor=REDACTOR,
            step="enrich",
            reason_code="enrich_error",
            topic="clicks",
            partition=0,
            offset=1,
            failed_at=T0,
        )
    )
    assert minimal["raw"] is None and minimal["raw_hmac_sha256"] == entry["raw_hmac_sha256"] and minimal["reason_code"]
    assert (
        set(entry)
        == set(minimal)
        >= {
            "raw",
            "raw_encoding",
            "step",
            "reasons",
            "source",
            "failed_at",
            "reason_code",
            "raw_size",
            "raw_hmac_sha256",
            "raw_truncated",
            WIRE_VERSION_KEY,
        }
    )


DLQ_POS = Position("clicks.dlq", 0, 3)


def _dlq(value: bytes | None, max_raw_bytes: int = CAP, pos: Position = DLQ_POS) -> dict:
    return dlq_row(value, pos, redactor=REDACTOR, max_raw_bytes=max_raw_bytes, batch_id="b", folded_at=NOW)


def test_what_the_worker_dead_letters_the_fold_reads_with_its_version():
    raw = b"\xffnot json"
    wire = _entry(raw, REDACTOR.reasons(raw, "parse_validate", "not_utf8"))
    row = _dlq(wire)
    assert row[WIRE_VERSION_COLUMN] == WIRE_VERSION and row["record"] == json.loads(wire)["raw"]
    assert row["raw_hmac_sha256"] == keyed_hash(raw, key=KEY) and row["raw_sha256"] is None
    # The same record dead-lettered before (version 1) is folded into the same row, bar its version.
    assert {**row, WIRE_VERSION_COLUMN: 1} == _dlq(V1_DLQ)


@pytest.mark.parametrize("value", [V1_DLQ, V1_MINIMAL_DLQ])
def test_dead_letters_already_in_the_topic_are_read_as_version_1_and_redacted(value):
    row = _dlq(value)
    assert row[WIRE_VERSION_COLUMN] == 1 and row["dedupe_key"] == "input:clicks[2]@41"
    assert row["raw_sha256"] is None  # never an unkeyed hash again
    assert row["failed_at"] == T0 and row["raw_size"] == 9
    assert to_arrow([row], QUARANTINE_SCHEMA).num_rows == 1


def test_a_legacy_dead_letter_holding_an_address_is_redacted_when_folded():
    raw = json.dumps({"user_id": EMAIL, "item_id": "1", "event_type": "teleport", "ts": 1511658100}).encode()
    for version in (None, 2):
        entry = {
            "raw": raw.decode("latin-1"),
            "raw_encoding": "latin-1",
            "raw_truncated": False,
            "reasons": [f"event_type: {EMAIL!r} is not one of view"],
            "step": "parse_validate",
            "reason_code": "unknown_event_type",
            "source": {"topic": "clicks", "partition": 0, "offset": 9},
            "raw_size": len(raw),
            "raw_sha256": hashlib.sha256(raw).hexdigest(),
            **({} if version is None else {WIRE_VERSION_KEY: version}),
        }
        row = _dlq(json.dumps(entry).encode())
        assert "alice" not in json.dumps(row, default=str) and row["raw_sha256"] is None
        assert json.loads(row["record"])["record"]["user_id"] == pseudonymize(EMAIL, "user", key=KEY)
        assert row["raw_hmac_sha256"] == keyed_hash(raw, key=KEY)


def test_a_current_entry_in_an_unknown_raw_form_keeps_no_raw():
    entry = {WIRE_VERSION_KEY: WIRE_VERSION, "raw": EMAIL, "raw_encoding": "latin-1", "reasons": ["x"]}
    assert _dlq(json.dumps(entry).encode())["record"] is None


def test_dlq_entry_old_format_uses_the_step_as_reason():
    entry = {
        "raw": "x",
        "raw_encoding": "latin-1",
        "step": "enrich",
        "reasons": ["a", "b"],
        "source": {"topic": "clicks", "partition": 1, "offset": 9},
        "failed_at": "2024-01-01T00:00:00.000Z",
    }
    row = _dlq(json.dumps(entry).encode())
    # Reasons written before they were safe are not kept: an old entry without a code keeps none.
    assert row["reason"] == "enrich" and row["detail"] == "" and row["reason_code"] is None
    assert row["raw_size"] is None and row["source_offset"] == 9
    assert row["dedupe_key"] == "input:clicks[1]@9" and row["key_offset"] == 9


def test_dlq_entry_new_fields_are_kept():
    entry = {
        WIRE_VERSION_KEY: 7,
        "raw": None,
        "step": "parse_validate",
        "reason_code": "not_utf8",
        "reasons": ["bad"],
        "raw_size": 300000,
        "raw_truncated": True,
        "raw_hmac_sha256": "ab" * 32,
        "source": {"topic": "clicks", "partition": 0, "offset": 1},
        "failed_at": "2024-01-01T00:00:00.000Z",
        "new_field": 1,
    }
    row = _dlq(json.dumps(entry).encode())
    assert row["reason"] == "not_utf8" and row["raw_size"] == 300000 and row["raw_truncated"] is True
    assert row["raw_hmac_sha256"] == "ab" * 32 and row["detail"] == "bad" and row[WIRE_VERSION_COLUMN] == 7
    assert to_arrow([row], QUARANTINE_SCHEMA).num_rows == 1


@pytest.mark.parametrize("value", [None, b"\xff\xfe", b"[]", b'{"reasons": 3, "source": "nowhere", "failed_at": "x"}'])
def test_any_dlq_value_becomes_a_row(value):
    row = _dlq(value, pos=Position("clicks.dlq", 1, 5))
    assert row["reason"] and row["dedupe_key"]
    assert to_arrow([row], QUARANTINE_SCHEMA).num_rows == 1


def test_an_unreadable_dlq_value_is_summarized_from_at_most_the_cap_it_is_given():
    value = b"\xff" + EMAIL.encode() * 10
    row = _dlq(value, max_raw_bytes=10, pos=Position("clicks.dlq", 1, 5))
    assert row["reason"] == "unreadable_dlq_entry" and row["raw_truncated"] is True and row["raw_size"] == len(value)
    summary = json.loads(row["record"])
    assert summary == {**REDACTOR.click_value(value[:10], truncated=True)}
    assert "alice" not in json.dumps(row, default=str) and row["raw_hmac_sha256"] == keyed_hash(value, key=KEY)
    assert "ä" not in row["detail"] and "0xff" not in row["detail"]


# ------------------------------------------------------------------ announcements


def test_an_announcement_round_trips_and_old_ones_still_parse():
    value = announcement_value("propensity", 3, alias="champion", reason="r", announced_at=NOW)
    assert json.loads(value)[WIRE_VERSION_KEY] == WIRE_VERSION
    assert parse_announcement(value) == parse_announcement(V1_ANNOUNCEMENT) == ("propensity", 3)


@pytest.mark.parametrize(
    "value, expected",
    [
        (None, (None, None)),
        (b"\xff", (None, None)),
        (b"[1]", (None, None)),
        (b'{"task": 3, "version": true}', (None, None)),
        (b'{"task": "propensity"}', ("propensity", None)),
    ],
)
def test_an_unclear_announcement_says_nothing(value, expected):
    assert parse_announcement(value) == expected


# ------------------------------------------------------------------------ brokers


def test_bootstrap_addresses_and_reachability():
    assert bootstrap_addresses(" 127.0.0.1:19092,[::1]:9092,nonsense") == [("127.0.0.1", 19092), ("::1", 9092)]
    assert not broker_accepts_connections("127.0.0.1:1,nonsense", timeout_s=0.5)


def test_the_confirmed_end_is_the_larger_answer():
    assert confirmed_end(10, None) == 10 and confirmed_end(10, 12) == 12 and confirmed_end(10, 9) == 10
