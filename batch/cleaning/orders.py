"""bronze/orders (both UCI Online Retail files) -> silver/orders + quarantine.

Reason codes, in the order they are checked:
  malformed_row           the CSV reader could not split the row, or a number/date is unreadable
  source_overlap          an Online Retail II row from 2010-12-01 on (the other file has it)
  duplicate               an exact repeat of an earlier row (5,268 + 6,865 upstream)
  cancellation            invoice starts with 'C' (returns and cancellations)
  bad_debt_adjustment     invoice starts with 'A'
  non_product_code        stock code is a fee, postage, voucher or test code (POST, DOT, M...)
  non_positive_price      unit price <= 0
  non_positive_quantity   quantity <= 0 on a sale
  missing_description     no product text
Rows without a customer id are guest sales: kept, with customer_key null and is_guest.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from batch.cleaning.common import (
    CleanResult,
    Rule,
    blank,
    split_rejected,
    tag_duplicates,
    tag_first_reason,
    unsplit_row_detail,
)
from batch.sources import UCI_OVERLAP_SOURCE, UCI_OVERLAP_START
from shared.pseudonymize import pseudonymize_column
from shared.schemas import PERSONAL_FIELDS

RAW_COLUMNS = (
    "invoice_no",
    "stock_code",
    "description",
    "quantity",
    "invoice_date",
    "unit_price",
    "customer_id",
    "country",
)
PRODUCT_CODE = r"^[0-9]{5}[A-Za-z]{0,2}$"
UCI_TIME_ZONE = "Europe/London"  # InvoiceDate is UK local time


def clean_orders(bronze: DataFrame, *, key: bytes) -> CleanResult:
    quantity = F.col("quantity").try_cast("int")
    price = F.col("unit_price").try_cast("double")
    local_ts = F.try_to_timestamp(F.col("invoice_date"), F.lit("yyyy-MM-dd HH:mm:ss"))
    customer = F.regexp_replace(F.trim(F.col("customer_id")), r"\.0$", "")
    invoice = F.trim(F.col("invoice_no"))

    typed = (
        bronze.withColumn("_quantity", quantity)
        .withColumn("_price", price)
        .withColumn("_invoice_ts", F.to_utc_timestamp(local_ts, UCI_TIME_ZONE))
        .withColumn("_customer", F.when(customer == "", None).otherwise(customer))
    )
    tagged = tag_first_reason(
        typed,
        [
            Rule("malformed_row", F.col("_corrupt_record").isNotNull(), unsplit_row_detail(key=key)),
            Rule(
                "malformed_row",
                F.col("_quantity").isNull() & ~blank("quantity"),
                "quantity: not a whole number",
            ),
            Rule(
                "malformed_row",
                F.col("_price").isNull() & ~blank("unit_price"),
                "unit_price: not a number",
            ),
            Rule(
                "malformed_row",
                F.col("_invoice_ts").isNull(),
                F.when(blank("invoice_date"), F.lit("invoice_date: missing")).otherwise(
                    F.lit("invoice_date: not yyyy-MM-dd HH:mm:ss")
                ),
            ),
            Rule("malformed_row", blank("invoice_no") | blank("stock_code"), "invoice_no or stock_code missing"),
            Rule(
                "source_overlap",
                (F.col("_source") == UCI_OVERLAP_SOURCE) & (local_ts >= F.lit(UCI_OVERLAP_START).cast("timestamp")),
                "the 2010-12-01..09 rows are taken from Online Retail, not Online Retail II",
            ),
        ],
    )
    tagged = tag_duplicates(tagged, RAW_COLUMNS, ["_source", "_row_number"])
    tagged = tag_first_reason(
        tagged,
        [
            Rule("cancellation", invoice.startswith("C")),
            Rule("bad_debt_adjustment", invoice.startswith("A")),
            Rule(
                "non_product_code", ~F.trim(F.col("stock_code")).rlike(PRODUCT_CODE), "stock_code: not a product code"
            ),
            Rule("non_positive_price", F.col("_price") <= 0, "unit_price: not positive"),
            Rule("non_positive_quantity", F.col("_quantity") <= 0, "quantity: not positive"),
            Rule("missing_description", blank("description")),
        ],
    )
    return split_rejected(
        tagged,
        source_table="orders",
        raw_columns=RAW_COLUMNS,
        key=key,
        silver_columns=[
            F.concat_ws("-", F.substring("_batch_id", 1, 16), F.col("_row_number").cast("string")).alias(
                "order_line_id"
            ),
            invoice.alias("invoice_no"),
            F.upper(F.trim(F.col("stock_code"))).alias("stock_code"),
            F.trim(F.col("description")).alias("description"),
            F.col("_quantity").alias("quantity"),
            F.col("_price").alias("unit_price"),
            F.round(F.col("_quantity") * F.col("_price"), 2).alias("line_total"),
            F.col("_invoice_ts").alias("invoice_ts"),
            pseudonymize_column(F.col("_customer"), PERSONAL_FIELDS["customer_id"], key=key).alias("customer_key"),
            F.col("_customer").isNull().alias("is_guest"),
            F.trim(F.col("country")).alias("country"),
            "_source",
            "_batch_id",
        ],
    )
