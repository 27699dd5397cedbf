"""Kafka records of the fold -> rows of its two Delta tables (pure: no broker, no Delta).

    row = scored_row(value, Position("clicks.scored", 0, 17), batch_id="...", folded_at=now)
    entry = dlq_row(value, Position("clicks.dlq", 1, 3), batch_id="...", folded_at=now)

`silver/clicks_stream` holds silver clicks' columns (CLICK_EVENT + source + _batch_id)
followed by the stream's own (model, score, times, the Kafka position); `silver/
quarantine_stream` holds silver quarantine's columns followed by what a dead-letter
entry says. A scored value the fold cannot read becomes a quarantine row too.
Dead-letter entries are read tolerantly: fields a newer or older worker adds or omits
(reason_code, raw_size, raw_sha256, raw_truncated, source) are null when absent.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa

from shared.click_sources import STREAM_SOURCE
from shared.schemas import CLICK_EVENT, parse_timestamp

UNREADABLE_SCORED = "unreadable_scored_event"
UNREADABLE_DLQ = "unreadable_dlq_entry"
_TS = pa.timestamp("us", tz="UTC")

STREAM_SCHEMA = pa.schema(
    [*CLICK_EVENT.arrow_schema()]
    + [
        pa.field("source", pa.string()),
        pa.field("_batch_id", pa.string()),
        pa.field("model_name", pa.string()),
        pa.field("model_version", pa.string()),
        pa.field("score", pa.float64()),  # null for events the worker does not score
        pa.field("received_at", _TS),
        pa.field("scored_at", _TS),
        pa.field("_topic", pa.string()),
        pa.field("_partition", pa.int64()),
        pa.field("_offset", pa.int64()),
        pa.field("_folded_at", _TS),
    ]
)

QUARANTINE_SCHEMA = pa.schema(
    [
        # silver/quarantine's columns, so the two union by name
        pa.field("source_table", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("detail", pa.string()),
        pa.field("record", pa.string()),
        pa.field("_source", pa.string()),
        pa.field("_batch_id", pa.string()),
        pa.field("_row_number", pa.int64()),
        # what the dead-letter entry says
        pa.field("step", pa.string()),
        pa.field("reason_code", pa.string()),
        pa.field("raw_size", pa.int64()),
        pa.field("raw_sha256", pa.string()),
        pa.field("raw_truncated", pa.bool_()),
        pa.field("source_topic", pa.string()),
        pa.field("source_partition", pa.int64()),
        pa.field("source_offset", pa.int64()),
        pa.field("failed_at", _TS),
        # where the fold read it; `dedupe_key` names the failed record once
        pa.field("dedupe_key", pa.string()),
        pa.field("key_offset", pa.int64()),
        pa.field("_topic", pa.string()),
        pa.field("_partition", pa.int64()),
        pa.field("_offset", pa.int64()),
        pa.field("_folded_at", _TS),
    ]
)


@dataclass(frozen=True)
class Position:
    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


def _where(pos: Position, batch_id: str, folded_at: datetime) -> dict[str, Any]:
    return {
        "_topic": pos.topic,
        "_partition": pos.partition,
        "_offset": pos.offset,
        "_batch_id": batch_id,
        "_folded_at": folded_at,
    }


def _ts(value: Any) -> datetime | None:
    return None if value in (None, "") else parse_timestamp(value)


def scored_row(value: bytes | None, pos: Position, *, batch_id: str, folded_at: datetime) -> dict[str, Any]:
    """One clicks_stream row; ValueError when the value is not a readable scored event."""
    if value is None:
        raise ValueError("empty message (tombstone)")
    try:
        event = json.loads(value.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not UTF-8 JSON: {exc}") from exc
    if not isinstance(event, dict):
        raise ValueError(f"expected a JSON object, got {type(event).__name__}")
    missing = [name for name in ("event_id", "user_id", "item_id", "event_type", "ts") if not event.get(name)]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    try:
        times = {name: _ts(event.get(name)) for name in ("ts", "received_at", "scored_at")}
        score = event.get("score")
        score = None if score is None else float(score)
    except (ValueError, TypeError, OverflowError, OSError) as exc:
        raise ValueError(f"bad value: {exc}") from exc
    row = {name: event.get(name) for name in CLICK_EVENT.names}
    row.update(times)
    row.update(
        source=STREAM_SOURCE,
        model_name=event.get("model_name"),
        model_version=None if event.get("model_version") is None else str(event["model_version"]),
        score=score,
        **_where(pos, batch_id, folded_at),
    )
    for name in ("event_id", "user_id", "session_id", "item_id", "event_type", "query", "category_id"):
        if row[name] is not None:
            row[name] = str(row[name])
    return row


def unreadable_scored_row(
    value: bytes | None, pos: Position, problem: str, *, batch_id: str, folded_at: datetime
) -> dict[str, Any]:
    """A scored value the fold cannot read, kept in quarantine with why and where."""
    raw = b"" if value is None else value
    return _quarantine(
        reason=UNREADABLE_SCORED,
        detail=problem,
        record=raw[: 64 * 1024].decode("latin-1"),
        step="fold",
        reason_code=UNREADABLE_SCORED,
        raw_size=len(raw),
        raw_sha256=None,
        raw_truncated=len(raw) > 64 * 1024,
        source=pos,
        failed_at=folded_at,
        pos=pos,
        batch_id=batch_id,
        folded_at=folded_at,
    )


def dlq_row(value: bytes | None, pos: Position, *, batch_id: str, folded_at: datetime) -> dict[str, Any]:
    """One quarantine_stream row from a dead-letter entry; never raises."""
    try:
        entry = json.loads((value or b"").decode("utf-8"))
        if not isinstance(entry, dict):
            raise ValueError(f"expected a JSON object, got {type(entry).__name__}")
    except (UnicodeDecodeError, ValueError) as exc:
        raw = value or b""
        return _quarantine(
            reason=UNREADABLE_DLQ,
            detail=f"the dead-letter entry itself is unreadable: {exc}",
            record=raw[: 64 * 1024].decode("latin-1"),
            step="fold",
            reason_code=UNREADABLE_DLQ,
            raw_size=len(raw),
            raw_sha256=None,
            raw_truncated=len(raw) > 64 * 1024,
            source=pos,
            failed_at=folded_at,
            pos=pos,
            batch_id=batch_id,
            folded_at=folded_at,
        )
    source = entry.get("source") if isinstance(entry.get("source"), dict) else {}
    try:
        source_pos = Position(str(source["topic"]), int(source["partition"]), int(source["offset"]))
    except (KeyError, TypeError, ValueError):
        source_pos = None
    reasons = entry.get("reasons")
    reasons = [str(r) for r in reasons] if isinstance(reasons, list) else ([] if reasons is None else [str(reasons)])
    step = None if entry.get("step") is None else str(entry["step"])
    code = None if entry.get("reason_code") is None else str(entry["reason_code"])
    try:
        failed_at = _ts(entry.get("failed_at"))
    except (ValueError, TypeError, OverflowError, OSError):
        failed_at = None
    raw_size = entry.get("raw_size")
    return _quarantine(
        reason=code or step or "unknown",
        detail="; ".join(reasons),
        record=entry.get("raw"),
        step=step,
        reason_code=code,
        raw_size=raw_size if isinstance(raw_size, int) and not isinstance(raw_size, bool) else None,
        raw_sha256=entry.get("raw_sha256"),
        raw_truncated=entry.get("raw_truncated") if isinstance(entry.get("raw_truncated"), bool) else None,
        source=source_pos,
        failed_at=failed_at,
        pos=pos,
        batch_id=batch_id,
        folded_at=folded_at,
    )


def _quarantine(
    *,
    reason: str,
    detail: str,
    record: Any,
    step: str | None,
    reason_code: str | None,
    raw_size: int | None,
    raw_sha256: Any,
    raw_truncated: bool | None,
    source: Position | None,
    failed_at: datetime | None,
    pos: Position,
    batch_id: str,
    folded_at: datetime,
) -> dict[str, Any]:
    # The worker may dead-letter one input record twice (at-least-once): the input's
    # position names it once. Without a position, the dead-letter record's own does.
    key_pos = source or pos
    return {
        "source_table": STREAM_SOURCE,
        "reason": reason,
        "detail": detail,
        "record": None if record is None else str(record),
        "_source": str(key_pos),
        "_row_number": key_pos.offset,
        "step": step,
        "reason_code": reason_code,
        "raw_size": raw_size,
        "raw_sha256": None if raw_sha256 is None else str(raw_sha256),
        "raw_truncated": raw_truncated,
        "source_topic": source.topic if source else None,
        "source_partition": source.partition if source else None,
        "source_offset": source.offset if source else None,
        "failed_at": failed_at,
        "dedupe_key": f"{'input' if source else 'read'}:{key_pos}",
        "key_offset": key_pos.offset,
        **_where(pos, batch_id, folded_at),
    }


def first_of_each(rows: Iterable[dict[str, Any]], key: str) -> tuple[list[dict[str, Any]], int]:
    """Rows with the first occurrence of each `key` value (in order), and how many were dropped."""
    seen: set[Any] = set()
    kept: list[dict[str, Any]] = []
    dropped = 0
    for row in rows:
        if row[key] in seen:
            dropped += 1
            continue
        seen.add(row[key])
        kept.append(row)
    return kept, dropped


def to_arrow(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pylist([{name: row.get(name) for name in schema.names} for row in rows], schema=schema)
