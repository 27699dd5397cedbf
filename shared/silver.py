"""Silver tables: their names and schemas, declared once (as shared.datasets does for gold).

`batch.clean` conforms each transform's output to these (a renamed or retyped column
fails the job instead of silently changing the table); readers can check against them.

    from shared.silver import SILVER_SCHEMAS
    SILVER_SCHEMAS["clicks"].arrow_schema()
"""

from __future__ import annotations

from shared.schemas import CLICK_EVENT, FieldSpec, RecordSchema

# Lineage columns every silver row keeps: which bronze file (and source) it came from.
_BATCH_ID = FieldSpec("_batch_id", "string", doc="sha256 of the ingested file")
_SOURCE = FieldSpec("_source", "string", doc="the ingest source name (batch.sources)")

SILVER_ORDERS = RecordSchema(
    "orders",
    (
        FieldSpec("order_line_id", "string", doc="file hash prefix + row position"),
        FieldSpec("invoice_no", "string"),
        FieldSpec("stock_code", "string", doc="upper-cased"),
        FieldSpec("description", "string"),
        FieldSpec("quantity", "int32"),
        FieldSpec("unit_price", "float64"),
        FieldSpec("line_total", "float64", doc="quantity * unit_price, 2 decimals"),
        FieldSpec("invoice_ts", "timestamp", doc="UK local invoice time, as UTC"),
        FieldSpec("customer_key", "string", required=False, doc="pseudonym; null for guests"),
        FieldSpec("is_guest", "bool"),
        FieldSpec("country", "string"),
        _SOURCE,
        _BATCH_ID,
    ),
)

SILVER_REVIEWS = RecordSchema(
    "reviews",
    (
        FieldSpec("review_id", "int64"),
        FieldSpec("clothing_id", "int64", required=False),
        FieldSpec("age", "int64", required=False),
        FieldSpec("title", "string", required=False),
        FieldSpec("review_text", "string", doc="mojibake repaired"),
        FieldSpec("rating", "int64", doc="1..5"),
        FieldSpec("recommended", "int64", required=False, doc="Recommended IND (0/1)"),
        FieldSpec("positive_feedback_count", "int64"),
        FieldSpec("division", "string", required=False),
        FieldSpec("department", "string", required=False),
        FieldSpec("class_name", "string", required=False),
        FieldSpec("text_repaired", "bool", doc="title or text changed by the mojibake repair"),
        _SOURCE,
        _BATCH_ID,
    ),
)

# The click-event schema (user_id pseudonymized) plus the click log it came from.
SILVER_CLICKS = CLICK_EVENT.extend(
    "clicks",
    (
        FieldSpec("source", "string", doc="shared.click_sources: taobao | diginetica_views | ..."),
        _BATCH_ID,
    ),
)

# Rejected rows of every silver table, one slice per source_table.
SILVER_QUARANTINE = RecordSchema(
    "quarantine",
    (
        FieldSpec("source_table", "string", doc="the silver table the row was meant for"),
        FieldSpec("reason", "string", doc="the first rule that rejected it"),
        FieldSpec("detail", "string", required=False),
        FieldSpec("record", "string", doc="the bronze row as JSON, PII pseudonymized"),
        _SOURCE,
        _BATCH_ID,
        FieldSpec("_row_number", "int64", doc="position in the ingested file"),
    ),
)

SILVER_SCHEMAS: dict[str, RecordSchema] = {s.name: s for s in (SILVER_ORDERS, SILVER_REVIEWS, SILVER_CLICKS)}
QUARANTINE_TABLE = SILVER_QUARANTINE.name
