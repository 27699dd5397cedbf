"""The one place a SparkSession is built.

Under `spark-submit` the master and resources come from the command line and win; run
from Python (tests, `python -m <job module>`), the session is local per the settings.

    from shared.spark import get_spark
    spark = get_spark(settings)
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from pyspark.sql import SparkSession

from shared.settings import Settings

# Spark's own log4j2 configuration with the root level taken from a system property, so
# the JVM is quiet from its first line (setLogLevel only acts once the session exists).
_LOG4J2 = Path(__file__).resolve().parent / "log4j2.properties"


def get_spark(settings: Settings) -> SparkSession:
    """Return the active SparkSession, creating it with shopflow's defaults."""
    level = settings.spark.log_level
    # py4j logs every gateway command at INFO/DEBUG; its noise follows Spark's level.
    logging.getLogger("py4j").setLevel(logging.DEBUG if level in ("DEBUG", "TRACE", "ALL") else logging.WARNING)
    java_options = f"-Duser.timezone=UTC -Dlog4j2.configurationFile=file:{_LOG4J2} -Dshopflow.spark.log_level={level}"
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
        .config("spark.driver.extraJavaOptions", java_options)
        .config("spark.executor.extraJavaOptions", "-Duser.timezone=UTC")
        # Delta readers expect microsecond timestamps, not Spark's legacy INT96.
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.sources.partitionOverwriteMode", "dynamic")
    )
    if not _launched_by_spark_submit():
        builder = builder.master(settings.spark.master).config("spark.driver.memory", settings.spark.driver_memory)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(level)
    return spark


def _launched_by_spark_submit() -> bool:
    """spark-submit starts the JVM first and hands Python its gateway port."""
    return "PYSPARK_GATEWAY_PORT" in os.environ
