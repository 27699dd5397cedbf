"""Build gold feature tables and per-task training sets from silver.

    python -m batch.features                     # every gold table
    python -m batch.features --table train_propensity
    spark-submit batch/features.py

Gold tables (under <lake>/gold/):
  item_features, user_features      from silver/orders
  click_sessions                    silver/clicks (+ the folded stream's clicks) + session features
  item_click_stats                  per-item counts + rates: the stream's snapshot
  train_sentiment, train_propensity training sets with a time-based `split` column

Each table is recomputed from the silver versions it reads and committed with a Delta
app transaction carrying them (shared.incremental): a rerun on unchanged silver is a no-op.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession

from batch.featurize.orders import item_features, user_features
from batch.featurize.served_items import served_item_counts
from batch.featurize.sessions import sessionize
from batch.featurize.stream_clicks import with_stream_clicks
from batch.featurize.training_sets import item_click_stats, propensity_training_set, sentiment_training_set
from shared.contract.folded import stream_table_label
from shared.contract.item_snapshot import item_snapshot_path
from shared.delta import AppTxn, WriteResult, read_table, write_table
from shared.incremental import Output, pin_inputs, run_incremental
from shared.options import option, start_job
from shared.run_metrics import JobResult, JobRun
from shared.settings import Settings, parse_interval
from shared.spark import get_spark

log = logging.getLogger("batch.features")
JOB = "batch.features"


@dataclass(frozen=True)
class GoldSpec:
    name: str
    inputs: tuple[str, ...]  # silver tables, or "gold/<name>" for an earlier gold table
    build: Callable[..., DataFrame]
    # Tables read when they exist (passed as None to `build` while they do not), as
    # "<layer>/<table>" from the settings: the folded stream table's name is a setting.
    optional: Callable[[Settings], tuple[str, ...]] = lambda settings: ()
    # Keyword arguments the build takes from the settings (read once in main); they are
    # part of the output's app id, so changing one rebuilds the table.
    options: Callable[[Settings], dict[str, Any]] = lambda settings: {}
    # Keyword arguments that only say where to read (not part of the app id).
    readers: Callable[[Settings, SparkSession], dict[str, Any]] = lambda settings, spark: {}

    @property
    def input_tables(self) -> tuple[str, ...]:
        """Inputs as <layer>/<table>."""
        return tuple(name if "/" in name else f"silver/{name}" for name in self.inputs)


def _sessions(clicks: DataFrame, stream: DataFrame | None) -> DataFrame:
    return sessionize(with_stream_clicks(clicks, stream))


def _item_stats(clicks: DataFrame, stream: DataFrame | None) -> DataFrame:
    return item_click_stats(with_stream_clicks(clicks, stream))


def _folded_clicks(settings: Settings) -> tuple[str, ...]:
    return (stream_table_label(settings),)


def _propensity(
    sessions: DataFrame,
    stream: DataFrame | None,
    *,
    horizon_seconds: int,
    snapshot_seconds: int,
    snapshot_at: Callable[[int], DataFrame],
) -> DataFrame:
    # Folded stream events take the item counts of the snapshot version that served them.
    served = served_item_counts(stream, snapshot_at) if stream is not None else None
    return propensity_training_set(
        sessions, horizon_seconds=horizon_seconds, snapshot_seconds=snapshot_seconds, served=served
    )


def _propensity_options(settings: Settings) -> dict[str, Any]:
    return {
        "horizon_seconds": settings.features.propensity_horizon_minutes * 60,
        # The worker gets a new item snapshot once per loop iteration.
        "snapshot_seconds": int(parse_interval(settings.loop.interval)),
    }


def _item_snapshot_reader(settings: Settings, spark: SparkSession) -> dict[str, Any]:
    path = item_snapshot_path(settings)
    return {"snapshot_at": lambda version: read_table(spark, path, version)}


GOLD_TABLES: tuple[GoldSpec, ...] = (
    GoldSpec("item_features", ("orders",), item_features),
    GoldSpec("user_features", ("orders",), user_features),
    # The stream's folded clicks (jobs.fold) join the batch ones from the first fold on.
    GoldSpec("click_sessions", ("clicks",), _sessions, optional=_folded_clicks),
    GoldSpec("item_click_stats", ("clicks",), _item_stats, optional=_folded_clicks),
    GoldSpec("train_sentiment", ("reviews",), sentiment_training_set),
    GoldSpec(
        "train_propensity",
        ("gold/click_sessions",),
        _propensity,
        optional=_folded_clicks,
        options=_propensity_options,
        readers=_item_snapshot_reader,
    ),
)


@dataclass(frozen=True)
class FeaturesOptions:
    tables: tuple[str, ...] = option(
        (),
        help="a gold table to build, repeatable (default: all)",
        choices=tuple(g.name for g in GOLD_TABLES),
        flag="--table",
        repeat=True,
    )
    force: bool = option(False, help="rebuild even if the inputs did not change (after a logic change)")


class SharedReads:
    """Input frames read by more than one gold table of a run, persisted once per
    (table, version) and released when the run ends: each is read and decoded once."""

    def __init__(self, uses: Mapping[str, int]) -> None:
        self._uses = uses
        self._frames: dict[tuple[str, int], DataFrame] = {}

    def frame(self, label: str, version: int, df: DataFrame) -> DataFrame:
        if self._uses.get(label, 0) < 2:
            return df
        return self._frames.setdefault((label, version), df.persist(StorageLevel.MEMORY_AND_DISK))

    def release(self) -> None:
        for df in self._frames.values():
            df.unpersist()
        self._frames.clear()


def _uses(specs: list[GoldSpec], settings: Settings) -> dict[str, int]:
    """How many of `specs` read each input table."""
    counts: dict[str, int] = {}
    for spec in specs:
        for label in spec.input_tables + spec.optional(settings):
            counts[label] = counts.get(label, 0) + 1
    return counts


def build_table(
    spark: SparkSession,
    spec: GoldSpec,
    settings: Settings,
    run: JobRun,
    force: bool = False,
    shared: SharedReads | None = None,
) -> None:
    optional = spec.optional(settings)
    pinned = pin_inputs(
        spark,
        settings.lake,
        required=spec.input_tables,
        optional=optional,
        missing_hint="run `shopflow clean` (or the earlier gold table) first",
    )
    frames = {
        label: (df if df is None or shared is None else shared.frame(label, pinned.versions[label], df))
        for label, df in pinned.frames.items()
    }
    options = spec.options(settings)
    # The options are part of the app id, so changing one (e.g. the horizon) rebuilds.
    app_id = ":".join([f"{JOB}:{spec.name}", *(f"{k}={v}" for k, v in sorted(options.items()))])
    out = Output(f"gold/{spec.name}", settings.lake.table("gold", spec.name), app_id)

    def write(txns: Mapping[str, list[AppTxn]]) -> dict[str, WriteResult]:
        readers = spec.readers(settings, spark)
        frame = spec.build(*(frames[name] for name in spec.input_tables + optional), **options, **readers)
        return {
            out.label: write_table(
                frame,
                out.path,
                mode="overwrite",
                txns=txns[out.label],
                info={"job": JOB},
                arrow_max_rows=settings.spark.arrow_write_max_rows,
            )
        }

    results = run_incremental(run, pinned, [out], force=force, write=write)
    if results is not None:
        result = results[out.label]
        run.count("rows_out", result.rows)
        log.info("gold/%s v%d: %d rows", spec.name, result.version, result.rows)


def run(
    settings: Settings, options: FeaturesOptions = FeaturesOptions(), spark: SparkSession | None = None
) -> JobResult:
    """Build the chosen gold tables (all by default) from the latest silver."""
    spark = spark or get_spark(settings)
    chosen = [spec for spec in GOLD_TABLES if not options.tables or spec.name in options.tables]
    shared = SharedReads(_uses(chosen, settings))
    with JobRun(JOB, settings.metrics_dir) as job:
        try:
            for spec in chosen:
                build_table(spark, spec, settings, job, options.force, shared)
        finally:
            shared.release()
    return job.result()


def main(argv: list[str] | None = None) -> int:
    options, settings = start_job(FeaturesOptions, argv, prog="shopflow features", doc=__doc__)
    run(settings, options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
