"""What every cleaning transform shares: reason codes, the quarantine shape, the split.

A transform tags each bronze row with the first reason it is rejected for (or none),
then `split_rejected` sends tagged rows to quarantine and the rest to silver, so every
input row lands in exactly one of the two (rows in = silver + quarantine).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from shared.errors import TableError
from shared.pseudonymize import pseudonymize_column
from shared.schemas import RecordSchema, personal_columns
from shared.silver import SILVER_QUARANTINE

REASON = "_reason"
DETAIL = "_detail"
QUARANTINE_COLUMNS = tuple(SILVER_QUARANTINE.names)


@dataclass(frozen=True)
class Rule:
    """Reject a row when `condition` holds (null counts as false)."""

    reason: str
    condition: Column
    detail: Column | str = ""


@dataclass(frozen=True)
class CleanResult:
    silver: DataFrame
    quarantine: DataFrame
    tagged: DataFrame  # both outputs derive from it: persist it to compute it once


def tag_first_reason(df: DataFrame, rules: Sequence[Rule]) -> DataFrame:
    """Add _reason/_detail: the first rule (in order) that rejects the row, else null.

    A row already tagged keeps its reason, so rules can be applied in stages.
    """
    reason = F.col(REASON) if REASON in df.columns else F.lit(None).cast("string")
    detail = F.col(DETAIL) if DETAIL in df.columns else F.lit(None).cast("string")
    for rule in reversed(rules):
        rule_detail = rule.detail if isinstance(rule.detail, Column) else F.lit(rule.detail)
        hit = F.coalesce(rule.condition, F.lit(False))
        reason = F.when(hit, F.lit(rule.reason)).otherwise(reason)
        detail = F.when(hit, rule_detail).otherwise(detail)
    if REASON in df.columns:  # earlier stage wins
        reason = F.coalesce(F.col(REASON), reason)
        detail = F.when(F.col(REASON).isNotNull(), F.col(DETAIL)).otherwise(detail)
    # One select: a second withColumn would see the already-replaced _reason.
    others = [c for c in df.columns if c not in (REASON, DETAIL)]
    return df.select(*others, reason.alias(REASON), detail.alias(DETAIL))


def tag_duplicates(df: DataFrame, keys: Sequence[str], order_by: Sequence[str]) -> DataFrame:
    """Tag 'duplicate' on every untagged row but the first of each key among untagged rows."""
    untagged = F.col(REASON).isNull()
    window = Window.partitionBy(untagged, *keys).orderBy(*order_by)
    ranked = df.withColumn("_dup_rank", F.row_number().over(window))
    first_key = F.concat_ws("|", *[F.coalesce(F.col(k).cast("string"), F.lit("<null>")) for k in keys])
    return tag_first_reason(
        ranked,
        [Rule("duplicate", untagged & (F.col("_dup_rank") > 1), F.concat(F.lit("repeat of "), first_key))],
    ).drop("_dup_rank")


def split_rejected(
    tagged: DataFrame,
    *,
    source_table: str,
    raw_columns: Sequence[str],
    key: bytes,
    silver_columns: Sequence[Column | str],
) -> CleanResult:
    """Untagged rows -> silver columns; tagged rows -> quarantine with the raw record.

    The raw record is kept as JSON for replay and debugging, with its personal columns
    (`shared.schemas.PERSONAL_FIELDS`) replaced by their pseudonyms: quarantine is
    silver-level, raw identifiers stop at bronze.
    """
    pii_columns = personal_columns(raw_columns)
    record_fields = [
        (pseudonymize_column(F.col(c), ns, key=key) if (ns := pii_columns.get(c)) else F.col(c)).alias(c)
        for c in raw_columns
    ]
    quarantine = tagged.where(F.col(REASON).isNotNull()).select(
        F.lit(source_table).alias("source_table"),
        F.col(REASON).alias("reason"),
        F.col(DETAIL).alias("detail"),
        F.to_json(F.struct(*record_fields)).alias("record"),
        "_source",
        "_batch_id",
        "_row_number",
    )
    silver = tagged.where(F.col(REASON).isNull()).select(*silver_columns)
    return CleanResult(silver, quarantine, tagged)


def blank(column: str) -> Column:
    """True when the value is null or only whitespace."""
    return F.col(column).isNull() | (F.trim(F.col(column)) == "")


def conform(df: DataFrame, schema: RecordSchema) -> DataFrame:
    """`df` unchanged when its columns and types are the declared ones, else a TableError.

    A transform that renames or retypes a column is a defect: failing here keeps it out
    of the table (nullability is not compared: Spark infers it per expression).
    """
    declared = [(f.name, f.dataType.simpleString()) for f in schema.spark_schema().fields]
    produced = [(f.name, f.dataType.simpleString()) for f in df.schema.fields]
    if produced != declared:
        diff = sorted(set(produced) ^ set(declared)) or "column order"
        raise TableError(f"{schema.name}: the transform's columns differ from shared.silver's ({diff})")
    return df
