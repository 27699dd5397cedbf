"""The worker's named, pure steps: each takes plain data and returns plain data.

The Faust app (`stream.app`) wires them in this order, and each step's name is what
logs, metrics and dead-letter entries call it:

    parse_validate -> pseudonymize -> enrich -> (micro-batch) -> score -> to_scored

Only view events are scored (the propensity task's examples are views); every other
valid event still updates the session state and goes to `clicks.scored` with a null
score, and the model name and version of the model serving that batch.

No step does I/O, so all of them are unit-tested without a broker or a model. A record
that fails any of them becomes a bounded dead-letter entry (`dlq_entry`, or
`minimal_dlq_entry` when even that cannot be sent) with a stable `reason_code`: the
click rules' code (`shared.click_rules`) for a rejected event, "<step>_error" otherwise.

    record = parse_validate(raw_bytes)
    record = pseudonymize_user(record, key=b"...")
    entry, features = enrich(record, table_entry, item_lookup)
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

from shared.click_rules import ClickRejected, Problem, check_click_bytes, excerpt
from shared.features import ITEM_FEATURES, SessionState, item_rate_features, session_step
from shared.pseudonymize import pseudonymize
from shared.schemas import CLICK_EVENT, format_timestamp, to_wire
from stream.records import scored_event_record

STEP_PARSE = "parse_validate"
STEP_PSEUDONYMIZE = "pseudonymize"
STEP_ENRICH = "enrich"
STEP_SCORE = "score"
STEP_SERIALIZE = "to_scored"
STEP_PRODUCE = "produce"
SCORED_EVENT_TYPES = frozenset({"view"})
# At most this many reasons go into one dead-letter entry (a record can have many fields).
MAX_DLQ_REASONS = 20
# Each user's table entry remembers the features of its last few events by event id, so
# events replayed after a crash (at-least-once delivery) get the features they had the
# first time instead of being folded into the session twice.
RECENT_EVENTS_KEPT = 32

ItemLookup = Callable[[str], Mapping[str, float]]


def parse_validate(raw: bytes | None, *, now: datetime | None = None) -> dict[str, Any]:
    """Bytes from `clicks` -> typed CLICK_EVENT dict; ClickRejected lists every problem.

    `now` (default: the current time) bounds the accepted event times (shared.click_rules).
    """
    if raw is None:
        raise ClickRejected([Problem("not_json", "value: missing (empty message, a tombstone)")])
    return check_click_bytes(raw, now=now)


def failure_reason(step: str, exc: BaseException) -> tuple[str, list[str]]:
    """(reason_code, reasons) of a record that failed at `step`, without whole sender values."""
    if isinstance(exc, ClickRejected):
        return exc.code, list(exc.reasons)
    return f"{step}_error", [f"{type(exc).__name__}: {excerpt(str(exc))}"]


def pseudonymize_user(record: dict[str, Any], *, key: bytes) -> dict[str, Any]:
    """Replace the raw user id by its keyed pseudonym (namespace "user")."""
    out = dict(record)
    out["user_id"] = pseudonymize(record["user_id"], "user", key=key)
    return out


def enrich(
    record: Mapping[str, Any],
    entry: Mapping[str, Any] | None,
    items: ItemLookup,
) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """Fold the event into the user's session state and attach session + item features.

    `entry` is the user's table value ({"state": ..., "recent": [[event_id, features]]})
    or None. Returns (new entry, scoring record, replayed) where `replayed` says the
    event id was seen before and its remembered features were reused.
    """
    entry = dict(entry) if entry else {"state": None, "recent": []}
    recent: list[list[Any]] = list(entry.get("recent") or [])
    event_id = record["event_id"]
    remembered = next((feats for eid, feats in recent if eid == event_id), None)
    if remembered is not None:
        session_features, replayed = dict(remembered), True
    else:
        state = SessionState.from_dict(entry.get("state")) if entry.get("state") else None
        new_state, session_features = session_step(state, record)
        recent = (recent + [[event_id, session_features]])[-RECENT_EVENTS_KEPT:]
        entry = {"state": new_state.to_dict(), "recent": recent}
        replayed = False
    scoring_record = {**record, **session_features, **items(str(record["item_id"]))}
    return entry, scoring_record, replayed


def probe_record(items: ItemLookup) -> dict[str, Any]:
    """A scoring record every working model scores: a first view in a fresh session.

    When a batch fails, scoring this tells a broken model (infrastructure: exit 70) from
    records the model cannot score (dead-lettered one by one).
    """
    event = {"event_id": "probe", "user_id": "probe", "session_id": None, "item_id": "probe",
             "event_type": "view", "ts": datetime(2017, 11, 26, 1, tzinfo=timezone.utc), "query": None,
             "category_id": None}
    return enrich(event, None, items)[1]


def is_scored(record: Mapping[str, Any]) -> bool:
    """Whether the model scores this event (views only); the others pass with a null score."""
    return record.get("event_type") in SCORED_EVENT_TYPES


def item_features_from_counts(views: float, carts: float, purchases: float) -> dict[str, float]:
    """ITEM_FEATURES of one item as plain floats (the shared function returns numpy 0-d)."""
    feats = item_rate_features(views, carts, purchases)
    return {name: float(feats[name]) for name in ITEM_FEATURES.names}


def to_scored(
    record: Mapping[str, Any],
    *,
    model_name: str,
    model_version: str,
    score: float | None,
    received_at: datetime,
    scored_at: datetime,
) -> bytes:
    """The SCORED_EVENT wire bytes: the (pseudonymized) input event plus model and times.

    `score` is None for an event that is not scored (see `is_scored`).
    """
    if score is not None and not math.isfinite(float(score)):
        raise ValueError(f"the model returned a score of {score!r}")
    scored = scored_event_record()(
        **{name: record.get(name) for name in CLICK_EVENT.names},
        model_name=model_name,
        model_version=model_version,
        score=None if score is None else float(score),
        received_at=received_at,
        scored_at=scored_at,
    )
    return to_wire(scored.asdict())


def _bounded_reasons(reasons: list[str], max_chars: int) -> list[str]:
    kept = [r if len(r) <= max_chars else r[: max_chars - 3] + "..." for r in reasons[:MAX_DLQ_REASONS]]
    if len(reasons) > MAX_DLQ_REASONS:
        kept.append(f"... and {len(reasons) - MAX_DLQ_REASONS} more")
    return kept


def _origin(raw: bytes | None, step: str, reason_code: str, topic: str, partition: int,
            offset: int, failed_at: datetime) -> dict[str, Any]:
    return {
        "step": step,
        "reason_code": reason_code,
        "source": {"topic": topic, "partition": partition, "offset": offset},
        "failed_at": format_timestamp(failed_at),
        "raw_size": None if raw is None else len(raw),
        "raw_sha256": None if raw is None else hashlib.sha256(raw).hexdigest(),
    }


def dlq_entry(
    raw: bytes | None,
    reasons: list[str],
    *,
    step: str,
    topic: str,
    partition: int,
    offset: int,
    failed_at: datetime,
    reason_code: str,
    max_raw_bytes: int = 64 * 1024,
    max_reason_chars: int = 512,
) -> bytes:
    """A bounded dead-letter record: the raw bytes (latin-1 text keeps every byte, cut at
    `max_raw_bytes`), why (each reason cut at `max_reason_chars`), and where from.

    `raw_size` and `raw_sha256` describe the whole value, so a cut entry still identifies
    it. JSON escaping makes an entry up to ~6x its raw bytes: 64 KiB stays far below a
    producer's 1 MB request limit.
    """
    kept = None if raw is None else raw[:max_raw_bytes]
    entry = {
        "raw": None if kept is None else kept.decode("latin-1"),
        "raw_encoding": "latin-1",
        "raw_truncated": raw is not None and len(raw) > max_raw_bytes,
        "reasons": _bounded_reasons([str(r) for r in reasons], max_reason_chars),
        **_origin(raw, step, reason_code, topic, partition, offset, failed_at),
    }
    return json.dumps(entry, separators=(",", ":")).encode("utf-8")


def minimal_dlq_entry(
    raw: bytes | None,
    *,
    step: str,
    reason_code: str,
    topic: str,
    partition: int,
    offset: int,
    failed_at: datetime,
) -> bytes:
    """The entry sent when the full one could not be: where, size, hash, code; no raw bytes."""
    entry = {"raw": None, "raw_encoding": "latin-1", "raw_truncated": raw is not None, "reasons": [],
             **_origin(raw, step, reason_code, topic, partition, offset, failed_at)}
    return json.dumps(entry, separators=(",", ":")).encode("utf-8")
