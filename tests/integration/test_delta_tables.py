"""shared.delta on real Spark + delta-rs: atomic commits, no stray files, idempotency."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F

from shared.delta import (
    AppTxn,
    committed_versions,
    open_table,
    read_arrow,
    read_table,
    table_version,
    write_arrow,
    write_table,
)
from shared.errors import TableError, TableNotFoundError

pytestmark = pytest.mark.integration


def _frame(spark, n: int):
    return spark.range(n).withColumn("group", (F.col("id") % 3).cast("string")).withColumn("ts", F.current_timestamp())


@pytest.mark.parametrize("arrow_max_rows", [10_000, 10], ids=["arrow", "executors"])
def test_write_paths_commit_atomically_and_read_back(spark, tmp_path, arrow_max_rows):
    path = tmp_path / "t"
    first = write_table(
        _frame(spark, 100), path, mode="overwrite", partition_by=["group"], arrow_max_rows=arrow_max_rows
    )
    second = write_table(
        _frame(spark, 7), path, mode="overwrite", partition_by=["group"], arrow_max_rows=arrow_max_rows
    )
    assert (first.version, second.version) == (0, 1)
    assert read_table(spark, path).count() == 7
    assert read_table(spark, path, version=0).count() == 100  # time travel
    assert read_table(spark, path).columns == ["id", "group", "ts"]
    assert not list(path.glob(".staging-*"))


@pytest.mark.parametrize("arrow_max_rows", [10_000, 10], ids=["arrow", "executors"])
def test_a_write_computes_its_frame_in_one_spark_job(spark, tmp_path, arrow_max_rows):
    """No count before the write, no second pass: the footers of the staged files count."""
    context = spark.sparkContext
    group = f"one-write-{arrow_max_rows}"
    context.setJobGroup(group, group)
    try:
        result = write_table(_frame(spark, 100), tmp_path / "t", mode="overwrite", arrow_max_rows=arrow_max_rows)
    finally:
        context.setLocalProperty("spark.jobGroup.id", None)
        context.setLocalProperty("spark.job.description", None)
    assert result.rows == 100 and read_arrow(tmp_path / "t").num_rows == 100
    assert len(context.statusTracker().getJobIdsForGroup(group)) == 1


def test_reads_ignore_files_the_log_does_not_list(spark, tmp_path):
    path = tmp_path / "t"
    write_table(_frame(spark, 5), path, mode="overwrite", arrow_max_rows=10)
    # A crashed writer's leftovers: parquet files under the root that were never committed.
    pq.write_table(pa.table({"id": [999] * 50, "group": ["x"] * 50}), path / "part-orphan.parquet")
    assert read_table(spark, path).count() == 5
    assert read_arrow(path).num_rows == 5


def test_app_transactions_make_writes_idempotent(spark, tmp_path):
    path = tmp_path / "t"
    df = _frame(spark, 10)
    assert not write_table(df, path, mode="append", txn=AppTxn("job", 1)).skipped
    assert write_table(df, path, mode="append", txn=AppTxn("job", 1)).skipped
    assert read_table(spark, path).count() == 10
    write_table(df, path, mode="append", txn=AppTxn("job", 2))
    assert read_table(spark, path).count() == 20 and table_version(path) == 1


def test_several_app_transactions_commit_in_one_delta_commit(tmp_path):
    """The fold's pattern: one commit carries one app transaction per Kafka partition."""
    path = tmp_path / "t"
    write_arrow(pa.table({"p": [0], "v": [0]}), path, mode="append")
    rows = pa.table({"p": [0, 0, 1], "v": [1, 2, 3]})
    first = write_arrow(rows, path, mode="append", txns=[AppTxn("fold:0", 41), AppTxn("fold:1", 17)])
    assert not first.skipped and first.version == 1  # one commit after the table's first
    assert committed_versions(path, ["fold:0", "fold:1", "fold:2"]) == {"fold:0": 41, "fold:1": 17, "fold:2": None}
    # Both transactions live in that one commit file, next to its rows.
    actions = [json.loads(line) for line in (path / "_delta_log" / f"{1:020d}.json").read_text().splitlines()]
    assert sorted((a["txn"]["appId"], a["txn"]["version"]) for a in actions if "txn" in a) == [
        ("fold:0", 41),
        ("fold:1", 17),
    ]
    assert open_table(path, version=0).transaction_version("fold:0") is None

    rerun = write_arrow(rows, path, mode="append", txns=[AppTxn("fold:0", 41), AppTxn("fold:1", 17)])
    assert rerun.skipped and table_version(path) == 1 and read_arrow(path).num_rows == 4
    # Half done is refused: re-appending partition 0's rows would duplicate them.
    with pytest.raises(TableError, match="fold:0@41 already committed"):
        write_arrow(rows, path, mode="append", txns=[AppTxn("fold:0", 41), AppTxn("fold:1", 18)])
    assert table_version(path) == 1
    write_arrow(rows.slice(2), path, mode="append", txns=[AppTxn("fold:1", 18)])
    assert committed_versions(path, ["fold:0", "fold:1"]) == {"fold:0": 41, "fold:1": 18}


def test_replace_where_overwrites_one_slice(tmp_path):
    path = tmp_path / "t"
    write_arrow(pa.table({"k": ["a", "b"], "v": [1, 2]}), path, mode="overwrite", partition_by=["k"])
    write_arrow(
        pa.table({"k": ["a", "a"], "v": [3, 4]}), path, mode="overwrite", partition_by=["k"], replace_where="k = 'a'"
    )
    rows = sorted(read_arrow(path).to_pylist(), key=lambda r: r["v"])
    assert rows == [{"k": "b", "v": 2}, {"k": "a", "v": 3}, {"k": "a", "v": 4}]


def test_missing_table_is_a_clear_error(spark, tmp_path):
    with pytest.raises(TableNotFoundError, match="run the job that writes it"):
        read_table(spark, tmp_path / "nothing-here")


def test_incremental_outputs_skip_per_input_version_and_redo_only_what_was_lost(tmp_path):
    """shared.incremental: a unit of work commits per output; a crash between two outputs
    redoes only the missing one; new input versions redo both; force always writes."""
    from shared.incremental import Output, PinnedInputs, run_incremental
    from shared.run_metrics import JobRun

    outputs = [Output("silver/a", tmp_path / "a", "job:a"), Output("silver/b", tmp_path / "b", "job:b")]
    calls: list[list[str]] = []

    def writer(crash_after_first: bool = False):
        def write(txns):
            calls.append([label for label, t in txns.items() if t])
            results = {}
            for out in outputs:
                if crash_after_first and results:
                    raise RuntimeError("killed between the two commits")
                results[out.label] = write_arrow(
                    pa.table({"v": [len(calls)]}), out.path, mode="overwrite", txns=txns[out.label]
                )
            return results

        return write

    def pinned(version: int) -> PinnedInputs:
        return PinnedInputs(frames={}, versions={"bronze/x": version}, work_version=version + 1)

    run = JobRun("test", tmp_path / "metrics")
    with pytest.raises(RuntimeError):
        run_incremental(run, pinned(0), outputs, force=False, write=writer(crash_after_first=True))
    assert table_version(outputs[0].path) == 0 and table_version(outputs[1].path) is None
    results = run_incremental(run, pinned(0), outputs, force=False, write=writer())
    # a was committed for this work already: delta skips it, b is written.
    assert results["silver/a"].skipped and not results["silver/b"].skipped
    assert committed_versions(outputs[1].path, ["job:b"]) == {"job:b": 1}
    assert run_incremental(run, pinned(0), outputs, force=False, write=writer()) is None
    assert run.tables_written["silver/a"].skipped and run.tables_read == {"bronze/x": 0}
    results = run_incremental(run, pinned(3), outputs, force=False, write=writer())
    assert not any(r.skipped for r in results.values())
    assert committed_versions(outputs[0].path, ["job:a"]) == {"job:a": 4}
    results = run_incremental(run, pinned(3), outputs, force=True, write=writer())
    assert calls[-1] == [] and not any(r.skipped for r in results.values())
    assert table_version(outputs[0].path) == 2  # v0 crash run, v1 new input, v2 forced
