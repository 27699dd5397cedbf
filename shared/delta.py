"""Delta tables for Spark through delta-rs: with `shared.delta_merge` and `shared.delta_maintenance`, the only code that touches table files.

Spark computes; delta-rs owns the transaction log. Rules this module enforces:

* reads list the files of one table version from the log and hand exactly those to
  `spark.read.parquet` with the table's schema; a table directory is never scanned
  (it may hold files the log removed or never committed);
* small frames are committed through Arrow; large ones are written as parquet by the
  executors into a hidden staging folder, moved under the table root and committed in
  one Delta transaction, so a crash leaves orphan files that no reader sees;
* idempotent jobs tag commits with Delta app transactions (app id + version) and ask
  `committed_versions` before doing work again (the kafka-delta-ingest pattern); one
  commit may carry several (e.g. one per Kafka partition folded), all or none visible.

    from shared.delta import read_table, write_table, AppTxn
    df = read_table(spark, "var/lake/bronze/orders")
    write_table(df, "var/lake/silver/orders", mode="overwrite", txn=AppTxn("clean:orders", 3))
    write_arrow(rows, "var/lake/silver/clicks", mode="append",
                txns=[AppTxn("fold:clicks:0", 41), AppTxn("fold:clicks:1", 17)])

The fold's insert-only merges (and tables that evolve in place) are `shared.delta_merge`.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import DeltaError
from deltalake.exceptions import TableNotFoundError as DeltaTableNotFound
from deltalake.transaction import AddAction, RemoveAction, create_table_with_add_actions

from shared.errors import TableError, TableNotFoundError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

WriteMode = Literal["append", "overwrite"]
# Frames up to this many rows commit through Arrow unless the caller says otherwise
# (jobs pass settings.spark.arrow_write_max_rows).
DEFAULT_ARROW_MAX_ROWS = 200_000
_HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


@dataclass(frozen=True)
class AppTxn:
    """A Delta app transaction: `version` must grow for each new unit of work of `app_id`."""

    app_id: str
    version: int


@dataclass(frozen=True)
class WriteResult:
    path: str
    version: int
    rows: int
    skipped: bool = False


def table_exists(path: str | Path) -> bool:
    return DeltaTable.is_deltatable(str(path))


def open_table(path: str | Path, version: int | None = None) -> DeltaTable:
    try:
        return DeltaTable(str(path), version=version)
    except DeltaTableNotFound as exc:
        raise TableNotFoundError(f"no Delta table at {path}: run the job that writes it first") from exc
    except DeltaError as exc:
        raise TableError(f"cannot open Delta table {path} (version {version}): {exc}") from exc


def table_version(path: str | Path) -> int | None:
    """Latest committed version, or None when the table does not exist."""
    return open_table(path).version() if table_exists(path) else None


def committed_version(path: str | Path, app_id: str) -> int | None:
    """The last app-transaction version committed for `app_id`, or None."""
    if not table_exists(path):
        return None
    return open_table(path).transaction_version(app_id)


def committed_versions(path: str | Path, app_ids: Iterable[str]) -> dict[str, int | None]:
    """The last app-transaction version of each of `app_ids` (None: never committed)."""
    app_ids = list(app_ids)
    if not table_exists(path):
        return {app_id: None for app_id in app_ids}
    table = open_table(path)
    return {app_id: table.transaction_version(app_id) for app_id in app_ids}


def table_rows(path: str | Path, version: int | None = None) -> int | None:
    """The row count of one version from the log's file statistics, reading no data;
    None when a file of it was committed without a record count."""
    import pyarrow.compute as pc

    actions = pa.table(open_table(path, version).get_add_actions(flatten=True))
    if "num_records" not in actions.column_names:
        return None if actions.num_rows else 0
    counts = actions.column("num_records")
    return None if counts.null_count else int(pc.sum(counts).as_py() or 0)


def already_committed(path: str | Path, txn: AppTxn) -> bool:
    done = committed_version(path, txn.app_id)
    return done is not None and done >= txn.version


def all_committed(path: str | Path, txns: Sequence[AppTxn]) -> bool:
    """True when every txn is committed (skip the write); False when none is.

    Some but not all committed means the caller built one write from units of work
    that were partly done: committing it would duplicate rows (and could move an app
    id's version backwards), so it is refused.
    """
    if not txns:
        return False
    done = committed_versions(path, [t.app_id for t in txns])
    committed = [t for t in txns if (version := done[t.app_id]) is not None and version >= t.version]
    if committed and len(committed) < len(txns):
        names = ", ".join(f"{t.app_id}@{done[t.app_id]}" for t in committed)
        raise TableError(f"{path}: {names} already committed; drop those units of work from this write")
    return bool(committed)


def _all_txns(txn: AppTxn | None, txns: Sequence[AppTxn]) -> list[AppTxn]:
    together = ([txn] if txn else []) + list(txns)
    if len({t.app_id for t in together}) < len(together):
        raise ValueError("one commit carries at most one version per app id")
    return together


def arrow_schema(path: str | Path, version: int | None = None) -> pa.Schema:
    return pa.schema(open_table(path, version).schema().to_arrow())


# ------------------------------------------------------------------------------- reading


def read_table(spark: SparkSession, path: str | Path, version: int | None = None) -> DataFrame:
    """The rows of one version of a Delta table as a Spark DataFrame."""
    from pyspark.sql.pandas.types import from_arrow_schema

    table = open_table(path, version)
    schema = from_arrow_schema(pa.schema(table.schema().to_arrow()), prefer_timestamp_ntz=False)
    files = table.file_uris()
    if not files:
        return spark.createDataFrame([], schema)
    reader = spark.read.schema(schema)
    if table.metadata().partition_columns:
        reader = reader.option("basePath", str(path))
    # Spark puts partition columns last; keep the table's own column order.
    return reader.parquet(*files).select(*schema.fieldNames())


def read_arrow(path: str | Path, version: int | None = None, columns: list[str] | None = None) -> pa.Table:
    """The rows of one version as an Arrow table (for small tables and the stream side)."""
    return open_table(path, version).to_pyarrow_table(columns=columns)


# ------------------------------------------------------------------------------- writing


def _commit_properties(txns: Sequence[AppTxn], info: dict[str, str] | None) -> CommitProperties:
    return CommitProperties(
        custom_metadata=info or None,
        app_transactions=[Transaction(t.app_id, t.version) for t in txns] or None,
    )


def write_arrow(
    data: pa.Table,
    path: str | Path,
    *,
    mode: WriteMode,
    partition_by: list[str] | None = None,
    txn: AppTxn | None = None,
    info: dict[str, str] | None = None,
    replace_where: str | None = None,
    txns: Sequence[AppTxn] = (),
) -> WriteResult:
    """Commit an Arrow table in one transaction carrying `txn` and `txns` (no-op when
    all of them are already committed; see `all_committed`).

    With `replace_where` (a SQL predicate, e.g. "source_table = 'orders'") an overwrite
    replaces only the rows matching it, atomically.
    """
    if replace_where and mode != "overwrite":
        raise ValueError("replace_where replaces rows: it goes with mode='overwrite'")
    together = _all_txns(txn, txns)
    if all_committed(path, together):
        return WriteResult(str(path), table_version(path) or 0, 0, skipped=True)
    try:
        write_deltalake(
            str(path),
            data,
            # deltalake's overloads tie `predicate` to mode='overwrite'; replace_where is only
            # passed with it (checked above), which the checker cannot follow.
            mode=mode,  # type: ignore[arg-type]
            partition_by=partition_by,
            schema_mode="overwrite" if mode == "overwrite" and not replace_where else None,
            predicate=replace_where,
            commit_properties=_commit_properties(together, info),
        )
    except DeltaError as exc:
        raise TableError(f"commit to {path} failed: {exc}") from exc
    return WriteResult(str(path), table_version(path) or 0, data.num_rows)


def write_table(
    df: DataFrame,
    path: str | Path,
    *,
    mode: WriteMode,
    partition_by: list[str] | None = None,
    txn: AppTxn | None = None,
    info: dict[str, str] | None = None,
    arrow_max_rows: int = DEFAULT_ARROW_MAX_ROWS,
    replace_where: str | None = None,
    txns: Sequence[AppTxn] = (),
) -> WriteResult:
    """Commit a Spark DataFrame to a Delta table in one transaction.

    The frame is computed once, by one Spark job: the executors write it as parquet into
    a hidden staging folder under the table root, and the files' footers give its row
    count. At most `arrow_max_rows` rows are then read by the driver and committed as one
    file through Arrow (small tables stay one file); larger frames keep the executors'
    files, moved under the root. A `replace_where` overwrite always goes through Arrow
    (delta-rs's predicate overwrite). Either way readers see all of the write or none of it.
    """
    together = _all_txns(txn, txns)
    if all_committed(path, together):
        return WriteResult(str(path), table_version(path) or 0, 0, skipped=True)
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".staging-{uuid.uuid4().hex}"
    try:
        _stage(df, staging, [] if replace_where else partition_by or [])
        files = sorted(staging.rglob("*.parquet"))
        rows = sum(pq.read_metadata(f).num_rows for f in files)
        if rows <= arrow_max_rows or replace_where:
            return write_arrow(
                _read_staged(staging, files, df),
                root,
                mode=mode,
                partition_by=partition_by,
                txns=together,
                info=info,
                replace_where=replace_where,
            )
        actions = [_adopt_file(staging, f, root) for f in files]
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return _commit_files(df, root, rows, actions, mode, partition_by or [], together, info)


def _stage(df: DataFrame, staging: Path, partition_by: list[str]) -> None:
    """The one Spark job of a write: the executors write the frame's parquet files."""
    df.write.mode("overwrite").partitionBy(*partition_by).parquet(str(staging))


def _read_staged(staging: Path, files: list[Path], df: DataFrame) -> pa.Table:
    """The staged files as one Arrow table with the frame's schema (partition values,
    which Spark keeps in the folder names, put back as columns)."""
    from pyspark.sql.pandas.types import to_arrow_schema

    schema = to_arrow_schema(df.schema, timezone="UTC")
    tables = []
    for file in files:
        table = pq.read_table(file)
        for key, value in _partition_values(file.relative_to(staging)).items():
            table = table.append_column(key, pa.array([value] * table.num_rows, pa.string()))
        tables.append(table.select(schema.names).cast(schema))
    return pa.concat_tables(tables) if tables else schema.empty_table()


def _partition_values(relative: Path) -> dict[str, str | None]:
    """key=value folders of a Hive-style partitioned file (Spark's null as None)."""
    values: dict[str, str | None] = {}
    for part in relative.parts[:-1]:
        key, _, value = part.partition("=")
        value = unquote(value)
        values[key] = None if value == _HIVE_NULL else value
    return values


def _commit_files(
    df: DataFrame,
    root: Path,
    rows: int,
    actions: list[AddAction],
    mode: WriteMode,
    partition_by: list[str],
    txns: Sequence[AppTxn],
    info: dict[str, str] | None,
) -> WriteResult:
    """One Delta commit adding the files the executors wrote (already under the root)."""
    from pyspark.sql.pandas.types import to_arrow_schema

    schema = to_arrow_schema(df.schema, timezone="UTC")
    props = _commit_properties(txns, info)
    try:
        if table_exists(root):
            # Typed as the wider list the transaction API takes (a list is invariant).
            changes: list[AddAction | RemoveAction] = list(actions)
            open_table(root).create_write_transaction(
                changes, mode, schema, partition_by=partition_by or None, commit_properties=props
            )
        else:
            from deltalake import Schema as DeltaSchema

            create_table_with_add_actions(
                str(root),
                DeltaSchema.from_arrow(schema),
                actions,
                mode="error",
                partition_by=partition_by or None,
                commit_properties=props,
            )
    except DeltaError as exc:
        raise TableError(f"commit to {root} failed: {exc}") from exc
    return WriteResult(str(root), table_version(root) or 0, rows)


def _adopt_file(staging: Path, file: Path, root: Path) -> AddAction:
    """Move one staged parquet file under the table root and describe it for the log."""
    relative = file.relative_to(staging)
    destination = root / relative
    destination.parent.mkdir(parents=True, exist_ok=True)
    file.rename(destination)
    partition_values = _partition_values(relative)
    num_rows = pq.read_metadata(destination).num_rows
    return AddAction(
        path=relative.as_posix(),
        size=destination.stat().st_size,
        partition_values=partition_values,
        modification_time=int(time.time() * 1000),
        data_change=True,
        stats=json.dumps({"numRecords": num_rows}),
    )
