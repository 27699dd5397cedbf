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

import csv
import gzip
import io
import logging
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from batch.sources import KNOWN_SOURCES, Source, bronze_column_name, source_by_name
from shared.delta import AppTxn, write_table
from shared.errors import ConfigError, SourceReadError
from shared.files import sha256_file
from shared.options import option, start_job
from shared.run_metrics import JobResult, JobRun
from shared.settings import Settings
from shared.spark import get_spark

log = logging.getLogger("batch.ingest")
CORRUPT = "_corrupt_record"
META_COLUMNS = ("_source", "_batch_id", "_ingested_at", "_row_number")


PROG = "shopflow ingest"
JOB = "batch.ingest"


@dataclass(frozen=True)
class IngestOptions:
    all: bool = option(False, help="ingest every known source")
    sources: tuple[str, ...] = option(
        (),
        help="a known source by name, repeatable",
        flag="--source",
        repeat=True,
        choices=tuple(s.name for s in KNOWN_SOURCES),
    )
    path: Path | None = option(None, help="any CSV/JSON/Parquet file to ingest")
    table: str | None = option(None, help="the bronze table for --path")
    format: str = option("csv", help="the format of --path", choices=("csv", "json", "parquet"))
    sep: str = option(",", help="the field separator of a CSV --path")
    header: bool = option(True, help="a CSV --path starts with a header row")
    multiline: bool = option(False, help="quoted fields of a CSV --path span lines")

    def problem(self) -> str | None:
        """Why these options name nothing sensible to ingest, or None."""
        if not (self.all or self.sources or self.path):
            return "say what to ingest: --all, --source NAME or --path FILE --table NAME"
        if self.path and not self.table:
            return "--path needs --table"
        return None


@dataclass(frozen=True)
class IngestResult(JobResult):
    batches: dict[str, str] = field(default_factory=dict)  # source name -> batch id (file sha256)


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
        F.col(f"`{c}`").alias(c if c == CORRUPT else source.rename.get(c, bronze_column_name(c, i)))
        for i, c in enumerate(df.columns)
    ]
    return df.select(*renamed)


def to_bronze(df: DataFrame, source_name: str, batch_id: str, ingested_at: datetime) -> DataFrame:
    """Values as strings (nested ones as JSON) plus the bronze metadata columns."""
    as_strings = [
        (
            F.to_json(F.col(f.name))
            if isinstance(f.dataType, (T.StructType, T.ArrayType, T.MapType))
            else F.col(f.name).cast("string")
        ).alias(f.name)
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


def ingest_file(spark: SparkSession, settings: Settings, source: Source, path: Path, run: JobRun) -> str:
    """Append one file to its bronze table (once per file content); its batch id."""
    if not path.is_file():
        raise SourceReadError(f"{path}: no such file (source {source.name!r})")
    batch_id = sha256_file(path)
    table = settings.lake.table("bronze", source.bronze_table)
    txn = AppTxn(f"batch.ingest:{batch_id}", 1)
    bronze = to_bronze(read_source(spark, source, path), source.name, batch_id, datetime.now(timezone.utc))
    try:
        result = write_table(
            bronze,
            table,
            mode="append",
            txn=txn,
            info={"source": source.name},
            arrow_max_rows=settings.spark.arrow_write_max_rows,
        )
    except (PySparkException, Py4JJavaError) as exc:
        first_line = next((ln for ln in str(exc).strip().splitlines() if ln.strip()), "")[:300]
        raise SourceReadError(f"{path}: cannot be read as {source.format} ({first_line})") from exc
    action = "already ingested, skipped" if result.skipped else f"{result.rows} rows"
    log.info("%s -> bronze/%s v%s: %s", path.name, source.bronze_table, result.version, action)
    with _RECORDING:
        run.count("rows_in", result.rows)
        run.count("files_skipped" if result.skipped else "files_ingested", 1)
        run.wrote(f"bronze/{source.bronze_table}", result.version, result.rows, result.skipped)
    return batch_id


# Files of different bronze tables are ingested side by side (below); their results are
# recorded one at a time.
_RECORDING = threading.Lock()


def by_table(pairs: list[tuple[Source, Path]]) -> list[list[tuple[Source, Path]]]:
    """The files grouped by bronze table, in order: one table's files commit one after
    another; different tables' files are independent units of work."""
    groups: dict[str, list[tuple[Source, Path]]] = {}
    for source, path in pairs:
        groups.setdefault(source.bronze_table, []).append((source, path))
    return list(groups.values())


def selected_sources(settings: Settings, options: IngestOptions) -> list[tuple[Source, Path]]:
    chosen = list(KNOWN_SOURCES) if options.all else [source_by_name(n) for n in options.sources]
    pairs = [(s, settings.data_root / s.relative_path) for s in chosen]
    if options.path:
        path = Path(options.path)
        custom = Source(
            name=path.name,
            relative_path=str(path),
            bronze_table=options.table or path.stem,
            format=options.format,  # type: ignore[arg-type]  # one of FileFormat (argparse choices)
            sep=options.sep,
            header=options.header,
            multiline=options.multiline,
        )
        pairs.append((custom, path))
    return pairs


def run(settings: Settings, options: IngestOptions, spark: SparkSession | None = None) -> IngestResult:
    """Ingest the files `options` names into bronze; already-ingested files are skipped."""
    if (problem := options.problem()) is not None:
        raise ConfigError(f"{PROG}: {problem}")
    spark = spark or get_spark(settings)
    pairs = selected_sources(settings, options)
    found: dict[str, str] = {}

    def ingest_group(group: list[tuple[Source, Path]]) -> None:
        for source, path in group:
            found[source.name] = ingest_file(spark, settings, source, path, job)

    with JobRun(JOB, settings.metrics_dir) as job:
        groups = by_table(pairs)
        # A gzipped file is one task (gzip cannot be split): reading the tables side by
        # side keeps every core busy while one big file is read.
        workers = max(1, min(len(groups), spark.sparkContext.defaultParallelism))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ingest") as pool:
            for future in [pool.submit(ingest_group, group) for group in groups]:
                future.result()
        batches = {source.name: found[source.name] for source, _ in pairs}
        job.extra["batches"] = batches
    return job.result(IngestResult, batches=batches)


def main(argv: list[str] | None = None) -> int:
    options, settings = start_job(IngestOptions, argv, prog=PROG, doc=__doc__)  # checks options.problem()
    run(settings, options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
