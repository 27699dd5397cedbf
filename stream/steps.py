"""The worker's named, pure steps: each takes plain data and returns plain data.

The worker (`stream.pipeline`) runs them once per micro-batch, in this order, and each
step's name is what logs, metrics and dead-letter entries call it:

    parse_validate -> pseudonymize -> enrich      (prepare_batch)
    -> score -> to_scored                          (the model, then scored_values)

The per-record functions define each step; `prepare_batch` and `scored_values` run them
over a whole micro-batch with the per-batch work hoisted out (one table read per user,
one pseudonym per user, batch-wide times formatted once), so the worker and the bench's
ceiling run exactly the same code. The bytes `to_scored` writes, and the dead-letter
entries, are the stream's contract with the lake (`shared.contract`).

Only view events are scored (the propensity task's examples are views); every other
valid event still updates the session state and goes to `clicks.scored` with a null
score, and the model name and version of the model serving that batch.

No step does I/O, so all of them are unit-tested without a broker or a model. A record
that fails any of them becomes `Failed(step, error)`; the worker sends it to the
dead-letter topic (`shared.contract.dead_letter`) with a stable `reason_code` from
`failure_reason`: the click rules' code (`shared.click_rules`) for a rejected event,
"<step>_error" otherwise, with reasons that quote no sender value
(`shared.redaction.safe_failure_reason`).

    record = parse_validate(raw_bytes)
    record["user_id"] = Pseudonyms(key)(record["user_id"])
    entry, features, replayed = enrich(record, table_entry, item_lookup)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from shared.click_rules import ClickRejected, Problem, check_click_bytes
from shared.contract.scored import ScoredBatch
from shared.features import ITEM_FEATURES, item_rate_features
from shared.pseudonymize import Pseudonymizer
from shared.redaction import safe_failure_reason
from shared.schemas import PERSONAL_FIELDS
from stream import sessions

STEP_PARSE = "parse_validate"
STEP_PSEUDONYMIZE = "pseudonymize"
STEP_ENRICH = "enrich"
STEP_SCORE = "score"
STEP_SERIALIZE = "to_scored"
STEP_PRODUCE = "produce"
SCORED_EVENT_TYPES = frozenset({"view"})
# Pseudonyms remembered per worker: a user's id is hashed once, not once per event. More
# than the users active within the session retention (~75,000 at a million users over 10
# hours); ~170 bytes each, so the worker's memory stays bounded (bench/soak.py).
PSEUDONYM_CACHE_SIZE = 100_000

ItemLookup = Callable[[str], Mapping[str, float]]


def parse_validate(raw: bytes | None, *, now: datetime | None = None) -> dict[str, Any]:
    """Bytes from `clicks` -> typed CLICK_EVENT dict; ClickRejected lists every problem.

    `now` (default: the current time) bounds the accepted event times (shared.click_rules).
    """
    if raw is None:
        raise ClickRejected([Problem("not_json", "value: missing (empty message, a tombstone)")])
    return check_click_bytes(raw, now=now)


def failure_reason(step: str, exc: BaseException) -> tuple[str, list[str]]:
    """(reason_code, reasons) of a record that failed at `step`, quoting no sender value:
    the click rules' reasons, or the exception's type alone (its text may hold a value)."""
    return safe_failure_reason(step, exc)


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


def scored_values(
    records: Sequence[Mapping[str, Any]],
    scores: Sequence[float | None],
    *,
    model_name: str,
    model_version: str,
    received_at: datetime,
    scored_at: datetime,
    item_snapshot_version: int | None = None,
) -> list[bytes | Failed]:
    """The to_scored step for a micro-batch: each record's scored-event bytes
    (`shared.contract.scored`), or `Failed` for a record that cannot be written."""
    batch = ScoredBatch(model_name, model_version, received_at, scored_at, item_snapshot_version=item_snapshot_version)
    out: list[bytes | Failed] = []
    for record, score in zip(records, scores):
        try:
            out.append(batch.value(record, score))
        except Exception as exc:  # noqa: BLE001 - this record's fault
            out.append(Failed(STEP_SERIALIZE, exc))
    return out
