"""Ingest of user-supplied files: other formats, and files that cannot be read."""

from __future__ import annotations

import gzip
import json

import pytest

from batch import ingest
from shared.delta import read_arrow, table_version
from shared.errors import SourceReadError
from shared.settings import get_settings

pytestmark = pytest.mark.integration


def _bronze(name: str):
    return get_settings().lake.table("bronze", name)


def test_json_and_parquet_files_land_in_bronze_as_strings(spark, tmp_path):
    records = [{"order_id": 1, "amount": 9.5, "items": [1, 2]}, {"order_id": 2, "amount": None, "items": []}]
    json_file = tmp_path / "orders.json"
    json_file.write_text("\n".join(json.dumps(r) for r in records) + "\n{broken\n")
    assert ingest.main(["--path", str(json_file), "--table", "extra_json", "--format", "json"]) == 0
    table = read_arrow(_bronze("extra_json"))
    assert table.num_rows == 3
    assert all(str(f.type) == "string" for f in table.schema if f.name != "_ingested_at" and f.name != "_row_number")
    assert table["_corrupt_record"].to_pylist().count("{broken") == 1  # kept, not dropped

    parquet_file = tmp_path / "orders.parquet"
    spark.createDataFrame([(1, 2.5)], "order_id long, amount double").toPandas().to_parquet(parquet_file)
    assert ingest.main(["--path", str(parquet_file), "--table", "extra_parquet", "--format", "parquet"]) == 0
    assert read_arrow(_bronze("extra_parquet")).to_pylist()[0]["amount"] == "2.5"


def test_ingesting_the_same_file_twice_changes_nothing(spark, tmp_path):
    csv_file = tmp_path / "a.csv"
    csv_file.write_text("Item Id,Qty\n1,2\n3,4\n")
    args = ["--path", str(csv_file), "--table", "twice"]
    assert ingest.main(args) == 0
    version = table_version(_bronze("twice"))
    assert ingest.main(args) == 0
    assert table_version(_bronze("twice")) == version
    assert read_arrow(_bronze("twice")).num_rows == 2


def test_a_corrupt_gzip_stops_with_the_file_named_and_nothing_written(spark, tmp_path):
    good = tmp_path / "good.csv.gz"
    with gzip.open(good, "wt") as handle:
        handle.write("a,b\n" + "".join(f"{i},{i}\n" for i in range(5000)))
    assert ingest.main(["--path", str(good), "--table", "gz"]) == 0
    before = table_version(_bronze("gz"))
    broken = tmp_path / "broken.csv.gz"
    data = good.read_bytes()
    broken.write_bytes(data[: len(data) // 2] + b"\x00garbage" * 10)
    with pytest.raises(SourceReadError, match="broken.csv.gz"):
        ingest.main(["--path", str(broken), "--table", "gz"])
    assert table_version(_bronze("gz")) == before
    assert read_arrow(_bronze("gz")).num_rows == 5000


@pytest.mark.parametrize(
    "content, fragment", [(None, "no such file"), (b"", "empty"), (b"\x1f\x8b\x08garbage", "cannot read")]
)
def test_unreadable_files_are_named_in_the_error(spark, tmp_path, content, fragment):
    path = tmp_path / (
        "missing.csv" if content is None else "bad.csv.gz" if content.startswith(b"\x1f") else "empty.csv"
    )
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SourceReadError, match=fragment) as info:
        ingest.main(["--path", str(path), "--table", "never"])
    assert path.name in str(info.value)
    assert table_version(_bronze("never")) is None


def test_jobs_run_under_spark_submit(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    csv_file = tmp_path / "s.csv"
    csv_file.write_text("a,b\n1,2\n")
    venv_bin = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": venv_bin + os.pathsep + os.environ["PATH"],
        "SHOPFLOW_LAKE__ROOT": str(tmp_path / "lake"),
    }
    done = subprocess.run(
        [
            str(Path(venv_bin) / "spark-submit"),
            "--master",
            "local[1]",
            "batch/ingest.py",
            "--path",
            str(csv_file),
            "--table",
            "submitted",
        ],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert read_arrow(tmp_path / "lake" / "bronze" / "submitted").num_rows == 1
