"""Scored events on `clicks.scored`: written by the stream worker, read by the fold.

    batch = ScoredBatch("propensity", "3", received_at, scored_at, item_snapshot_version=7)  # once per micro-batch
    value = batch.value(record, 0.42)                                # wire bytes
    row = scored_row(value, Position("clicks.scored", 0, 17), redactor=redactor, batch_id="...", folded_at=now)

A scored event is the (pseudonymized) input event's CLICK_EVENT fields, then the model's
name and version, the worker's received/scored times, the score (null for events the
worker does not score), the Delta version of the item snapshot that enriched it (null
while the worker has none) and `wire_version`; compact UTF-8 JSON, times in their wire form
(`shared.schemas.format_timestamp`). It is the SCORED_EVENT schema plus the version.
Its personal fields are pseudonyms; a session id that is not one yet (an event scored
before session ids were pseudonymized) is pseudonymized by the reader, and a value the
reader cannot read is quarantined in its redacted form, with a reason that quotes none
of it.

The writer is on the worker's hot path: what a batch shares (model, times, version) is
built once, event times are formatted once per distinct value, and a record's fields
are picked by one itemgetter.
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson

from shared.click_sources import STREAM_SOURCE
from shared.contract import WIRE_VERSION, WIRE_VERSION_KEY, wire_version_of
from shared.contract.folded import Position, unreadable_row, where_folded
from shared.pseudonymize import is_pseudonym
from shared.redaction import Redactor
from shared.schemas import CLICK_EVENT, format_timestamp, parse_timestamp

# The quarantine reason of a scored value the fold cannot read.
UNREADABLE_SCORED = "unreadable_scored_event"

_CLICK_FIELDS = CLICK_EVENT.names
_CLICK_VALUES = operator.itemgetter(*_CLICK_FIELDS)
_CLICK_TIMES = tuple(f.name for f in CLICK_EVENT.fields if f.type == "timestamp")
_REQUIRED = ("event_id", "user_id", "item_id", "event_type", "ts")
_TEXT = ("event_id", "user_id", "session_id", "item_id", "event_type", "query", "category_id")


class ScoredBatch:
    """What every scored event of one micro-batch shares, with its times formatted once."""

    def __init__(
        self,
        model_name: str,
        model_version: str,
        received_at: datetime,
        scored_at: datetime,
        *,
        item_snapshot_version: int | None = None,
    ) -> None:
        self._shared = {
            "model_name": model_name,
            "model_version": model_version,
            "received_at": format_timestamp(received_at),
            "scored_at": format_timestamp(scored_at),
            "item_snapshot_version": item_snapshot_version,
            WIRE_VERSION_KEY: WIRE_VERSION,
        }
        self._formatted: dict[datetime, str] = {}  # a batch's events share many event times

    def value(self, record: Mapping[str, Any], score: float | None) -> bytes:
        """The wire bytes of one event; `score` None for an event that is not scored.

        Raises ValueError for a score that is not a finite number and orjson's
        JSONEncodeError (a TypeError) for a value JSON cannot carry (a lone surrogate).
        """
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


def _version(value: Any) -> int:
    """A Delta version as JSON carries it: a non-negative integer (ValueError otherwise)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("item_snapshot_version is not a non-negative integer")
    return value


def _ts(value: Any) -> datetime | None:
    return None if value in (None, "") else parse_timestamp(value)


def scored_row(
    value: bytes | None, pos: Position, *, redactor: Redactor, batch_id: str, folded_at: datetime
) -> dict[str, Any]:
    """One stream-table row; ValueError when the value is not a readable scored event
    (its message names what is wrong and quotes no value).

    Any wire version is read: version 1 (no `wire_version`) has the same fields; a
    `session_id` written raw (before version 3) is pseudonymized with `redactor`'s key.
    """
    if value is None:
        raise ValueError("empty message (tombstone)")
    try:
        event = json.loads(value.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not UTF-8 JSON ({type(exc).__name__})") from exc
    if not isinstance(event, dict):
        raise ValueError(f"expected a JSON object, got {type(event).__name__}")
    version = wire_version_of(event)
    if version is None:
        raise ValueError(f"bad {WIRE_VERSION_KEY}")
    missing = [name for name in _REQUIRED if not event.get(name)]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    try:
        times = {name: _ts(event.get(name)) for name in ("ts", "received_at", "scored_at")}
        score = event.get("score")
        score = None if score is None else float(score)
        snapshot = event.get("item_snapshot_version")
        snapshot = None if snapshot is None else _version(snapshot)
    except (ValueError, TypeError, OverflowError, OSError) as exc:
        raise ValueError(f"bad value ({type(exc).__name__})") from exc
    row = {name: event.get(name) for name in _CLICK_FIELDS}
    row.update(times)
    row.update(
        source=STREAM_SOURCE,
        model_name=event.get("model_name"),
        model_version=None if event.get("model_version") is None else str(event["model_version"]),
        score=score,
        item_snapshot_version=snapshot,
        **where_folded(pos, batch_id, folded_at, version),
    )
    for name in _TEXT:
        if row[name] is not None:
            row[name] = str(row[name])
    if row["session_id"] is not None and not is_pseudonym(row["session_id"]):
        row["session_id"] = redactor.pseudonym("session_id", row["session_id"])
    return row


def unreadable_scored_row(
    value: bytes | None,
    pos: Position,
    problem: str,
    *,
    redactor: Redactor,
    max_raw_bytes: int,
    batch_id: str,
    folded_at: datetime,
) -> dict[str, Any]:
    """A scored value the fold cannot read (`scored_row` raised `problem`, which quotes
    none of it), as a quarantine row holding its redacted form."""
    return unreadable_row(
        value,
        pos,
        redactor=redactor,
        reason=UNREADABLE_SCORED,
        detail=problem,
        max_raw_bytes=max_raw_bytes,
        batch_id=batch_id,
        folded_at=folded_at,
    )
