"""bronze/reviews -> silver/reviews + quarantine.

Reason codes, in the order they are checked:
  malformed_row       the CSV reader could not split the row, or an id/number is unreadable
  invalid_rating      rating outside 1..5
  invalid_age         age present but outside 18..99
  empty_review_text   no review body (a title alone is too little to learn sentiment from)
  duplicate           the same (clothing_id, title, review_text) as an earlier review
Mojibake (double-encoded UTF-8 that was lowercased, 'fiancã©') is repaired, not rejected,
and flagged in `text_repaired`.
"""

from __future__ import annotations

import re

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StringType

from batch.cleaning.common import (
    CleanResult,
    Rule,
    blank,
    split_rejected,
    tag_duplicates,
    tag_first_reason,
    unsplit_row_detail,
)

RAW_COLUMNS = (
    "review_id",
    "clothing_id",
    "age",
    "title",
    "review_text",
    "rating",
    "recommended_ind",
    "positive_feedback_count",
    "division_name",
    "department_name",
    "class_name",
)
# A lowercased UTF-8 lead byte (Ã/Â read as Latin-1, then lowercased to ã/â) followed
# by a continuation byte read as Latin-1 (U+0080..U+00BF).
_MOJIBAKE = re.compile("([\u00e2\u00e3])([\u0080-\u00bf])")


def repair_mojibake(text: str | None) -> str | None:
    """'fiancã©' -> 'fiancé': re-decode lowercased double-encoded UTF-8 pairs."""
    if not text:
        return text

    def decode(match: re.Match[str]) -> str:
        lead = match.group(1).upper().encode("latin-1")
        try:
            return (lead + match.group(2).encode("latin-1")).decode("utf-8")
        except UnicodeDecodeError:
            return match.group(0)

    return _MOJIBAKE.sub(decode, text)


@F.pandas_udf(StringType())
def _repair_mojibake_udf(texts: pd.Series) -> pd.Series:
    return texts.map(repair_mojibake, na_action="ignore")


def clean_reviews(bronze: DataFrame, *, key: bytes) -> CleanResult:
    ints = {
        c: F.col(c).try_cast("int")
        for c in ("review_id", "clothing_id", "age", "rating", "recommended_ind", "positive_feedback_count")
    }
    typed = bronze
    for name, expr in ints.items():
        typed = typed.withColumn(f"_{name}", expr)
    typed = typed.withColumn("_title", _repair_mojibake_udf(F.trim("title"))).withColumn(
        "_text", _repair_mojibake_udf(F.trim("review_text"))
    )

    def unreadable(column: str) -> Rule:
        return Rule("malformed_row", F.col(f"_{column}").isNull() & ~blank(column), f"{column}: not a whole number")

    tagged = tag_first_reason(
        typed,
        [
            Rule("malformed_row", F.col("_corrupt_record").isNotNull(), unsplit_row_detail(key=key)),
            Rule(
                "malformed_row", F.col("_review_id").isNull() | F.col("_rating").isNull(), "review_id or rating missing"
            ),
            *(unreadable(c) for c in ("clothing_id", "age", "recommended_ind", "positive_feedback_count")),
            Rule("invalid_rating", ~F.col("_rating").between(1, 5), "rating: outside 1..5"),
            Rule("invalid_age", ~F.col("_age").between(18, 99), "age: outside 18..99"),
            Rule("empty_review_text", blank("review_text")),
        ],
    )
    tagged = tag_duplicates(tagged, ["_clothing_id", "_title", "_text"], ["_review_id"])
    return split_rejected(
        tagged,
        source_table="reviews",
        raw_columns=RAW_COLUMNS,
        key=key,
        silver_columns=[
            F.col("_review_id").cast("long").alias("review_id"),
            F.col("_clothing_id").cast("long").alias("clothing_id"),
            F.col("_age").cast("long").alias("age"),
            F.when(F.col("_title") == "", None).otherwise(F.col("_title")).alias("title"),
            F.col("_text").alias("review_text"),
            F.col("_rating").cast("long").alias("rating"),
            F.col("_recommended_ind").cast("long").alias("recommended"),
            F.coalesce(F.col("_positive_feedback_count"), F.lit(0)).cast("long").alias("positive_feedback_count"),
            F.trim("division_name").alias("division"),
            F.trim("department_name").alias("department"),
            F.trim("class_name").alias("class_name"),
            (
                F.coalesce(F.col("_title") != F.trim("title"), F.lit(False))
                | F.coalesce(F.col("_text") != F.trim("review_text"), F.lit(False))
            ).alias("text_repaired"),
            "_source",
            "_batch_id",
        ],
    )
