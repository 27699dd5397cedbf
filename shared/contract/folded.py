"""The two silver tables the fold writes: their names (from settings), paths and schemas.

    path = stream_table_path(settings)          # <lake>/silver/<settings.fold.stream_table>
    label = stream_table_label(settings)        # "silver/clicks_stream", as jobs record it
    table = to_arrow(rows, STREAM_SCHEMA)

The stream table (default `silver/clicks_stream`) holds silver clicks' columns
(CLICK_EVENT + source + _batch_id) followed by the stream's own (model, score, times, the
Kafka position); the quarantine table (default `silver/quarantine_stream`) holds silver
quarantine's columns followed by what a dead-letter entry says (its redacted form and
keyed hash: no raw identifier, `shared.contract.dead_letter`). Readers of these tables
(the features job, the demo, the bench) take their names from here, so renaming one in
settings (SHOPFLOW_FOLD__STREAM_TABLE) moves every reader with it.

The tables evolve in place: a column added here is added to an existing table by the
fold (`shared.delta_merge.ensure_table`), and rows written before it read as null. Columns are
only ever added, nullable, at the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from shared.click_sources import STREAM_SOURCE
from shared.schemas import CLICK_EVENT

if TYPE_CHECKING:
    from shared.redaction import Redactor
    from shared.settings import Settings

_TS = pa.timestamp("us", tz="UTC")
# The wire version of the message a row was read from (null: folded before rows kept it).
WIRE_VERSION_COLUMN = "_wire_version"

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
        pa.field(WIRE_VERSION_COLUMN, pa.int64()),
        # The item snapshot's Delta version the worker enriched the event with (null: it
        # had none, or, below ITEM_SNAPSHOT_WIRE_VERSION, the writer did not record it).
        pa.field("item_snapshot_version", pa.int64()),
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
        # the unkeyed hash of rows folded before hashes were keyed; written null since
        # (`shopflow privacy migrate` clears old ones): raw_hmac_sha256 is the hash now
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
        pa.field(WIRE_VERSION_COLUMN, pa.int64()),
        # HMAC-SHA256 (pseudonymization key) of the whole failed value
        pa.field("raw_hmac_sha256", pa.string()),
    ]
)


def stream_table_path(settings: Settings) -> Path:
    """Where the fold writes scored events: <lake>/silver/<fold.stream_table>."""
    return settings.lake.table("silver", settings.fold.stream_table)


def quarantine_table_path(settings: Settings) -> Path:
    """Where the fold writes dead letters: <lake>/silver/<fold.quarantine_table>."""
    return settings.lake.table("silver", settings.fold.quarantine_table)


def stream_table_label(settings: Settings) -> str:
    """The stream table as jobs name their inputs and outputs ("silver/clicks_stream")."""
    return f"silver/{settings.fold.stream_table}"


def quarantine_table_label(settings: Settings) -> str:
    return f"silver/{settings.fold.quarantine_table}"


@dataclass(frozen=True)
class Position:
    """Where a record lies in Kafka (the fold's rows keep it)."""

    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


def where_folded(pos: Position, batch_id: str, folded_at: datetime, wire_version: int | None) -> dict[str, Any]:
    """The columns every folded row ends with: where the fold read it, when, in which batch."""
    return {
        "_topic": pos.topic,
        "_partition": pos.partition,
        "_offset": pos.offset,
        "_batch_id": batch_id,
        "_folded_at": folded_at,
        WIRE_VERSION_COLUMN: wire_version,
    }


def quarantine_row(
    *,
    reason: str,
    detail: str,
    record: Any,
    step: str | None,
    reason_code: str | None,
    raw_size: int | None,
    raw_hmac_sha256: Any,
    raw_truncated: bool | None,
    source: Position | None,
    failed_at: datetime | None,
    pos: Position,
    batch_id: str,
    folded_at: datetime,
    wire_version: int | None,
) -> dict[str, Any]:
    """One row of the quarantine table. `source`: the failed input record's position,
    when known; `pos`: where the fold read this (the dead-letter topic, or the scored one)."""
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
        "raw_sha256": None,  # never written again: an unkeyed hash of sender bytes
        "raw_hmac_sha256": None if raw_hmac_sha256 is None else str(raw_hmac_sha256),
        "raw_truncated": raw_truncated,
        "source_topic": source.topic if source else None,
        "source_partition": source.partition if source else None,
        "source_offset": source.offset if source else None,
        "failed_at": failed_at,
        "dedupe_key": f"{'input' if source else 'read'}:{key_pos}",
        "key_offset": key_pos.offset,
        **where_folded(pos, batch_id, folded_at, wire_version),
    }


def unreadable_row(
    value: bytes | None,
    pos: Position,
    *,
    redactor: Redactor,
    reason: str,
    detail: str,
    max_raw_bytes: int,
    batch_id: str,
    folded_at: datetime,
) -> dict[str, Any]:
    """A value the fold cannot read at all, kept in quarantine with why and where, in its
    redacted form (`shared.redaction`: its first `max_raw_bytes` parsed with personal
    fields pseudonymized, or summarized: size, keyed hash, outline), never its bytes.
    `detail` must quote nothing of the value."""
    raw = b"" if value is None else value
    truncated = len(raw) > max_raw_bytes
    return quarantine_row(
        reason=reason,
        detail=detail,
        record=redactor.click_value_text(raw[:max_raw_bytes], truncated=truncated),
        step="fold",
        reason_code=reason,
        raw_size=len(raw),
        raw_hmac_sha256=redactor.keyed_hash(raw),
        raw_truncated=truncated,
        source=pos,
        failed_at=folded_at,
        pos=pos,
        batch_id=batch_id,
        folded_at=folded_at,
        wire_version=None,
    )


def to_arrow(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    """Rows (dicts; missing columns null) as an Arrow table of one of the folded schemas."""
    return pa.Table.from_pylist([{name: row.get(name) for name in schema.names} for row in rows], schema=schema)
