"""Click logs (Taobao behavior, Diginetica views and purchases) -> silver/clicks + quarantine.

Every source becomes rows of the one click-event schema (shared.schemas.CLICK_EVENT)
plus `source`. Reason codes, in the order they are checked:
  malformed_row        the CSV reader could not split the row
  missing_field        no user, item or time
  unknown_event_type   a behavior outside pv/cart/fav/buy
  bad_timestamp        unreadable, or outside 2000-01-01 .. 2100-01-01
  duplicate            the same event id as an earlier row (an exact repeat of the raw row)
Diginetica's anonymous users ('NA') are kept: their session stands in for the user.
"""

from __future__ import annotations

from functools import reduce

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from batch.cleaning.common import CleanResult, Rule, blank, split_rejected, tag_duplicates, tag_first_reason
from shared.click_sources import (
    ANONYMOUS_USER_PREFIX, DIGINETICA_ANONYMOUS_USER, DIGINETICA_PURCHASES_RAW, DIGINETICA_PURCHASES_SOURCE,
    DIGINETICA_VIEWS_RAW, DIGINETICA_VIEWS_SOURCE, TAOBAO_BEHAVIOR, TAOBAO_RAW, TAOBAO_SOURCE,
)
from shared.pseudonymize import pseudonymize_column
from shared.schemas import CLICK_EVENT

VIEWS_RAW, PURCHASES_RAW = DIGINETICA_VIEWS_RAW, DIGINETICA_PURCHASES_RAW
# Columns the quarantine keeps for any click source (absent ones are null).
RAW_COLUMNS = tuple(dict.fromkeys(TAOBAO_RAW + VIEWS_RAW + PURCHASES_RAW))
_EARLIEST, _LATEST = "2000-01-01", "2100-01-01"


def event_id_column(source: str, raw: tuple[str, ...]) -> Column:
    """Spark twin of shared.schemas.click_event_id (tested equal)."""
    payload = F.concat(F.lit(f"{source}:"), F.concat_ws(",", *[F.coalesce(F.col(c), F.lit("")) for c in raw]))
    return F.substring(F.sha1(payload.cast("binary")), 1, 24)


def taobao_events(bronze: DataFrame) -> DataFrame:
    mapping = F.create_map(*[F.lit(x) for kv in TAOBAO_BEHAVIOR.items() for x in kv])
    return bronze.select(
        "*",
        event_id_column(TAOBAO_SOURCE, TAOBAO_RAW).alias("_event_id"),
        F.col("user_id").alias("_user"),
        F.lit(None).cast("string").alias("_session"),
        F.col("item_id").alias("_item"),
        mapping[F.col("behavior_type")].alias("_event_type"),
        F.col("behavior_type").alias("_raw_event_type"),
        F.timestamp_seconds(F.col("timestamp").try_cast("long")).alias("_ts"),
        F.col("category_id").alias("_category"),
        F.lit(TAOBAO_SOURCE).alias("_click_source"),
    )


def _diginetica_events(bronze: DataFrame, categories: DataFrame, source: str, raw: tuple[str, ...], event_type: str) -> DataFrame:
    day_start_ms = F.unix_millis(F.try_to_timestamp(F.col("eventdate"), F.lit("yyyy-MM-dd")))
    anonymous = blank("user_id") | (F.trim("user_id") == DIGINETICA_ANONYMOUS_USER)
    return bronze.join(categories, on="item_id", how="left").select(
        *bronze.columns,
        event_id_column(source, raw).alias("_event_id"),
        F.when(anonymous, F.concat(F.lit(ANONYMOUS_USER_PREFIX), F.col("session_id"))).otherwise(F.col("user_id")).alias("_user"),
        F.col("session_id").alias("_session"),
        F.col("item_id").alias("_item"),
        F.lit(event_type).alias("_event_type"),
        F.lit(event_type).alias("_raw_event_type"),
        F.timestamp_millis(day_start_ms + F.col("timeframe").try_cast("long")).alias("_ts"),
        F.col("_category_id").alias("_category"),
        F.lit(source).alias("_click_source"),
    )


def diginetica_categories(bronze_categories: DataFrame) -> DataFrame:
    """item_id -> one category_id (the file maps each item once; keep the smallest if not)."""
    return bronze_categories.groupBy("item_id").agg(F.min("category_id").alias("_category_id"))


def _with_all_raw_columns(df: DataFrame) -> DataFrame:
    missing = [c for c in RAW_COLUMNS if c not in df.columns]
    return df.select("*", *[F.lit(None).cast("string").alias(c) for c in missing])


def clean_clicks(
    taobao: DataFrame | None,
    views: DataFrame | None,
    purchases: DataFrame | None,
    categories: DataFrame | None,
    *,
    key: bytes,
) -> CleanResult:
    """Any of the click sources may be absent (None); at least one must be given."""
    cats = diginetica_categories(categories) if categories is not None else None
    parts = []
    if taobao is not None:
        parts.append(taobao_events(taobao))
    for df, source, raw, kind in ((views, DIGINETICA_VIEWS_SOURCE, VIEWS_RAW, "view"), (purchases, DIGINETICA_PURCHASES_SOURCE, PURCHASES_RAW, "purchase")):
        if df is not None:
            if cats is None:
                cats = df.sparkSession.createDataFrame([], "item_id string, _category_id string")
            parts.append(_diginetica_events(df, cats, source, raw, kind))
    if not parts:
        raise ValueError("clean_clicks needs at least one click source")
    events = reduce(lambda a, b: a.unionByName(b), [_with_all_raw_columns(p) for p in parts])

    tagged = tag_first_reason(
        events,
        [
            Rule("malformed_row", F.col("_corrupt_record").isNotNull(), F.col("_corrupt_record")),
            Rule("missing_field", blank("_user") | blank("_item"), "user_id or item_id missing"),
            Rule("unknown_event_type", F.col("_event_type").isNull(), F.concat(F.lit("behavior_type="), F.col("_raw_event_type"))),
            Rule("bad_timestamp", F.col("_ts").isNull(), "time missing or unreadable"),
            Rule(
                "bad_timestamp",
                (F.col("_ts") < F.lit(_EARLIEST).cast("timestamp")) | (F.col("_ts") >= F.lit(_LATEST).cast("timestamp")),
                F.concat(F.lit("ts="), F.col("_ts").cast("string")),
            ),
        ],
    )
    tagged = tag_duplicates(tagged, ["_event_id"], ["_source", "_row_number"])
    event_columns = {
        "event_id": F.col("_event_id"),
        "user_id": pseudonymize_column(F.trim(F.col("_user")), "user", key=key),
        "session_id": F.col("_session"),
        "item_id": F.trim(F.col("_item")),
        "event_type": F.col("_event_type"),
        "ts": F.col("_ts"),
        "query": F.lit(None).cast("string"),
        "category_id": F.col("_category"),
    }
    assert list(event_columns) == CLICK_EVENT.names, "silver clicks must follow CLICK_EVENT"
    return split_rejected(
        tagged,
        source_table="clicks",
        raw_columns=RAW_COLUMNS,
        pii_columns={"user_id": "user"},
        key=key,
        silver_columns=[
            *(expr.alias(name) for name, expr in event_columns.items()),
            F.col("_click_source").alias("source"),
            "_batch_id",
        ],
    )
