"""Clean bronze into silver (typed, deduplicated, pseudonymized) and quarantine the rest.

    python -m batch.clean                      # every silver table whose bronze exists
    python -m batch.clean --table orders       # orders | reviews | clicks
    spark-submit batch/clean.py

Each silver table is recomputed from the bronze versions it reads and committed with a
Delta app transaction carrying those versions (shared.incremental), so a rerun on
unchanged bronze is a no-op and a rerun after a crash redoes only the tables that were
not committed. Rejected rows replace their table's slice of `silver/quarantine` the same way.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession

from batch.cleaning.clicks import clean_clicks
from batch.cleaning.common import QUARANTINE_COLUMNS, CleanResult, conform
from batch.cleaning.orders import clean_orders
from batch.cleaning.reviews import clean_reviews
from shared.delta import AppTxn, WriteResult, table_rows, write_table
from shared.incremental import Output, pin_inputs, run_incremental, table_path
from shared.options import option, start_job
from shared.run_metrics import JobResult, JobRun
from shared.settings import Settings
from shared.silver import QUARANTINE_TABLE, SILVER_QUARANTINE, SILVER_SCHEMAS
from shared.spark import get_spark

log = logging.getLogger("batch.clean")
JOB = "batch.clean"


@dataclass(frozen=True)
class SilverSpec:
    """A silver table, the bronze tables it reads (None = optional) and its transform."""

    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...]
    transform: Callable[[dict[str, DataFrame | None], bytes], CleanResult]
    lookups: tuple[str, ...] = ()  # read to enrich, not rows of this table

    @property
    def rows_inputs(self) -> tuple[str, ...]:
        return self.required + self.optional


SILVER_TABLES: tuple[SilverSpec, ...] = (
    SilverSpec("orders", ("orders",), (), lambda b, key: clean_orders(b["orders"], key=key)),
    SilverSpec("reviews", ("reviews",), (), lambda b, key: clean_reviews(b["reviews"], key=key)),
    SilverSpec(
        "clicks",
        (),
        ("clicks_taobao", "views_diginetica", "purchases_diginetica"),
        lambda b, key: clean_clicks(
            b.get("clicks_taobao"),
            b.get("views_diginetica"),
            b.get("purchases_diginetica"),
            b.get("item_categories_diginetica"),
            key=key,
        ),
        lookups=("item_categories_diginetica",),
    ),
)


@dataclass(frozen=True)
class CleanOptions:
    tables: tuple[str, ...] = option(
        (),
        help="a silver table to clean, repeatable (default: all)",
        choices=tuple(s.name for s in SILVER_TABLES),
        flag="--table",
        repeat=True,
    )
    force: bool = option(False, help="rebuild even if the inputs did not change (after a logic change)")


@dataclass(frozen=True)
class TableAccount:
    """Every bronze row lands in silver or in quarantine: rows_in = silver + quarantine."""

    rows_in: int
    silver: int
    quarantine: int

    @property
    def accounted(self) -> bool:
        return self.rows_in == self.silver + self.quarantine


@dataclass(frozen=True)
class CleanJobResult(JobResult):
    tables: Mapping[str, TableAccount] = field(default_factory=dict)  # the tables rebuilt


def _bronze(names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"bronze/{n}" for n in names)


def _rows(settings: Settings, label: str, version: int, frame: DataFrame) -> int:
    """An input's row count from its Delta log (no Spark job), counted when the log lacks it."""
    rows = table_rows(table_path(settings.lake, label), version)
    return frame.count() if rows is None else rows


def clean_table(
    spark: SparkSession, spec: SilverSpec, settings: Settings, run: JobRun, force: bool = False
) -> TableAccount | None:
    """Rebuild one silver table and its quarantine slice; None when skipped."""
    pinned = pin_inputs(
        spark,
        settings.lake,
        required=_bronze(spec.required),
        optional=_bronze(spec.optional + spec.lookups),
        missing_hint="run `shopflow ingest` first",
    )
    if not pinned.present(_bronze(spec.rows_inputs)):
        log.info("silver/%s: no bronze input yet, skipped", spec.name)
        return None
    silver_out = Output(f"silver/{spec.name}", settings.lake.table("silver", spec.name), f"{JOB}:{spec.name}")
    quarantine_out = Output(
        f"silver/{QUARANTINE_TABLE}[{spec.name}]",
        settings.lake.table("silver", QUARANTINE_TABLE),
        f"{JOB}:{spec.name}:quarantine",
    )
    frames = {label.partition("/")[2]: df for label, df in pinned.frames.items()}
    accounts: list[TableAccount] = []

    def write(txns: Mapping[str, list[AppTxn]]) -> dict[str, WriteResult]:
        key = settings.pseudonymization_key.get_secret_value().encode("utf-8")
        result = spec.transform(frames, key)
        rows_in = sum(
            _rows(settings, f"bronze/{name}", pinned.versions[f"bronze/{name}"], f)
            for name, f in frames.items()
            if f is not None and name not in spec.lookups
        )
        result.tagged.persist(StorageLevel.MEMORY_AND_DISK)
        limit = settings.spark.arrow_write_max_rows
        silver_df = conform(result.silver, SILVER_SCHEMAS[spec.name])
        silver = write_table(
            silver_df,
            silver_out.path,
            mode="overwrite",
            txns=txns[silver_out.label],
            info={"job": JOB},
            arrow_max_rows=limit,
        )
        quarantine = write_table(
            conform(result.quarantine.select(*QUARANTINE_COLUMNS), SILVER_QUARANTINE),
            quarantine_out.path,
            mode="overwrite",
            partition_by=["source_table"],
            replace_where=f"source_table = '{spec.name}'",
            txns=txns[quarantine_out.label],
            arrow_max_rows=limit,
        )
        accounts.append(
            TableAccount(
                rows_in,
                silver_df.count() if silver.skipped else silver.rows,
                result.quarantine.count() if quarantine.skipped else quarantine.rows,
            )
        )
        result.tagged.unpersist()
        return {silver_out.label: silver, quarantine_out.label: quarantine}

    if run_incremental(run, pinned, [silver_out, quarantine_out], force=force, write=write) is None:
        return None
    account = accounts[0]
    run.count("rows_in", account.rows_in)
    run.count("rows_out", account.silver)
    run.count("rows_quarantined", account.quarantine)
    log.info(
        "silver/%s: %d in = %d silver + %d quarantined", spec.name, account.rows_in, account.silver, account.quarantine
    )
    return account


def run(
    settings: Settings, options: CleanOptions = CleanOptions(), spark: SparkSession | None = None
) -> CleanJobResult:
    """Clean the chosen silver tables (all by default) from the latest bronze."""
    spark = spark or get_spark(settings)
    accounts: dict[str, TableAccount] = {}
    with JobRun(JOB, settings.metrics_dir) as job:
        for spec in SILVER_TABLES:
            if not options.tables or spec.name in options.tables:
                account = clean_table(spark, spec, settings, job, options.force)
                if account is not None:
                    accounts[spec.name] = account
                    job.extra.setdefault("tables", {})[spec.name] = {
                        "rows_in": account.rows_in,
                        "silver": account.silver,
                        "quarantine": account.quarantine,
                        "accounted": account.accounted,
                    }
    return job.result(CleanJobResult, tables=accounts)


def main(argv: list[str] | None = None) -> int:
    options, settings = start_job(CleanOptions, argv, prog="shopflow clean", doc=__doc__)
    run(settings, options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
