"""Sessionized click events: the shared session fold run per user inside Spark.

The stream worker calls `shared.features.session_step` per event; here the same fold
runs over each user's events sorted by (ts, event_id). Partitions are hash-partitioned
by user and sorted, so one Python pass per partition folds every user in turn (many
users have a single event: a pandas group per user would cost more than the fold).

    gold = sessionize(silver_clicks)   # clicks + SESSION_FEATURES columns
"""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import types as T

from shared.features import SESSION_FEATURES, SessionState, session_step

ORDER = ("user_id", "ts", "event_id")


def _fold_partition(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    user: str | None = None
    state: SessionState | None = None
    for batch in batches:
        features = []
        for event in batch.to_dict("records"):
            if event["user_id"] != user:
                user, state = event["user_id"], None
            state, row = session_step(state, event)
            features.append(row)
        feature_frame = pd.DataFrame(features, columns=SESSION_FEATURES.names)
        yield pd.concat([batch.reset_index(drop=True), feature_frame], axis=1)


def sessionize(clicks: DataFrame, partitions: int | None = None) -> DataFrame:
    """`clicks` (CLICK_EVENT columns, any extras) plus the SESSION_FEATURES columns."""
    schema = T.StructType(clicks.schema.fields + SESSION_FEATURES.spark_schema().fields)
    partitions = partitions or clicks.sparkSession.conf.get("spark.sql.shuffle.partitions")
    return (
        clicks.repartition(int(partitions), "user_id").sortWithinPartitions(*ORDER).mapInPandas(_fold_partition, schema)
    )
