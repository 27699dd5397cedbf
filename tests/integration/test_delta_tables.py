"""shared.delta on real Spark + delta-rs: atomic commits, no stray files, idempotency."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F

from shared.delta import AppTxn, read_arrow, read_table, table_version, write_arrow, write_table
from shared.errors import TableNotFoundError

pytestmark = pytest.mark.integration


def _frame(spark, n: int):
    return spark.range(n).withColumn("group", (F.col("id") % 3).cast("string")).withColumn("ts", F.current_timestamp())


@pytest.mark.parametrize("arrow_max_rows", [10_000, 10], ids=["arrow", "executors"])
def test_write_paths_commit_atomically_and_read_back(spark, tmp_path, arrow_max_rows):
    path = tmp_path / "t"
    first = write_table(_frame(spark, 100), path, mode="overwrite", partition_by=["group"], arrow_max_rows=arrow_max_rows)
    second = write_table(_frame(spark, 7), path, mode="overwrite", partition_by=["group"], arrow_max_rows=arrow_max_rows)
    assert (first.version, second.version) == (0, 1)
    assert read_table(spark, path).count() == 7
    assert read_table(spark, path, version=0).count() == 100  # time travel
    assert read_table(spark, path).columns == ["id", "group", "ts"]
    assert not list(path.glob(".staging-*"))


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


def test_replace_where_overwrites_one_slice(tmp_path):
    path = tmp_path / "t"
    write_arrow(pa.table({"k": ["a", "b"], "v": [1, 2]}), path, mode="overwrite", partition_by=["k"])
    write_arrow(pa.table({"k": ["a", "a"], "v": [3, 4]}), path, mode="overwrite", partition_by=["k"], replace_where="k = 'a'")
    rows = sorted(read_arrow(path).to_pylist(), key=lambda r: r["v"])
    assert rows == [{"k": "b", "v": 2}, {"k": "a", "v": 3}, {"k": "a", "v": 4}]


def test_missing_table_is_a_clear_error(spark, tmp_path):
    with pytest.raises(TableNotFoundError, match="run the job that writes it"):
        read_table(spark, tmp_path / "nothing-here")
