"""Click logs (Taobao behavior, Diginetica views and purchases) -> silver/clicks + quarantine.

Every source becomes rows of the one click-event schema (shared.schemas.CLICK_EVENT)
plus `source`. Reason codes, in the order they are checked:
  malformed_row        the CSV reader could not split the row
  (the click rules)    shared.click_rules, the same rules and codes the stream worker
                       applies: missing_field, blank_id, too_long, unknown_event_type (a
                       behavior outside pv/cart/fav/buy), bad_timestamp (unreadable, or
                       outside 2000-01-01 .. now + 1 day), ...
  duplicate            the same event id as an earlier row (an exact repeat of the raw row)
Each source maps its row to the candidate event a producer would send (CANDIDATE_COLUMNS)
and `click_verdict` applies the shared rules to it, so one event gets one verdict in
batch and stream (tests/integration/test_click_rules_parity.py).
Diginetica's anonymous users ('NA') are kept: their session stands in for the user.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from functools import reduce

import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from batch.cleaning.common import (
    DETAIL,
    REASON,
    CleanResult,
    Rule,
    blank,
    split_rejected,
    tag_duplicates,
    tag_first_reason,
    unsplit_row_detail,
)
from shared.click_rules import CANDIDATE_COLUMNS, check_click_columns
from shared.click_sources import (
    ANONYMOUS_USER_PREFIX,
    DIGINETICA_ANONYMOUS_USER,
    DIGINETICA_PURCHASES_RAW,
    DIGINETICA_PURCHASES_SOURCE,
    DIGINETICA_VIEWS_RAW,
    DIGINETICA_VIEWS_SOURCE,
    TAOBAO_BEHAVIOR,
    TAOBAO_RAW,
    TAOBAO_SOURCE,
)
from shared.pseudonymize import pseudonymize_column
from shared.schemas import CLICK_EVENT, EVENT_ID_HEX_CHARS, EVENT_ID_NAMESPACE, PERSONAL_FIELDS

VIEWS_RAW, PURCHASES_RAW = DIGINETICA_VIEWS_RAW, DIGINETICA_PURCHASES_RAW
# Columns the quarantine keeps for any click source (absent ones are null).
RAW_COLUMNS = tuple(dict.fromkeys(TAOBAO_RAW + VIEWS_RAW + PURCHASES_RAW))
VERDICT_TYPE = "reason string, detail string, ts_micros long"


def click_verdict(candidates: Column, now: datetime) -> Column:
    """struct(reason, detail, ts_micros) of each candidate row: shared.click_rules applied.

    `candidates` is a struct with the fields of CANDIDATE_COLUMNS (strings; ts_epoch a
    long). The rules run in Python on the executors: the very code the worker runs.
    """

    @F.pandas_udf(VERDICT_TYPE)
    def verdicts(rows: pd.DataFrame) -> pd.DataFrame:
        out = []
        for row in rows.to_dict("records"):
            # Arrow hands a nullable long over as float64 with NaN for null.
            epoch = row.get("ts_epoch")
            row["ts_epoch"] = None if epoch is None or (isinstance(epoch, float) and math.isnan(epoch)) else int(epoch)
            out.append(check_click_columns(row, now=now))
        return pd.DataFrame(
            {
                "reason": [v.reason for v in out],
                "detail": [v.detail for v in out],
                "ts_micros": pd.array([v.ts_micros for v in out], dtype="Int64"),
            }
        )

    return verdicts(candidates)


def candidate_struct(columns: dict[str, Column]) -> Column:
    """The candidate event of a row as the struct `click_verdict` reads (missing -> null)."""
    types = {"ts_epoch": "long"}
    return F.struct(
        *[columns.get(name, F.lit(None)).cast(types.get(name, "string")).alias(name) for name in CANDIDATE_COLUMNS]
    )


def apply_click_rules(df: DataFrame, now: datetime) -> DataFrame:
    """Tag rows the shared click rules reject (rows already tagged keep their reason);
    `_ts` becomes the accepted event's time."""
    candidates = candidate_struct(
        {
            "event_id": F.col("_event_id"),
            "user_id": F.col("_user"),
            "session_id": F.col("_session"),
            "item_id": F.col("_item"),
            "event_type": F.col("_event_type"),
            "category_id": F.col("_category"),
            "ts_epoch": F.col("_ts_epoch"),
            "ts_text": F.col("_ts_text"),
        }
    )
    with_verdict = df.withColumn("_verdict", click_verdict(candidates, now))
    earlier = F.col(REASON).isNotNull()
    others = [c for c in with_verdict.columns if c not in (REASON, DETAIL, "_verdict")]
    return with_verdict.select(
        *others,
        F.when(earlier, F.col(REASON)).otherwise(F.col("_verdict.reason")).alias(REASON),
        F.when(earlier, F.col(DETAIL)).otherwise(F.col("_verdict.detail")).alias(DETAIL),
        F.timestamp_micros(F.col("_verdict.ts_micros")).alias("_ts"),
    )


def _ts_text(epoch: Column, *raw: str) -> Column:
    """The source's time as text when it is not a number (so the rules say bad_timestamp)."""
    present = reduce(lambda a, b: a | b, [F.col(c).isNotNull() for c in raw])
    return F.when(epoch.isNull() & present, F.concat_ws(" ", *[F.coalesce(F.col(c), F.lit("")) for c in raw]))


def event_id_column(source: str, raw: tuple[str, ...], *, key: bytes) -> Column:
    """Spark twin of shared.schemas.click_event_id (tested equal)."""
    payload = F.concat(F.lit(f"{source}:"), F.concat_ws(",", *[F.coalesce(F.col(c), F.lit("")) for c in raw]))
    return F.substring(pseudonymize_column(payload, EVENT_ID_NAMESPACE, key=key), 1, EVENT_ID_HEX_CHARS)


def taobao_events(bronze: DataFrame, *, key: bytes) -> DataFrame:
    mapping = F.create_map(*[F.lit(x) for kv in TAOBAO_BEHAVIOR.items() for x in kv])
    epoch = F.col("timestamp").try_cast("long")  # epoch seconds; the shared rule reads the unit
    mapped = mapping[F.col("behavior_type")]
    return bronze.select(
        "*",
        event_id_column(TAOBAO_SOURCE, TAOBAO_RAW, key=key).alias("_event_id"),
        F.col("user_id").alias("_user"),
        F.lit(None).cast("string").alias("_session"),
        F.col("item_id").alias("_item"),
        # An unknown behavior stays visible to the rules (unknown_event_type), never as null.
        F.when(
            mapped.isNull() & F.col("behavior_type").isNotNull(),
            F.concat(F.lit("behavior_type="), F.col("behavior_type")),
        )
        .otherwise(mapped)
        .alias("_event_type"),
        epoch.alias("_ts_epoch"),
        _ts_text(epoch, "timestamp").alias("_ts_text"),
        F.col("category_id").alias("_category"),
        F.lit(TAOBAO_SOURCE).alias("_click_source"),
    )


def _diginetica_events(
    bronze: DataFrame, categories: DataFrame, source: str, raw: tuple[str, ...], event_type: str, *, key: bytes
) -> DataFrame:
    day_start_ms = F.unix_millis(F.try_to_timestamp(F.col("eventdate"), F.lit("yyyy-MM-dd")))
    anonymous = blank("user_id") | (F.trim("user_id") == DIGINETICA_ANONYMOUS_USER)
    epoch_ms = day_start_ms + F.col("timeframe").try_cast("long")
    return bronze.join(categories, on="item_id", how="left").select(
        *bronze.columns,
        event_id_column(source, raw, key=key).alias("_event_id"),
        F.when(anonymous, F.concat(F.lit(ANONYMOUS_USER_PREFIX), F.col("session_id")))
        .otherwise(F.col("user_id"))
        .alias("_user"),
        F.col("session_id").alias("_session"),
        F.col("item_id").alias("_item"),
        F.lit(event_type).alias("_event_type"),
        epoch_ms.alias("_ts_epoch"),
        _ts_text(epoch_ms, "eventdate", "timeframe").alias("_ts_text"),
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
    now: datetime | None = None,
) -> CleanResult:
    """Any of the click sources may be absent (None); at least one must be given.

    `now` bounds the accepted event times (now + 1 day); default: the job's start.
    """
    now = now or datetime.now(timezone.utc)
    cats = diginetica_categories(categories) if categories is not None else None
    parts = []
    if taobao is not None:
        parts.append(taobao_events(taobao, key=key))
    for df, source, raw, kind in (
        (views, DIGINETICA_VIEWS_SOURCE, VIEWS_RAW, "view"),
        (purchases, DIGINETICA_PURCHASES_SOURCE, PURCHASES_RAW, "purchase"),
    ):
        if df is not None:
            if cats is None:
                cats = df.sparkSession.createDataFrame([], "item_id string, _category_id string")
            parts.append(_diginetica_events(df, cats, source, raw, kind, key=key))
    if not parts:
        raise ValueError("clean_clicks needs at least one click source")
    events = reduce(lambda a, b: a.unionByName(b), [_with_all_raw_columns(p) for p in parts])

    tagged = tag_first_reason(
        events, [Rule("malformed_row", F.col("_corrupt_record").isNotNull(), unsplit_row_detail(key=key))]
    )
    tagged = apply_click_rules(tagged, now)
    tagged = tag_duplicates(tagged, ["_event_id"], ["_source", "_row_number"])
    event_columns = {
        "event_id": F.col("_event_id"),
        "user_id": pseudonymize_column(F.trim(F.col("_user")), PERSONAL_FIELDS["user_id"], key=key),
        "session_id": pseudonymize_column(F.col("_session"), PERSONAL_FIELDS["session_id"], key=key),
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
        key=key,
        silver_columns=[
            *(expr.alias(name) for name, expr in event_columns.items()),
            F.col("_click_source").alias("source"),
            "_batch_id",
        ],
    )
