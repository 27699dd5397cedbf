"""Rows as the fold wrote them before it redacted what it folds, for the privacy
migration's tests: a dead letter's raw text, reasons and unkeyed hash, a scored event's
raw session id, built with the contract's row builders (`shared.contract`) and put back.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from shared.contract import DLQ_MAX_RAW_BYTES
from shared.contract.dead_letter import dlq_row as _dlq_row
from shared.contract.folded import QUARANTINE_SCHEMA, STREAM_SCHEMA, Position
from shared.contract.scored import scored_row as _scored_row
from shared.redaction import Redactor

_REDACTOR = Redactor(b"legacy-rows")


def dlq_row(value: bytes, pos: Position, *, batch_id: str, folded_at: datetime) -> dict[str, Any]:
    row = _dlq_row(
        value, pos, redactor=_REDACTOR, max_raw_bytes=DLQ_MAX_RAW_BYTES, batch_id=batch_id, folded_at=folded_at
    )
    entry = json.loads(value)
    row.update(
        record=entry.get("raw"),
        detail="; ".join(entry.get("reasons") or []),
        raw_sha256=entry.get("raw_sha256"),
        raw_hmac_sha256=None,
    )
    return row


def scored_row(value: bytes, pos: Position, *, batch_id: str, folded_at: datetime) -> dict[str, Any]:
    row = _scored_row(value, pos, redactor=_REDACTOR, batch_id=batch_id, folded_at=folded_at)
    row["session_id"] = json.loads(value).get("session_id")
    return row


def legacy_scored_row(
    fields: list[str] | tuple[str, ...], session: str | None, offset: int, *, key: bytes, folded_at: datetime
) -> dict[str, Any]:
    """The clicks_stream row of a view that the replay sent from Taobao `fields` (user,
    item, category, behavior, timestamp) before event ids were keyed and sessions
    pseudonymized: its unkeyed id and raw session id, as the fold stored them."""
    from jobs.privacy import legacy_click_event_id
    from shared.pseudonymize import pseudonymize

    event = {
        "event_id": legacy_click_event_id("taobao", list(fields)),
        "user_id": pseudonymize(fields[0], "user", key=key),
        "session_id": session,
        "item_id": fields[1],
        "event_type": "view",
        "ts": "2017-11-26T01:01:40.000Z",
        "query": None,
        "category_id": fields[2],
        "model_name": "propensity",
        "model_version": "1",
        "score": 0.5,
        "received_at": "2017-11-26T01:01:40.000Z",
        "scored_at": "2017-11-26T01:01:40.000Z",
    }
    return scored_row(
        json.dumps(event).encode(), Position("clicks.scored", 0, offset), batch_id="b", folded_at=folded_at
    )


__all__ = ["QUARANTINE_SCHEMA", "STREAM_SCHEMA", "Position", "dlq_row", "legacy_scored_row", "scored_row"]
