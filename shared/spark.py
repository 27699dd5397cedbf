"""The one place a SparkSession is built.

Under `spark-submit` the master and resources come from the command line and win; run
from Python (tests, `python -m batch.<job>`), the session is local per the settings.

    from shared.spark import get_spark
    spark = get_spark()
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pyspark.sql import SparkSession

from shared.settings import Settings, get_settings


def get_spark(settings: Settings | None = None) -> SparkSession:
    """Return the active SparkSession, creating it with shopflow's defaults."""
    settings = settings or get_settings()
    # Executors must run the same interpreter as the driver (the project's venv).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    # Local Python workers must import this checkout's code, not another copy.
    repo_root = str(Path(__file__).resolve().parent.parent)
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if repo_root not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([repo_root, *filter(None, paths)])
    builder = (
        SparkSession.builder.appName(settings.spark.app_name)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", str(settings.spark.shuffle_partitions))
        .config("spark.sql.adaptive.enabled", "true")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.extraJavaOptions", "-Duser.timezone=UTC")
        .config("spark.executor.extraJavaOptions", "-Duser.timezone=UTC")
        # Delta readers expect microsecond timestamps, not Spark's legacy INT96.
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.sources.partitionOverwriteMode", "dynamic")
    )
    if not _launched_by_spark_submit():
        builder = builder.master(settings.spark.master).config(
            "spark.driver.memory", settings.spark.driver_memory
        )
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def _launched_by_spark_submit() -> bool:
    """spark-submit starts the JVM first and hands Python its gateway port."""
    return "PYSPARK_GATEWAY_PORT" in os.environ
