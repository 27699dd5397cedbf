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
from shared.pseudonymize import hmac_sha256_column, pseudonymize_column
from shared.redaction import KEYED_HASH_NAMESPACE, OUTLINE_CHARS
from shared.schemas import RecordSchema, personal_columns
from shared.silver import SILVER_QUARANTINE

REASON = "_reason"
DETAIL = "_detail"
QUARANTINE_COLUMNS = tuple(SILVER_QUARANTINE.names)
CORRUPT = "_corrupt_record"  # the CSV reader's raw line of a row it could not split


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
    """Tag 'duplicate' on every untagged row but the first of each key among untagged rows.

    The detail names the first row by its place (source file and row number), never by
    its values: the key may hold personal values (an order's customer id).
    """
    untagged = F.col(REASON).isNull()
    window = Window.partitionBy(untagged, *keys).orderBy(*order_by)
    ranked = df.withColumn("_dup_rank", F.row_number().over(window)).withColumn(
        "_dup_first",
        F.concat(
            F.lit("repeat of "),
            F.first("_source").over(window),
            F.lit(" row "),
            F.first("_row_number").over(window).cast("string"),
        ),
    )
    return tag_first_reason(
        ranked,
        [Rule("duplicate", untagged & (F.col("_dup_rank") > 1), F.col("_dup_first"))],
    ).drop("_dup_rank", "_dup_first")


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
    # A row the CSV reader could not split has its values in the wrong columns (a raw id
    # may sit in a column that is not personal): its record keeps none of them, its
    # detail the redacted line (`unsplit_row_detail`).
    split = F.col(CORRUPT).isNull() if CORRUPT in tagged.columns else F.lit(True)
    record_fields = [
        F.when(split, pseudonymize_column(F.col(c), ns, key=key) if (ns := pii_columns.get(c)) else F.col(c)).alias(c)
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


def outline_column(text: Column, limit: int = OUTLINE_CHARS) -> Column:
    """Spark twin of shared.redaction.outline: letters 'a', digits 'n', printable ASCII
    punctuation and spaces kept, other characters '?', the first `limit` of them."""
    head = F.substring(text, 1, limit)
    shape = F.regexp_replace(F.regexp_replace(head, r"[\p{L}\p{M}]", "a"), r"\p{N}", "n")
    shape = F.regexp_replace(shape, r"[^\x20-\x7E]", "?")
    return F.concat(shape, F.when(F.char_length(text) > limit, F.lit("...")).otherwise(F.lit("")))


def unsplit_row_detail(*, key: bytes) -> Column:
    """The detail of a row the CSV reader could not split: shared.redaction.summary_text
    of its raw line (size in UTF-8 bytes, keyed hash, outline), never the line itself."""
    line = F.col(CORRUPT).cast("binary")
    hashed = hmac_sha256_column(F.concat(F.lit(KEYED_HASH_NAMESPACE), line), key=key)
    # JSON string escapes, as json.dumps writes them (the outline is printable ASCII).
    shape = F.regexp_replace(F.regexp_replace(outline_column(F.col(CORRUPT)), r"\\", r"\\\\"), '"', r'\\"')
    return F.concat(
        F.lit("unparseable: "),
        F.octet_length(F.col(CORRUPT)).cast("string"),
        F.lit(" bytes, hmac-sha256 "),
        hashed,
        F.lit(', outline "'),
        shape,
        F.lit('"'),
    )


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
