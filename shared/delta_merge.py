"""Incremental, exactly-once appends to Delta (the fold's): insert-only merges, key
lookups bounded by a range, and tables whose schema grows in place.

    ensure_table(path, schema)            # create it, or add the columns it lacks
    merge = insert_new_rows(open_table(path), rows, key="event_id", range_column="ts",
                            txns=[AppTxn("fold:clicks.scored:0", 42)])

Rows whose key is already in the table are not inserted, and the writer's Kafka offsets
(app transactions) ride in the same commit. A range predicate on a column the rows are
clustered by (event time) lets delta-rs skip every file whose min/max stats lie outside
the new rows' range, so the cost of a merge follows the new rows, not the table's history.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Field, Transaction
from deltalake.exceptions import CommitFailedError, DeltaError

from shared.delta import AppTxn, open_table, table_exists
from shared.errors import ConcurrentCommitError, TableError


@dataclass(frozen=True)
class MergeResult:
    path: str
    version: int | None  # the version committed; None when nothing was committed
    inserted: int
    files_scanned: int = 0
    files_skipped: int = 0


def ensure_table(path: str | Path, schema: pa.Schema, partition_by: list[str] | None = None) -> None:
    """Create an empty table with `schema` unless one exists, and add to an existing one
    the columns of `schema` it lacks (nullable: its rows read them as null). Concurrent
    callers are fine; a column of another type under the same name is left as it is."""
    if not table_exists(path):
        try:
            DeltaTable.create(str(path), schema, mode="ignore", partition_by=partition_by)
        except DeltaError as exc:
            if not table_exists(path):  # a concurrent creator winning is not an error
                raise TableError(f"cannot create Delta table {path}: {exc}") from exc
    for attempt in range(5):
        table = open_table(path)
        have = set(pa.schema(table.schema().to_arrow()).names)
        missing = [field.with_nullable(True) for field in schema if field.name not in have]
        if not missing:
            return
        try:
            table.alter.add_columns([Field.from_arrow(field) for field in missing])
            return
        except DeltaError as exc:  # a concurrent writer (another fold adding them too): look again
            if attempt == 4:
                raise TableError(f"cannot add {[f.name for f in missing]} to Delta table {path}: {exc}") from exc


def _range_literal(value: object) -> str:
    if isinstance(value, datetime):
        return "'" + value.isoformat() + "'"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def insert_new_rows(
    table: DeltaTable,
    data: pa.Table,
    *,
    key: str,
    range_column: str | None,
    txns: list[AppTxn],
    info: dict[str, str] | None = None,
) -> MergeResult:
    """MERGE `data` into `table` (a snapshot), inserting the rows whose `key` it lacks.

    The app transactions `txns` are committed with the rows; when every row is already
    there, they are committed alone. The snapshot is the read version: a concurrent
    commit that added rows in the range, or set one of the same app ids, makes this
    commit fail with ConcurrentCommitError, and the caller re-reads and retries.
    Equal keys must have equal `range_column` values (event ids derive from the event).
    """
    import pyarrow.compute as pc

    path = table.table_uri
    props = CommitProperties(
        custom_metadata=info or None, app_transactions=[Transaction(t.app_id, t.version) for t in txns] or None
    )
    try:
        inserted, scanned, skipped = 0, 0, 0
        if data.num_rows:
            predicate = f"t.{key} = s.{key}"
            if range_column:
                column = data.column(range_column)
                lo, hi = pc.min(column).as_py(), pc.max(column).as_py()
                if lo is not None:
                    predicate += (
                        f" AND t.{range_column} >= {_range_literal(lo)} AND t.{range_column} <= {_range_literal(hi)}"
                    )
            metrics = (
                table.merge(
                    data.cast(pa.schema(table.schema().to_arrow())),
                    predicate,
                    source_alias="s",
                    target_alias="t",
                    commit_properties=props,
                )
                .when_not_matched_insert_all()
                .execute()
            )
            inserted = int(metrics.get("num_target_rows_inserted", 0))
            scanned = int(metrics.get("num_target_files_scanned", 0))
            skipped = int(metrics.get("num_target_files_skipped_during_scan", 0))
        if inserted == 0:
            if not txns:
                return MergeResult(str(path), None, 0, scanned, skipped)
            # delta-rs commits nothing for a merge that changes nothing: store the offsets alone.
            table.create_write_transaction([], "append", pa.schema(table.schema().to_arrow()), commit_properties=props)
            table.update_incremental()  # the snapshot object does not advance by itself here
        return MergeResult(str(path), table.version(), inserted, scanned, skipped)
    except CommitFailedError as exc:
        raise ConcurrentCommitError(f"commit to {path} conflicts with a concurrent one: {exc}") from exc
    except DeltaError as exc:
        raise TableError(f"merge into {path} failed: {exc}") from exc


def keys_present(
    path: str | Path, key: str, values: list[str], range_column: str, lo: object, hi: object, version: int | None = None
) -> set[str]:
    """Which of `values` a table holds in `key`, looking only where `range_column` is in [lo, hi].

    Files whose stats (or parquet row-group statistics) lie outside the range are skipped.
    """
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    if not values or not table_exists(path):
        return set()
    dataset = open_table(path, version).to_pyarrow_dataset()
    condition = (
        (ds.field(range_column) >= pa.scalar(lo, dataset.schema.field(range_column).type))
        & (ds.field(range_column) <= pa.scalar(hi, dataset.schema.field(range_column).type))
        & ds.field(key).isin(pa.array(values, dataset.schema.field(key).type))
    )
    found = dataset.to_table(columns=[key], filter=condition).column(key)
    return set(pc.unique(found).to_pylist())
