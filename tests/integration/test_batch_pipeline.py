"""The batch jobs on real Spark + Delta over slices of the real data sets."""

from __future__ import annotations

import json
import re

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from shared.delta import read_arrow, table_version
from shared.pseudonymize import pseudonymize
from shared.settings import get_settings
from tests.data_slices import (
    CANARY_CUSTOMER,
    CANARY_DIGINETICA_USER,
    CANARY_TAOBAO_USER,
    PERSONAL_CANARIES,
    PLANTED_PERSONAL_TAOBAO,
)
from tests.integration.support.privacy import identifiers_in_files

pytestmark = pytest.mark.integration


def _quarantine(gold_lake, table: str):
    q = read_arrow(gold_lake["silver/quarantine"])
    return q.filter(pc.equal(q["source_table"], table)).to_pylist()


def _reasons(rows) -> dict[str, int]:
    out: dict[str, int] = {}
    for row in rows:
        out[row["reason"]] = out.get(row["reason"], 0) + 1
    return out


def test_every_layer_is_written(gold_lake):
    expected = {
        "bronze/orders",
        "bronze/reviews",
        "bronze/clicks_taobao",
        "bronze/views_diginetica",
        "bronze/purchases_diginetica",
        "bronze/item_categories_diginetica",
        "silver/orders",
        "silver/reviews",
        "silver/clicks",
        "silver/quarantine",
        "gold/item_features",
        "gold/user_features",
        "gold/click_sessions",
        "gold/item_click_stats",
        "gold/train_sentiment",
        "gold/train_propensity",
    }
    assert expected <= set(gold_lake)
    for name in expected:
        assert read_arrow(gold_lake[name]).num_rows > 0, name


def test_bronze_keeps_rows_as_received_with_metadata(gold_lake, sliced_data):
    bronze = read_arrow(gold_lake["bronze/clicks_taobao"])
    assert {"_source", "_ingested_at", "_batch_id", "_row_number"} <= set(bronze.column_names)
    lines = (sliced_data / "taobao_user_behavior/user_behavior_2017-11-26_0100-0310utc.csv").read_text().splitlines()
    assert bronze.num_rows == len(lines)
    assert all(
        t == pa_type for t, pa_type in [(bronze.schema.field("user_id").type, bronze.schema.field("timestamp").type)]
    )
    assert str(bronze.schema.field("timestamp").type) == "string"


def test_rows_in_equal_silver_plus_quarantine(gold_lake):
    metrics_dir = get_settings().metrics_dir
    runs = [json.loads(p.read_text()) for p in sorted(metrics_dir.glob("batch.clean-*.json"))]
    first = next(r for r in runs if r.get("tables"))
    for table, counts in first["tables"].items():
        assert counts["rows_in"] == counts["silver"] + counts["quarantine"], table
        assert counts["accounted"] is True
        assert read_arrow(gold_lake[f"silver/{table}"]).num_rows == counts["silver"]
    assert set(first["tables"]) == {"orders", "reviews", "clicks"}
    assert first["tables_read"]["bronze/orders"] is not None


def test_orders_quarantine_every_planted_problem_with_its_reason(gold_lake):
    reasons = _reasons(_quarantine(gold_lake, "orders"))
    for reason in (
        "malformed_row",
        "source_overlap",
        "duplicate",
        "cancellation",
        "bad_debt_adjustment",
        "non_product_code",
        "non_positive_price",
        "missing_description",
    ):
        assert reasons.get(reason, 0) >= 1, f"no order quarantined as {reason}: {reasons}"
    assert reasons["source_overlap"] >= 150  # the slice's last 200 Online Retail II rows
    assert reasons["malformed_row"] >= 3  # bad quantity, bad date, too many fields


def test_silver_orders_are_typed_utc_and_pseudonymized(gold_lake):
    orders = read_arrow(gold_lake["silver/orders"])
    schema = {f.name: str(f.type) for f in orders.schema}
    assert schema["quantity"] == "int32" and schema["unit_price"] == "double"
    assert schema["invoice_ts"] == "timestamp[us, tz=UTC]"
    assert pc.min(orders["quantity"]).as_py() > 0 and pc.min(orders["unit_price"]).as_py() > 0
    key = get_settings().pseudonymization_key.get_secret_value().encode()
    canary = pseudonymize(CANARY_CUSTOMER, "customer", key=key)
    assert canary in set(orders["customer_key"].to_pylist())
    # 2011-12-09 10:00 in London (GMT in December) is 10:00 UTC.
    row = orders.filter(pc.equal(orders["invoice_no"], "581001")).to_pylist()[0]
    assert row["invoice_ts"].hour == 10 and row["invoice_ts"].utcoffset().total_seconds() == 0


def test_reviews_quarantine_and_mojibake_repair(gold_lake):
    reasons = _reasons(_quarantine(gold_lake, "reviews"))
    assert reasons.get("empty_review_text", 0) >= 1
    assert reasons.get("invalid_rating", 0) == 1
    assert reasons.get("duplicate", 0) >= 1
    assert reasons.get("malformed_row", 0) >= 1  # age 'x'
    reviews = read_arrow(gold_lake["silver/reviews"])
    repaired = reviews.filter(pc.equal(reviews["review_id"], 900004)).to_pylist()[0]
    assert repaired["review_text"] == "my fiancé loved the ombré color"
    assert repaired["text_repaired"] is True


def test_clicks_quarantine_and_anonymous_users(gold_lake):
    reasons = _reasons(_quarantine(gold_lake, "clicks"))
    for reason in ("unknown_event_type", "bad_timestamp", "missing_field", "malformed_row", "duplicate"):
        assert reasons.get(reason, 0) >= 1, f"no click quarantined as {reason}: {reasons}"
    clicks = read_arrow(gold_lake["silver/clicks"])
    assert set(clicks["event_type"].to_pylist()) <= {"view", "add_to_cart", "favorite", "purchase", "search"}
    anonymous = read_arrow(gold_lake["bronze/views_diginetica"])
    na_rows = sum(1 for u in anonymous["user_id"].to_pylist() if u == "NA")
    assert na_rows > 0
    digi = clicks.filter(pc.equal(clicks["source"], "diginetica_views"))
    rejected = [r for r in _quarantine(gold_lake, "clicks") if r["_source"] == "views_diginetica"]
    assert [r["reason"] for r in rejected] == ["bad_timestamp"]  # the one planted bad time
    assert digi.num_rows == anonymous.num_rows - 1  # anonymous sessions are kept, not dropped


def test_canary_identifiers_never_reach_silver_gold_or_quarantine(gold_lake):
    canaries = [
        re.compile(rf"(?<![0-9]){c}(?![0-9])") for c in (CANARY_CUSTOMER, CANARY_TAOBAO_USER, CANARY_DIGINETICA_USER)
    ]
    for name, path in gold_lake.items():
        if name.startswith("bronze/"):
            continue
        table = read_arrow(path)
        for field in table.schema:
            if not (pa.types.is_string(field.type) or pa.types.is_list(field.type)):
                continue
            text = json.dumps(table[field.name].to_pylist())
            for canary in canaries:
                assert not canary.search(text), f"raw identifier {canary.pattern} found in {name}.{field.name}"
    # ...while the pseudonyms are there (so this test can fail).
    key = get_settings().pseudonymization_key.get_secret_value().encode()
    users = set(read_arrow(gold_lake["silver/clicks"])["user_id"].to_pylist())
    assert pseudonymize(CANARY_TAOBAO_USER, "user", key=key) in users
    assert pseudonymize(CANARY_DIGINETICA_USER, "user", key=key) in users


def _lake_files(gold_lake) -> list:
    """Every file of every silver and gold table: data files of every version (current or
    removed) and the _delta_log (whose add actions carry column min/max statistics)."""
    return [
        f for name, path in gold_lake.items() if not name.startswith("bronze/") for f in path.rglob("*") if f.is_file()
    ]


def test_no_planted_identifier_is_anywhere_past_bronze(gold_lake):
    files = _lake_files(gold_lake)
    assert any(f.parent.name == "_delta_log" for f in files) and any(f.suffix == ".parquet" for f in files)
    found = identifiers_in_files(files, [c.encode() for c in PERSONAL_CANARIES])
    assert not found, f"raw identifiers found past bronze: {found}"
    # ...while the rows carrying them went through (so this test can fail).
    key = get_settings().pseudonymization_key.get_secret_value().encode()
    orders = read_arrow(gold_lake["silver/orders"])
    assert pseudonymize(PERSONAL_CANARIES[1], "customer", key=key) in set(orders["customer_key"].to_pylist())
    clicks = read_arrow(gold_lake["silver/clicks"])
    assert pseudonymize(PERSONAL_CANARIES[4], "session", key=key) in set(clicks["session_id"].to_pylist())


def test_quarantine_records_are_pseudonymized_and_details_quote_nothing(gold_lake):
    key = get_settings().pseudonymization_key.get_secret_value().encode()
    email, name = PERSONAL_CANARIES[0], PERSONAL_CANARIES[1]
    customers = {pseudonymize(email, "customer", key=key), pseudonymize(name, "customer", key=key)}
    orders = [r for r in _quarantine(gold_lake, "orders") if json.loads(r["record"]).get("customer_id") in customers]
    reasons = _reasons(orders)
    for reason in (
        "malformed_row",
        "duplicate",
        "cancellation",
        "bad_debt_adjustment",
        "non_product_code",
        "non_positive_price",
        "non_positive_quantity",
        "missing_description",
    ):
        assert reasons.get(reason, 0) >= 1, f"no order with a planted customer quarantined as {reason}: {reasons}"
    click_users = {pseudonymize(line.split(",")[0].strip(" "), "user", key=key) for line in PLANTED_PERSONAL_TAOBAO}
    clicks = [r for r in _quarantine(gold_lake, "clicks") if json.loads(r["record"]).get("user_id") in click_users]
    reasons = _reasons(clicks)
    for reason in ("unknown_event_type", "bad_timestamp", "missing_field", "blank_id", "too_long", "duplicate"):
        assert reasons.get(reason, 0) >= 1, f"no click with a planted user quarantined as {reason}: {reasons}"
    # A row the reader could not split keeps no values, and its detail only a summary.
    unsplit = [
        r for r in _quarantine(gold_lake, "clicks") + _quarantine(gold_lake, "orders") if r["reason"] == "malformed_row"
    ]
    summaries = [r for r in unsplit if r["detail"].startswith("unparseable: ")]
    assert summaries and all(json.loads(r["record"]) == {} for r in summaries)
    assert all(
        re.fullmatch(r'unparseable: \d+ bytes, hmac-sha256 [0-9a-f]{64}, outline ".*"', r["detail"]) for r in summaries
    )


def test_silver_tables_have_their_declared_schemas(gold_lake):
    from shared.silver import SILVER_QUARANTINE, SILVER_SCHEMAS

    for name, schema in {**SILVER_SCHEMAS, "quarantine": SILVER_QUARANTINE}.items():
        got = read_arrow(gold_lake[f"silver/{name}"]).schema
        assert [(f.name, f.type) for f in got] == [(f.name, f.type) for f in schema.arrow_schema()], name


def test_distinct_counts_as_set_sizes_equal_spark_count_distinct(gold_lake, spark):
    """The gold features count distinct values as set sizes (one pass, no Expand):
    the same numbers as countDistinct, nulls (guests' customer keys) not counted."""
    from pyspark.sql import functions as F

    from batch.featurize.orders import count_distinct
    from shared.delta import read_table

    orders = read_table(spark, gold_lake["silver/orders"])
    columns = ("invoice_no", "customer_key", "country")
    both = orders.groupBy("stock_code").agg(
        *[count_distinct(c).alias(f"set_{c}") for c in columns],
        *[F.countDistinct(c).alias(f"distinct_{c}") for c in columns],
        F.max(F.col("customer_key").isNull().cast("int")).alias("has_guest"),
    )
    assert dict(both.dtypes)["set_customer_key"] == dict(both.dtypes)["distinct_customer_key"] == "bigint"
    differ = " or ".join(f"set_{c} != distinct_{c}" for c in columns)
    row = both.agg(F.sum(F.expr(f"cast({differ} as int)")).alias("differ"), F.max("has_guest").alias("guests")).first()
    assert row["differ"] == 0 and row["guests"] == 1  # guests (null keys) are there and not counted


def test_rerunning_every_job_changes_nothing(gold_lake, spark):
    from batch import pipeline
    from batch.sources import KNOWN_SOURCES

    bronze = {f"bronze/{s.bronze_table}" for s in KNOWN_SOURCES}
    before = {name: table_version(path) for name, path in gold_lake.items()}
    results = pipeline.run(get_settings(), spark=spark)
    after = {name: table_version(path) for name, path in gold_lake.items()}
    assert after == before
    # What each job returns says so: inputs pinned at the versions on disk, nothing written.
    ingested, cleaned, featurized = results
    assert [r.job for r in results] == ["batch.ingest", "batch.clean", "batch.features"]
    assert all(r.status == "succeeded" and r.metrics_file.is_file() for r in results)
    assert set(ingested.tables_written) == bronze
    assert cleaned.tables_read == {n: before[n] for n in bronze}
    assert set(cleaned.tables_written) == {
        "silver/orders",
        "silver/reviews",
        "silver/clicks",
        "silver/quarantine[orders]",
        "silver/quarantine[reviews]",
        "silver/quarantine[clicks]",
    }
    assert set(featurized.tables_written) == {n for n in gold_lake if n.startswith("gold/")}
    for result in results:
        for name, written in result.tables_written.items():
            assert written.skipped and written.rows == 0, (result.job, name)
            assert written.version == before[name.split("[")[0]], name
        assert not result.wrote_anything()
    assert cleaned.tables == {}  # no table rebuilt, so none accounted
