"""Run the batch pipeline end to end: ingest -> clean -> features.

usage: python -m batch.pipeline [--force]        # or: shopflow pipeline
       spark-submit batch/pipeline.py

Each step is its own job with its own metrics JSON; rerunning is cheap because every
step skips work whose inputs did not change (`--force` rebuilds clean and features).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from pyspark.sql import SparkSession

from batch import clean, features, ingest
from shared.options import option, start_job
from shared.run_metrics import JobResult
from shared.settings import Settings
from shared.spark import get_spark


@dataclass(frozen=True)
class PipelineOptions:
    force: bool = option(False, help="rebuild silver and gold even if their inputs did not change")


def run(
    settings: Settings, options: PipelineOptions = PipelineOptions(), spark: SparkSession | None = None
) -> list[JobResult]:
    """Every known file into bronze, then silver, then gold; each step's result in order."""
    spark = spark or get_spark(settings)
    return [
        ingest.run(settings, ingest.IngestOptions(all=True), spark),
        clean.run(settings, clean.CleanOptions(force=options.force), spark),
        features.run(settings, features.FeaturesOptions(force=options.force), spark),
    ]


def main(argv: list[str] | None = None) -> int:
    options, settings = start_job(PipelineOptions, argv, prog="shopflow pipeline", doc=__doc__)
    run(settings, options)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
