"""The worker's named, pure steps: each takes plain data and returns plain data.

The Faust app (`stream.app`) wires them in this order, and each step's name is what
logs, metrics and dead-letter entries call it:

    parse_validate -> pseudonymize -> enrich -> (micro-batch) -> score -> to_scored

No step does I/O, so all of them are unit-tested without a broker or a model.

    record = parse_validate(raw_bytes)
    record = pseudonymize_user(record, key=b"...")
    entry, features = enrich(record, table_entry, item_lookup)
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Callable, Mapping

from shared.errors import ValidationError
from shared.features import ITEM_FEATURES, SessionState, item_rate_features, session_step
from shared.pseudonymize import pseudonymize
from shared.schemas import CLICK_EVENT, format_timestamp, to_wire, validate_click_event
from stream.records import scored_event_record

STEP_PARSE = "parse_validate"
STEP_PSEUDONYMIZE = "pseudonymize"
STEP_ENRICH = "enrich"
STEP_SCORE = "score"
STEP_PRODUCE = "produce"
# Each user's table entry remembers the features of its last few events by event id, so
# events replayed after a crash (at-least-once delivery) get the features they had the
# first time instead of being folded into the session twice.
RECENT_EVENTS_KEPT = 32

ItemLookup = Callable[[str], Mapping[str, float]]


def parse_validate(raw: bytes | None) -> dict[str, Any]:
    """Bytes from `clicks` -> typed CLICK_EVENT dict; ValidationError lists every problem."""
    if raw is None:
        raise ValidationError("empty message (tombstone)", ["value: missing"])
    return validate_click_event(raw)


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


def item_features_from_counts(views: float, carts: float, purchases: float) -> dict[str, float]:
    """ITEM_FEATURES of one item as plain floats (the shared function returns numpy 0-d)."""
    feats = item_rate_features(views, carts, purchases)
    return {name: float(feats[name]) for name in ITEM_FEATURES.names}


def to_scored(
    record: Mapping[str, Any],
    *,
    model_name: str,
    model_version: str,
    score: float,
    received_at: datetime,
    scored_at: datetime,
) -> bytes:
    """The SCORED_EVENT wire bytes: the (pseudonymized) input event plus model and times."""
    scored = scored_event_record()(
        **{name: record.get(name) for name in CLICK_EVENT.names},
        model_name=model_name,
        model_version=model_version,
        score=float(score),
        received_at=received_at,
        scored_at=scored_at,
    )
    return to_wire(scored.asdict())


def dlq_entry(
    raw: bytes | None,
    reasons: list[str],
    *,
    step: str,
    topic: str,
    partition: int,
    offset: int,
    failed_at: datetime,
) -> bytes:
    """A dead-letter record: the raw bytes (latin-1 text keeps every byte), why, and where."""
    return json.dumps(
        {
            "raw": None if raw is None else raw.decode("latin-1"),
            "raw_encoding": "latin-1",
            "step": step,
            "reasons": reasons,
            "source": {"topic": topic, "partition": partition, "offset": offset},
            "failed_at": format_timestamp(failed_at),
        },
        separators=(",", ":"),
    ).encode("utf-8")
