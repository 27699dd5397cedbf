"""Per-task training sets, split by time so evaluation never sees the future.

* sentiment: Title + Review Text -> negative (1-2 stars) / neutral (3) / positive (4-5),
  split by review id (the only order the reviews have);
* propensity: each view (the events the stream scores), with its session features (the
  events before it plus the viewed item as candidate) and its item's counts as the worker
  had them when it scored: for a folded stream event, from the item snapshot version
  that served it (`served_items`); for history, from the snapshot the loop's cadence
  would have served (every event before the start of the event's cadence period),
  labelled 1 when the same user adds any item to the cart or buys in
  (ts, ts + horizon]; views whose horizon passes the data's end are not labelled. Split
  by event time with a horizon gap between splits, and users of one hash bucket are kept
  out of train and valid.

    sentiment_training_set(silver_reviews)
    propensity_training_set(sessionized_clicks, horizon_seconds=600, snapshot_seconds=900, served=served)
    item_click_stats(silver_clicks)        # the snapshot the stream worker enriches with
"""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from batch.featurize.served_items import SERVED_COUNTS
from shared.click_sources import STREAM_SOURCE, TAOBAO_SOURCE
from shared.datasets import (
    ITEM_CLICK_STATS,
    ITEM_SNAPSHOT_SECONDS,
    PROPENSITY_HORIZON_SECONDS,
    PROPENSITY_SPLIT_QUANTILES,
    PROPENSITY_TRAINING_SET,
    SENTIMENT_SPLIT_QUANTILES,
    SENTIMENT_TRAINING_SET,
    TEST_USER_BUCKETS,
)
from shared.features import ITEM_FEATURES, item_rate_features

POSITIVE_TYPES = ("add_to_cart", "purchase")
# An event's item counts in the snapshot its cadence period would have been served.
SNAPSHOT_COUNTS = ("snapshot_views", "snapshot_carts", "snapshot_purchases")
# The click logs of the scored platform: the Taobao history and the stream folded back
# on top of it (jobs.fold). Diginetica's dates are another era.
PROPENSITY_SOURCES = (TAOBAO_SOURCE, STREAM_SOURCE)


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


def snapshot_item_counts(events: DataFrame, snapshot_seconds: int) -> DataFrame:
    """`events` with SNAPSHOT_COUNTS: its item's counts in the snapshot a
    features run every `snapshot_seconds` would have served it, i.e. over every event
    before the start of its period (floor(ts / period) * period), as the worker, which
    reloads the snapshot the loop writes, sees them. Never a count of a later event."""
    period = F.floor(F.unix_seconds("ts") / F.lit(snapshot_seconds))
    before = Window.partitionBy("item_id").orderBy(period).rangeBetween(Window.unboundedPreceding, -1)

    def prior(kind: str) -> Column:
        return F.coalesce(F.sum(F.when(F.col("event_type") == kind, 1).otherwise(0)).over(before), F.lit(0))

    kinds = ("view", "add_to_cart", "purchase")
    return events.select("*", *(prior(kind).alias(name) for kind, name in zip(kinds, SNAPSHOT_COUNTS)))


def _with_item_features(events: DataFrame, served: DataFrame | None) -> DataFrame:
    """ITEM_FEATURES from each event's counts: those that served it where the stream
    recorded them (`served`: event_id + SERVED_COUNTS), the cadence's otherwise."""
    counts = [F.col(name) for name in SNAPSHOT_COUNTS]
    if served is not None:
        events = events.join(served, "event_id", "left")
        counts = [F.coalesce(F.col(s), c) for s, c in zip(SERVED_COUNTS, counts)]
    extra = (*SNAPSHOT_COUNTS, *(SERVED_COUNTS if served is not None else ()))
    return with_item_rate_features(events, *counts).drop(*extra)


def _is_positive() -> Column:
    return F.col("event_type").isin(*POSITIVE_TYPES).cast("long")


def with_user_columns(events: DataFrame, horizon_seconds: int) -> DataFrame:
    """`label`: the user carts or buys any item in (ts, ts + horizon]; and the user's view
    and cart/purchase counts over their events strictly before ts (the prior-rate baseline)."""
    micros = F.unix_micros("ts")
    by_user = Window.partitionBy("user_id").orderBy(micros)
    after = by_user.rangeBetween(1, horizon_seconds * 1_000_000)
    before = by_user.rangeBetween(Window.unboundedPreceding, -1)
    is_view = (F.col("event_type") == "view").cast("long")
    return (
        events.withColumn("label", (F.coalesce(F.sum(_is_positive()).over(after), F.lit(0)) > 0).cast("long"))
        .withColumn("user_prior_views", F.coalesce(F.sum(is_view).over(before), F.lit(0)))
        .withColumn("user_prior_positives", F.coalesce(F.sum(_is_positive()).over(before), F.lit(0)))
    )


def user_bucket(user_id: Column) -> Column:
    """A stable bucket in [0, TEST_USER_BUCKETS) from the pseudonymized user id (hex)."""
    return F.pmod(F.conv(F.substring(user_id, 1, 8), 16, 10).cast("long"), F.lit(TEST_USER_BUCKETS))


def split_bounds(first: int, last: int, horizon: int) -> tuple[float, float, float, float]:
    """(train_end, valid_from, valid_end, test_from) in epoch seconds.

    Only views with ts + horizon <= last are labelled. That span, less one horizon gap
    after train and one after valid, is cut 70/15/15 (PROPENSITY_SPLIT_QUANTILES): a row
    of one split never has a label that looks into the next.
    """
    free = max(0.0, float(last - horizon - first - 2 * horizon))
    train_end = first + PROPENSITY_SPLIT_QUANTILES[0] * free
    valid_end = first + PROPENSITY_SPLIT_QUANTILES[1] * free + horizon
    return train_end, train_end + horizon, valid_end, valid_end + horizon


def propensity_training_set(
    sessions: DataFrame,
    sources: tuple[str, ...] = PROPENSITY_SOURCES,
    horizon_seconds: int = PROPENSITY_HORIZON_SECONDS,
    snapshot_seconds: int = ITEM_SNAPSHOT_SECONDS,
    served: DataFrame | None = None,
) -> DataFrame:
    """View events with the features they were (or would have been) served with,
    labelled over `horizon_seconds`, split by time.

    `served`: the item counts that served folded stream events (`served_item_counts`);
    the other events take the counts of the snapshot cadence `snapshot_seconds`, over
    every click the snapshot counts (all sources, as `item_click_stats`).
    """
    events = snapshot_item_counts(sessions, snapshot_seconds).where(F.col("source").isin(*sources))
    bounds = events.agg(F.min(F.unix_seconds("ts")), F.max(F.unix_seconds("ts"))).first()
    # No events of the source: first = last = 0 labels nothing, and the table is empty.
    first, last = (int(bounds[0]), int(bounds[1])) if bounds[0] is not None else (0, 0)
    train_end, valid_from, valid_end, test_from = split_bounds(first, last, horizon_seconds)
    t = F.unix_seconds("ts")
    held_out_user = user_bucket(F.col("user_id")) == 0
    split = (
        F.when(t >= test_from, "test")
        .when(held_out_user, None)
        .when((t >= valid_from) & (t < valid_end), "valid")
        .when(t < train_end, "train")
    )
    # Item counts and user windows run over every event (all types are history); only
    # views whose horizon ends inside the data are examples.
    rows = (
        with_user_columns(events, horizon_seconds)
        .where((F.col("event_type") == "view") & (t <= last - horizon_seconds))
        .withColumn("split", split)
        .where(F.col("split").isNotNull())
    )
    rows = _with_item_features(rows, served)
    return _conform(rows, PROPENSITY_TRAINING_SET.schema.spark_schema())
