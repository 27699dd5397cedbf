"""Clean bronze into silver (typed, deduplicated, pseudonymized) and quarantine the rest.

    python -m batch.clean                      # every silver table whose bronze exists
    python -m batch.clean --table orders       # orders | reviews | clicks
    spark-submit batch/clean.py

Each silver table is recomputed from the bronze versions it reads and committed with a
Delta app transaction carrying those versions, so a rerun on unchanged bronze is a
no-op and a rerun after a crash redoes only the tables that were not committed.
Rejected rows replace their table's slice of `silver/quarantine` the same way.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from typing import Callable

from pyspark.sql import DataFrame, SparkSession

from batch.cleaning.clicks import clean_clicks
from batch.cleaning.common import QUARANTINE_COLUMNS, CleanResult
from batch.cleaning.orders import clean_orders
from batch.cleaning.reviews import clean_reviews
from shared.delta import AppTxn, already_committed, read_table, table_exists, table_version, write_table
from shared.errors import TableNotFoundError
from shared.run_metrics import JobRun
from shared.settings import Settings, get_settings
from shared.spark import get_spark

log = logging.getLogger("batch.clean")
QUARANTINE_TABLE = "quarantine"


@dataclass(frozen=True)
class SilverSpec:
    """A silver table, the bronze tables it reads (None = optional) and its transform."""

    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...]
    transform: Callable[[dict[str, DataFrame | None], bytes], CleanResult]
    lookups: tuple[str, ...] = ()  # read to enrich, not rows of this table

    @property
    def inputs(self) -> tuple[str, ...]:
        return self.required + self.optional + self.lookups


SILVER_TABLES: tuple[SilverSpec, ...] = (
    SilverSpec("orders", ("orders",), (), lambda b, key: clean_orders(b["orders"], key=key)),
    SilverSpec("reviews", ("reviews",), (), lambda b, key: clean_reviews(b["reviews"])),
    SilverSpec(
        "clicks",
        (),
        ("clicks_taobao", "views_diginetica", "purchases_diginetica"),
        lambda b, key: clean_clicks(
            b.get("clicks_taobao"), b.get("views_diginetica"), b.get("purchases_diginetica"),
            b.get("item_categories_diginetica"), key=key,
        ),
        lookups=("item_categories_diginetica",),
    ),
)


def parse_args(argv: list[str] | None) -> tuple[list[str], bool]:
    p = argparse.ArgumentParser(prog="shopflow clean", description=__doc__.split("\n")[0])
    p.add_argument("--table", action="append", choices=[s.name for s in SILVER_TABLES], help="default: all")
    p.add_argument("--force", action="store_true", help="rebuild even if the inputs did not change (after a logic change)")
    a = p.parse_args(argv)
    return (a.table or [s.name for s in SILVER_TABLES]), a.force


def _read_inputs(spark: SparkSession, spec: SilverSpec, settings: Settings, run: JobRun) -> tuple[dict[str, DataFrame | None], int] | None:
    """The bronze inputs at their latest versions, and the app-transaction version for them."""
    frames: dict[str, DataFrame | None] = {}
    version_sum = 0
    for name in spec.inputs:
        path = settings.lake.table("bronze", name)
        if not table_exists(path):
            if name in spec.required:
                raise TableNotFoundError(f"bronze/{name} does not exist: run `shopflow ingest` first")
            frames[name] = None
            continue
        version = table_version(path) or 0
        run.read(f"bronze/{name}", version)
        frames[name] = read_table(spark, path, version)
        # Versions only grow, so their sum does too: it orders this table's work units.
        version_sum += version + 1
    if all(frames.get(name) is None for name in spec.required + spec.optional):
        log.info("silver/%s: no bronze input yet, skipped", spec.name)
        return None
    return frames, version_sum


def clean_table(spark: SparkSession, spec: SilverSpec, settings: Settings, run: JobRun, force: bool = False) -> None:
    inputs = _read_inputs(spark, spec, settings, run)
    if inputs is None:
        return
    frames, work_version = inputs
    silver_path = settings.lake.table("silver", spec.name)
    quarantine_path = settings.lake.table("silver", QUARANTINE_TABLE)
    silver_txn = AppTxn(f"batch.clean:{spec.name}", work_version)
    quarantine_txn = AppTxn(f"batch.clean:{spec.name}:quarantine", work_version)
    if force:
        silver_txn = quarantine_txn = None
    elif already_committed(silver_path, silver_txn) and already_committed(quarantine_path, quarantine_txn):
        log.info("silver/%s is up to date with its bronze input; nothing to do", spec.name)
        run.wrote(f"silver/{spec.name}", table_version(silver_path) or 0, 0, skipped=True)
        return

    key = settings.pseudonymization_key.get_secret_value().encode("utf-8")
    result = spec.transform(frames, key)
    rows_in = sum(f.count() for name, f in frames.items() if f is not None and name not in spec.lookups)
    silver = write_table(result.silver.cache(), silver_path, mode="overwrite", txn=silver_txn, info={"job": "batch.clean"})
    quarantine = write_table(
        result.quarantine.select(*QUARANTINE_COLUMNS),
        quarantine_path,
        mode="overwrite",
        partition_by=["source_table"],
        replace_where=f"source_table = '{spec.name}'",
        txn=quarantine_txn,
    )
    silver_rows = result.silver.count() if silver.skipped else silver.rows
    quarantined = result.quarantine.count() if quarantine.skipped else quarantine.rows
    run.wrote(f"silver/{spec.name}", silver.version, silver.rows, silver.skipped)
    run.wrote(f"silver/{QUARANTINE_TABLE}[{spec.name}]", quarantine.version, quarantine.rows, quarantine.skipped)
    run.count("rows_in", rows_in)
    run.count("rows_out", silver_rows)
    run.count("rows_quarantined", quarantined)
    run.extra.setdefault("tables", {})[spec.name] = {
        "rows_in": rows_in, "silver": silver_rows, "quarantine": quarantined,
        "accounted": rows_in == silver_rows + quarantined,
    }
    log.info("silver/%s: %d in = %d silver + %d quarantined", spec.name, rows_in, silver_rows, quarantined)
    result.silver.unpersist()


def main(argv: list[str] | None = None) -> int:
    settings = get_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(name)s %(message)s")
    tables, force = parse_args(argv)
    spark = get_spark(settings)
    with JobRun("batch.clean") as run:
        for spec in SILVER_TABLES:
            if spec.name in tables:
                clean_table(spark, spec, settings, run, force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
