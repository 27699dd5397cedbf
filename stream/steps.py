"""The worker's named, pure steps: each takes plain data and returns plain data.

The worker (`stream.pipeline`) runs them once per micro-batch, in this order, and each
step's name is what logs, metrics and dead-letter entries call it:

    parse_validate -> pseudonymize -> enrich      (prepare_batch)
    -> score -> to_scored                          (the model, then scored_values)

The per-record functions define each step; `prepare_batch` and `scored_values` run them
over a whole micro-batch with the per-batch work hoisted out (one table read per user,
one pseudonym per user, batch-wide times formatted once), so the worker and the bench's
ceiling run exactly the same code.

Only view events are scored (the propensity task's examples are views); every other
valid event still updates the session state and goes to `clicks.scored` with a null
score, and the model name and version of the model serving that batch.

No step does I/O, so all of them are unit-tested without a broker or a model. A record
that fails any of them becomes a bounded dead-letter entry (`dlq_entry`, or
`minimal_dlq_entry` when even that cannot be sent) with a stable `reason_code`: the
click rules' code (`shared.click_rules`) for a rejected event, "<step>_error" otherwise.

    record = parse_validate(raw_bytes)
    record = pseudonymize_user(record, key=b"...")
    entry, features, replayed = enrich(record, table_entry, item_lookup)
"""

from __future__ import annotations

import hashlib
import json
import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson

from shared.click_rules import ClickRejected, Problem, check_click_bytes, excerpt
from shared.features import ITEM_FEATURES, item_rate_features
from shared.pseudonymize import Pseudonymizer, pseudonymize
from shared.schemas import CLICK_EVENT, PERSONAL_FIELDS, format_timestamp
from stream import sessions

STEP_PARSE = "parse_validate"
STEP_PSEUDONYMIZE = "pseudonymize"
STEP_ENRICH = "enrich"
STEP_SCORE = "score"
STEP_SERIALIZE = "to_scored"
STEP_PRODUCE = "produce"
SCORED_EVENT_TYPES = frozenset({"view"})
# At most this many reasons go into one dead-letter entry (a record can have many fields).
MAX_DLQ_REASONS = 20
# Pseudonyms remembered per worker: a user's id is hashed once, not once per event.
PSEUDONYM_CACHE_SIZE = 200_000

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
    """Replace the raw user and session ids by their keyed pseudonyms (namespaces "user"
    and "session", `shared.schemas.PERSONAL_FIELDS`)."""
    out = dict(record)
    for name in ("user_id", "session_id"):
        out[name] = pseudonymize(record.get(name), PERSONAL_FIELDS[name], key=key)
    return out


class Pseudonyms:
    """`pseudonymize(user_id, "user")` with the answers remembered (bounded), since a
    user sends many events and an HMAC costs more than a dict lookup. `session` does the
    same for session ids (namespace "session"): both are personal fields
    (`shared.schemas.PERSONAL_FIELDS`) and leave the worker only as pseudonyms."""

    def __init__(self, key: bytes, max_size: int = PSEUDONYM_CACHE_SIZE) -> None:
        self._pseudonym = Pseudonymizer(PERSONAL_FIELDS["user_id"], key=key)
        self._session_pseudonym = Pseudonymizer(PERSONAL_FIELDS["session_id"], key=key)
        self._max_size = max_size
        self._known: dict[str, str] = {}
        self._sessions: dict[str, str] = {}

    def __call__(self, user_id: str) -> str:
        known = self._known.get(user_id)
        if known is None:
            if len(self._known) >= self._max_size:
                self._known.clear()  # simpler than LRU, and a refill costs one HMAC per user
            known = self._known[user_id] = self._pseudonym(user_id)
        return known

    def session(self, session_id: str) -> str:
        known = self._sessions.get(session_id)
        if known is None:
            if len(self._sessions) >= self._max_size:
                self._sessions.clear()
            known = self._sessions[session_id] = self._session_pseudonym(session_id)
        return known


def enrich(
    record: Mapping[str, Any],
    entry: Mapping[str, Any] | None,
    items: ItemLookup,
    *,
    in_place: bool = False,
) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """Fold the event into the user's table entry and attach session + item features.

    Returns (entry, scoring record, replayed) where `replayed` says the event id was seen
    before and its remembered features were reused (`stream.sessions`). The entry is
    updated in place; so is the record with `in_place` (it becomes the scoring record).
    """
    scoring_record = record if in_place else dict(record)
    entry, _, replayed = sessions.fold(entry, record, scoring_record)  # features written into it
    scoring_record.update(items(str(record["item_id"])))
    return entry, scoring_record, replayed


def probe_record(items: ItemLookup) -> dict[str, Any]:
    """A scoring record every working model scores: a first view in a fresh session.

    When a batch fails, scoring this tells a broken model (infrastructure: exit 70) from
    records the model cannot score (dead-lettered one by one).
    """
    event = {
        "event_id": "probe",
        "user_id": "probe",
        "session_id": None,
        "item_id": "probe",
        "event_type": "view",
        "ts": datetime(2017, 11, 26, 1, tzinfo=timezone.utc),
        "query": None,
        "category_id": None,
    }
    return enrich(event, None, items)[1]


@dataclass
class Failed:
    """A record that failed at `step` (it goes to the dead-letter topic)."""

    step: str
    error: BaseException


@dataclass
class PreparedBatch:
    """`prepare_batch`'s answer, position by position with its input."""

    # A scoring record (event + session + item features) or why the record failed.
    records: list[dict[str, Any] | Failed]
    # The entries to write back: user -> position of the user's last event in the batch.
    changed: dict[str, int] = field(default_factory=dict)
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    replayed: int = 0


def prepare_batch(
    values: Sequence[bytes | None],
    *,
    entry_of: Callable[[str], Mapping[str, Any] | None],
    pseudonym: Pseudonyms,
    items: ItemLookup,
    now: datetime | None = None,
    entries: dict[str, dict[str, Any]] | None = None,
) -> PreparedBatch:
    """parse_validate -> pseudonymize -> enrich for a micro-batch, in order.

    `entry_of(user)` is read once per user per batch; the batch folds each user's events
    into that one entry, and `changed` / `entries` say which entries to write back (an
    entry changed by no new event, only replays, is not). `entries`: the entries a
    previous part of the same batch read already (filled in here). `pseudonym` replaces
    the user and session ids (the personal fields of CLICK_EVENT) by their pseudonyms. A
    record whose step raises becomes `Failed` and the others go on.
    """
    now = now or datetime.now(timezone.utc)
    out = PreparedBatch(records=[], entries={} if entries is None else entries)
    entries = out.entries
    for position, raw in enumerate(values):
        step = STEP_PARSE
        try:
            record = parse_validate(raw, now=now)
            step = STEP_PSEUDONYMIZE
            user = record["user_id"] = pseudonym(record["user_id"])
            if record["session_id"] is not None:
                record["session_id"] = pseudonym.session(record["session_id"])
            step = STEP_ENRICH
            entry = entries[user] if user in entries else entry_of(user)
            entry, scoring_record, replayed = enrich(record, entry, items, in_place=True)
        except Exception as exc:  # noqa: BLE001 - the record's fault: it is dead-lettered
            out.records.append(Failed(step, exc))
            continue
        entries[user] = entry
        if replayed:
            out.replayed += 1
        else:
            out.changed[user] = position
        out.records.append(scoring_record)
    return out


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
    batch = _ScoredBatch(model_name, model_version, received_at, scored_at)
    return batch.value(record, score)


class _ScoredBatch:
    """What every SCORED_EVENT of one micro-batch shares, with its times formatted once."""

    def __init__(self, model_name: str, model_version: str, received_at: datetime, scored_at: datetime) -> None:
        self._shared = {
            "model_name": model_name,
            "model_version": model_version,
            "received_at": format_timestamp(received_at),
            "scored_at": format_timestamp(scored_at),
        }
        self._formatted: dict[datetime, str] = {}  # a batch's events share many event times

    def value(self, record: Mapping[str, Any], score: float | None) -> bytes:
        if score is not None:
            score = float(score)
            if not math.isfinite(score):
                raise ValueError(f"the model returned a score of {score!r}")
        try:
            out = dict(zip(_CLICK_FIELDS, _CLICK_VALUES(record)))
        except KeyError:  # a record without some field: null
            out = {name: record.get(name) for name in _CLICK_FIELDS}
        for name in _CLICK_TIMES:
            value = out[name]
            if value is not None:
                text = self._formatted.get(value)
                if text is None:
                    text = self._formatted[value] = format_timestamp(value)
                out[name] = text
        out.update(self._shared)
        out["score"] = score
        return orjson.dumps(out)  # compact UTF-8 JSON; raises on a lone surrogate


_CLICK_FIELDS = CLICK_EVENT.names
_CLICK_VALUES = operator.itemgetter(*_CLICK_FIELDS)
_CLICK_TIMES = tuple(f.name for f in CLICK_EVENT.fields if f.type == "timestamp")


def scored_values(
    records: Sequence[Mapping[str, Any]],
    scores: Sequence[float | None],
    *,
    model_name: str,
    model_version: str,
    received_at: datetime,
    scored_at: datetime,
) -> list[bytes | Failed]:
    """`to_scored` for a micro-batch: wire bytes, or `Failed` for a record that cannot be."""
    batch = _ScoredBatch(model_name, model_version, received_at, scored_at)
    out: list[bytes | Failed] = []
    for record, score in zip(records, scores):
        try:
            out.append(batch.value(record, score))
        except Exception as exc:  # noqa: BLE001 - this record's fault
            out.append(Failed(STEP_SERIALIZE, exc))
    return out


def _bounded_reasons(reasons: list[str], max_chars: int) -> list[str]:
    kept = [r if len(r) <= max_chars else r[: max_chars - 3] + "..." for r in reasons[:MAX_DLQ_REASONS]]
    if len(reasons) > MAX_DLQ_REASONS:
        kept.append(f"... and {len(reasons) - MAX_DLQ_REASONS} more")
    return kept


def _origin(
    raw: bytes | None, step: str, reason_code: str, topic: str, partition: int, offset: int, failed_at: datetime
) -> dict[str, Any]:
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
    entry = {
        "raw": None,
        "raw_encoding": "latin-1",
        "raw_truncated": raw is not None,
        "reasons": [],
        **_origin(raw, step, reason_code, topic, partition, offset, failed_at),
    }
    return json.dumps(entry, separators=(",", ":")).encode("utf-8")
