"""Per-task training sets, split by time so evaluation never sees the future.

* sentiment: Title + Review Text -> negative (1-2 stars) / neutral (3) / positive (4-5),
  split by review id (the only order the reviews have);
* propensity: each click, with its session features and the item's counts *before* that
  moment, labelled 1 when that interaction is, or is followed within the horizon by, an
  add-to-cart or purchase of the item by the user (the stream scores every click the
  same way); split by event time, and users of one hash bucket are kept out of train and
  valid. The event's own type is the label's source, so it is never a model input.

    sentiment_training_set(silver_reviews)
    propensity_training_set(sessionized_clicks)
    item_click_stats(silver_clicks)        # the snapshot the stream worker enriches with
"""

from __future__ import annotations

from typing import Iterator

import pandas as pd
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from shared.datasets import (
    ITEM_CLICK_STATS,
    PROPENSITY_HORIZON_SECONDS,
    PROPENSITY_SPLIT_QUANTILES,
    PROPENSITY_TRAINING_SET,
    SENTIMENT_SPLIT_QUANTILES,
    SENTIMENT_TRAINING_SET,
    TEST_USER_BUCKETS,
)
from shared.features import ITEM_FEATURES, item_rate_features

POSITIVE_TYPES = ("add_to_cart", "purchase")
PROPENSITY_SOURCE = "taobao"  # the stream's source; Diginetica's dates are another era


def _conform(df: DataFrame, schema: T.StructType) -> DataFrame:
    return df.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in schema.fields])


def _exact_quantiles(df: DataFrame, column: str, quantiles: tuple[float, ...]) -> list[float]:
    return df.approxQuantile(column, list(quantiles), 0.0)


def sentiment_training_set(reviews: DataFrame) -> DataFrame:
    valid_from, test_from = _exact_quantiles(reviews, "review_id", SENTIMENT_SPLIT_QUANTILES)
    labelled = reviews.select(
        "review_id",
        "clothing_id",
        F.concat_ws(". ", F.col("title"), F.col("review_text")).alias("text"),
        "rating",
        "recommended",
        F.when(F.col("rating") <= 2, 0).when(F.col("rating") == 3, 1).otherwise(2).alias("label"),
        F.when(F.col("review_id") >= test_from, "test")
        .when(F.col("review_id") >= valid_from, "valid")
        .otherwise("train")
        .alias("split"),
    )
    return _conform(labelled, SENTIMENT_TRAINING_SET.schema.spark_schema())


def _count(kind: str) -> Column:
    return F.sum(F.when(F.col("event_type") == kind, 1).otherwise(0))


def _rate_features(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    for batch in batches:
        rates = item_rate_features(batch["_views"], batch["_carts"], batch["_purchases"])
        yield batch.drop(columns=["_views", "_carts", "_purchases"]).assign(**rates)


def with_item_rate_features(df: DataFrame, views: Column, carts: Column, purchases: Column) -> DataFrame:
    """Append ITEM_FEATURES computed by the shared `item_rate_features` from three counts."""
    counted = df.withColumn("_views", views).withColumn("_carts", carts).withColumn("_purchases", purchases)
    schema = T.StructType(df.schema.fields + ITEM_FEATURES.spark_schema().fields)
    return counted.mapInPandas(_rate_features, schema)


def item_click_stats(clicks: DataFrame) -> DataFrame:
    """Per-item counts over all clicks, with rate features: the stream's item snapshot."""
    counts = clicks.groupBy("item_id").agg(
        _count("view").alias("views"),
        _count("add_to_cart").alias("carts"),
        _count("favorite").alias("favorites"),
        _count("purchase").alias("purchases"),
    )
    with_rates = with_item_rate_features(counts, F.col("views"), F.col("carts"), F.col("purchases"))
    return _conform(with_rates, ITEM_CLICK_STATS.spark_schema())


def _as_of_item_counts(sessions: DataFrame) -> DataFrame:
    """Each event's item counts over events strictly before it (point-in-time correct)."""
    before = Window.partitionBy("item_id").orderBy(F.unix_micros("ts")).rangeBetween(Window.unboundedPreceding, -1)

    def prior(kind: str) -> Column:
        return F.coalesce(F.sum(F.when(F.col("event_type") == kind, 1).otherwise(0)).over(before), F.lit(0))

    return with_item_rate_features(sessions, prior("view"), prior("add_to_cart"), prior("purchase"))


def _labels(sessions: DataFrame) -> DataFrame:
    """event_id -> 1 when the event is a cart/purchase, or one of the same user and item
    follows within the horizon."""
    events = sessions.select("event_id", "user_id", "item_id", "ts", "event_type")
    later = sessions.where(F.col("event_type").isin(*POSITIVE_TYPES)).select(
        "user_id", "item_id", F.col("ts").alias("_positive_ts")
    )
    horizon = F.expr(f"INTERVAL {PROPENSITY_HORIZON_SECONDS} SECONDS")
    joined = events.join(later, ["user_id", "item_id"], "left").withColumn(
        "_hit",
        F.col("event_type").isin(*POSITIVE_TYPES)
        | ((F.col("_positive_ts") > F.col("ts")) & (F.col("_positive_ts") <= F.col("ts") + horizon)),
    )
    return joined.groupBy("event_id").agg(F.max(F.coalesce("_hit", F.lit(False)).cast("int")).alias("label"))


def user_bucket(user_id: Column) -> Column:
    """A stable bucket in [0, TEST_USER_BUCKETS) from the pseudonymized user id (hex)."""
    return F.pmod(F.conv(F.substring(user_id, 1, 8), 16, 10).cast("long"), F.lit(TEST_USER_BUCKETS))


def propensity_training_set(sessions: DataFrame, source: str = PROPENSITY_SOURCE) -> DataFrame:
    events = sessions.where(F.col("source") == source)
    seconds = events.select(F.unix_seconds("ts").alias("s"))
    valid_from, test_from = _exact_quantiles(seconds, "s", PROPENSITY_SPLIT_QUANTILES)
    last = seconds.agg(F.max("s")).first()[0]
    horizon = PROPENSITY_HORIZON_SECONDS
    t = F.unix_seconds("ts")
    held_out_user = user_bucket(F.col("user_id")) == 0
    split = (
        # Test labels must be fully observed: drop clicks whose horizon passes the data's end.
        F.when((t >= test_from) & (t <= last - horizon), "test")
        .when(held_out_user, None)
        # Train/valid rows stop one horizon short of the next cutoff: no label looks past it.
        .when((t >= valid_from) & (t < test_from - horizon), "valid")
        .when(t < valid_from - horizon, "train")
    )
    rows = (
        _as_of_item_counts(events)
        .join(_labels(events), "event_id")
        .withColumn("split", split)
        .where(F.col("split").isNotNull())
    )
    return _conform(rows, PROPENSITY_TRAINING_SET.schema.spark_schema())
