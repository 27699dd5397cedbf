"""Build gold feature tables and per-task training sets from silver.

    python -m batch.features                     # every gold table
    python -m batch.features --table train_propensity
    spark-submit batch/features.py

Gold tables (under <lake>/gold/):
  item_features, user_features      from silver/orders
  click_sessions                    silver/clicks + session features (the shared fold)
  item_click_stats                  per-item counts + rates: the stream's snapshot
  train_sentiment, train_propensity training sets with a time-based `split` column

Each table is recomputed from the silver versions it reads and committed with a Delta
app transaction carrying them: a rerun on unchanged silver is a no-op.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from typing import Any, Callable

from pyspark.sql import DataFrame, SparkSession

from batch.featurize.orders import item_features, user_features
from batch.featurize.sessions import sessionize
from batch.featurize.training_sets import item_click_stats, propensity_training_set, sentiment_training_set
from shared.delta import AppTxn, already_committed, read_table, table_exists, table_version, write_table
from shared.errors import TableNotFoundError
from shared.run_metrics import JobRun
from shared.settings import Settings, get_settings
from shared.spark import get_spark

log = logging.getLogger("batch.features")


@dataclass(frozen=True)
class GoldSpec:
    name: str
    inputs: tuple[str, ...]  # silver tables, or "gold/<name>" for an earlier gold table
    build: Callable[..., DataFrame]
    # Keyword arguments the build takes from the settings (read once in main).
    options: Callable[[Settings], dict[str, Any]] = lambda settings: {}


GOLD_TABLES: tuple[GoldSpec, ...] = (
    GoldSpec("item_features", ("orders",), item_features),
    GoldSpec("user_features", ("orders",), user_features),
    GoldSpec("click_sessions", ("clicks",), sessionize),
    GoldSpec("item_click_stats", ("clicks",), item_click_stats),
    GoldSpec("train_sentiment", ("reviews",), sentiment_training_set),
    GoldSpec(
        "train_propensity", ("gold/click_sessions",), propensity_training_set,
        lambda settings: {"horizon_seconds": settings.features.propensity_horizon_minutes * 60},
    ),
)


def parse_args(argv: list[str] | None) -> tuple[list[str], bool]:
    p = argparse.ArgumentParser(prog="shopflow features", description=__doc__.split("\n")[0])
    p.add_argument("--table", action="append", choices=[g.name for g in GOLD_TABLES], help="default: all")
    p.add_argument("--force", action="store_true", help="rebuild even if the inputs did not change (after a logic change)")
    a = p.parse_args(argv)
    return (a.table or [g.name for g in GOLD_TABLES]), a.force


def _input_path(settings: Settings, name: str):
    layer, _, table = name.rpartition("/")
    return settings.lake.table(layer or "silver", table)


def build_table(spark: SparkSession, spec: GoldSpec, settings: Settings, run: JobRun, force: bool = False) -> None:
    frames, work_version = [], 0
    for name in spec.inputs:
        path = _input_path(settings, name)
        if not table_exists(path):
            raise TableNotFoundError(f"{name} does not exist: run `shopflow clean` (or the earlier gold table) first")
        version = table_version(path) or 0
        run.read(name if "/" in name else f"silver/{name}", version)
        frames.append(read_table(spark, path, version))
        work_version += version + 1
    out = settings.lake.table("gold", spec.name)
    options = spec.options(settings)
    # The options are part of the app id, so changing one (e.g. the horizon) rebuilds.
    txn = AppTxn(":".join([f"batch.features:{spec.name}", *(f"{k}={v}" for k, v in sorted(options.items()))]),
                 work_version)
    if not force and already_committed(out, txn):
        log.info("gold/%s is up to date with its inputs; nothing to do", spec.name)
        run.wrote(f"gold/{spec.name}", table_version(out) or 0, 0, skipped=True)
        return
    # A forced rebuild commits without the app transaction (the log keeps the old one).
    result = write_table(
        spec.build(*frames, **options), out, mode="overwrite", txn=None if force else txn,
        info={"job": "batch.features"},
    )
    run.wrote(f"gold/{spec.name}", result.version, result.rows, result.skipped)
    run.count("rows_out", result.rows)
    log.info("gold/%s v%d: %d rows", spec.name, result.version, result.rows)


def main(argv: list[str] | None = None) -> int:
    settings = get_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(name)s %(message)s")
    wanted, force = parse_args(argv)
    spark = get_spark(settings)
    with JobRun("batch.features") as run:
        for spec in GOLD_TABLES:
            if spec.name in wanted:
                build_table(spark, spec, settings, run, force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
