"""Ingest files into bronze Delta tables, as received plus _source, _ingested_at, _batch_id.

    python -m batch.ingest --all                       # every known file under the data root
    python -m batch.ingest --source reviews            # one known file
    python -m batch.ingest --path extra.json --table orders_extra --format json
    spark-submit batch/ingest.py --all

Every value is kept as a string (typing is the clean job's work). The batch id is the
file's sha256, and each file is committed with a Delta app transaction named after it,
so ingesting the same file twice changes nothing. A row the CSV reader cannot split is
kept with its raw text in `_corrupt_record`; a file that cannot be read at all stops the
job with an error naming it, before anything is committed for it.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import logging
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from pyspark.errors import PySparkException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from batch.sources import KNOWN_SOURCES, FileFormat, Source, bronze_column_name, source_by_name
from shared.delta import AppTxn, write_table
from shared.errors import SourceReadError
from shared.run_metrics import JobRun
from shared.settings import get_settings
from shared.spark import get_spark

log = logging.getLogger("batch.ingest")
CORRUPT = "_corrupt_record"
META_COLUMNS = ("_source", "_batch_id", "_ingested_at", "_row_number")


@dataclass(frozen=True)
class IngestArgs:
    all: bool
    sources: tuple[str, ...]
    path: str | None
    table: str | None
    format: FileFormat
    sep: str
    header: bool
    multiline: bool


def parse_args(argv: list[str] | None) -> IngestArgs:
    p = argparse.ArgumentParser(prog="shopflow ingest", description=__doc__.split("\n")[0])
    p.add_argument("--all", action="store_true", help="ingest every known source")
    p.add_argument("--source", action="append", default=[], help="a known source by name")
    p.add_argument("--path", help="any CSV/JSON/Parquet file to ingest")
    p.add_argument("--table", help="bronze table for --path")
    p.add_argument("--format", choices=["csv", "json", "parquet"], default="csv")
    p.add_argument("--sep", default=",")
    p.add_argument("--no-header", dest="header", action="store_false")
    p.add_argument("--multiline", action="store_true", help="quoted fields span lines")
    a = p.parse_args(argv)
    if not (a.all or a.source or a.path):
        p.error("say what to ingest: --all, --source NAME or --path FILE --table NAME")
    if a.path and not a.table:
        p.error("--path needs --table")
    return IngestArgs(a.all, tuple(a.source), a.path, a.table, a.format, a.sep, a.header, a.multiline)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return path.open("r", encoding="utf-8", newline="")


def csv_header(path: Path, sep: str) -> list[str]:
    """The header row of a (possibly gzipped) CSV file, read with the csv module."""
    try:
        with _open_text(path) as handle:
            return next(csv.reader(handle, delimiter=sep))
    except StopIteration as exc:
        raise SourceReadError(f"{path}: the file is empty; expected a header row") from exc
    except (OSError, UnicodeDecodeError, csv.Error, EOFError) as exc:
        raise SourceReadError(f"{path}: cannot read a CSV header ({exc})") from exc


def read_source(spark: SparkSession, source: Source, path: Path) -> DataFrame:
    """Read one file with the source's options; every column a string."""
    if source.format == "csv":
        raw_names = list(source.columns) if not source.header else csv_header(path, source.sep)
        names = [source.rename.get(n, bronze_column_name(n, i)) for i, n in enumerate(raw_names)]
        schema = T.StructType([T.StructField(n, T.StringType()) for n in names])
        schema = schema.add(T.StructField(CORRUPT, T.StringType()))
        return (
            spark.read.option("header", source.header)
            .option("sep", source.sep)
            .option("multiLine", source.multiline)
            .option("quote", '"')
            .option("escape", '"')
            .option("mode", "PERMISSIVE")
            .option("columnNameOfCorruptRecord", CORRUPT)
            .option("encoding", "UTF-8")
            .schema(schema)
            .csv(str(path))
        )
    reader = spark.read.option("mode", "PERMISSIVE").option("columnNameOfCorruptRecord", CORRUPT)
    df = reader.json(str(path)) if source.format == "json" else reader.parquet(str(path))
    renamed = [
        F.col(f"`{c}`").alias(source.rename.get(c, bronze_column_name(c, i)))
        for i, c in enumerate(df.columns)
    ]
    return df.select(*renamed)


def to_bronze(df: DataFrame, source_name: str, batch_id: str, ingested_at: datetime) -> DataFrame:
    """Values as strings (nested ones as JSON) plus the bronze metadata columns."""
    as_strings = [
        (F.to_json(F.col(f.name)) if isinstance(f.dataType, (T.StructType, T.ArrayType, T.MapType))
         else F.col(f.name).cast("string")).alias(f.name)
        for f in df.schema.fields
    ]
    if CORRUPT not in df.columns:
        as_strings.append(F.lit(None).cast("string").alias(CORRUPT))
    return df.select(
        *as_strings,
        F.lit(source_name).alias("_source"),
        F.lit(batch_id).alias("_batch_id"),
        F.lit(ingested_at).cast("timestamp").alias("_ingested_at"),
        # Position within the file: reading one file keeps file order, so "keep the
        # first duplicate" is deterministic downstream.
        F.monotonically_increasing_id().alias("_row_number"),
    )


def ingest_file(spark: SparkSession, source: Source, path: Path, run: JobRun) -> None:
    if not path.is_file():
        raise SourceReadError(f"{path}: no such file (source {source.name!r})")
    batch_id = file_sha256(path)
    table = get_settings().lake.table("bronze", source.bronze_table)
    txn = AppTxn(f"batch.ingest:{batch_id}", 1)
    bronze = to_bronze(read_source(spark, source, path), source.name, batch_id, datetime.now(timezone.utc))
    try:
        result = write_table(bronze, table, mode="append", txn=txn, info={"source": source.name})
    except PySparkException as exc:
        first_line = str(exc).strip().splitlines()[0][:300]
        raise SourceReadError(f"{path}: cannot be read as {source.format} ({first_line})") from exc
    action = "already ingested, skipped" if result.skipped else f"{result.rows} rows"
    log.info("%s -> bronze/%s v%s: %s", path.name, source.bronze_table, result.version, action)
    run.count("rows_in", result.rows)
    run.count("files_skipped" if result.skipped else "files_ingested", 1)
    run.wrote(f"bronze/{source.bronze_table}", result.version, result.rows, result.skipped)
    run.extra.setdefault("batches", {})[source.name] = batch_id


def selected_sources(args: IngestArgs) -> list[tuple[Source, Path]]:
    data_root = get_settings().data_root
    chosen = list(KNOWN_SOURCES) if args.all else [source_by_name(n) for n in args.sources]
    pairs = [(s, data_root / s.relative_path) for s in chosen]
    if args.path:
        path = Path(args.path)
        custom = Source(
            name=path.name,
            relative_path=str(path),
            bronze_table=args.table or path.stem,
            format=args.format,
            sep=args.sep,
            header=args.header,
            multiline=args.multiline,
        )
        pairs.append((custom, path))
    return pairs


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=get_settings().log_level, format="%(asctime)s %(name)s %(message)s")
    args = parse_args(argv)
    spark = get_spark()
    with JobRun("batch.ingest") as run:
        for source, path in selected_sources(args):
            ingest_file(spark, source, path, run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
