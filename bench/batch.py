"""Benchmark: the full UCI Online Retail clean + features in local Spark vs DuckDB, and
the whole `shopflow pipeline` (ingest -> clean -> features on every source) in Spark.

    python bench/batch.py                 # orders at 1, 2, 4x; the pipeline at 1 and 4x
    python bench/batch.py --scales 1 --engines spark --pipeline-scales 1
    python bench/batch.py --pipeline-scales     # the orders part only

Both engines start from the same bronze rows (read from the real files by the real
ingest job), apply the same rules (reason codes, dedup, UTC, pseudonymization) and
write silver orders, quarantine, item and user features as Delta tables. At scale k
the bronze rows are repeated k times with the invoice number suffixed per copy, so the
work (and every duplicate inside a copy) grows k-fold. Prints one JSON line: seconds per
engine and scale, rows/s, the Spark/DuckDB ratio, how time grows with scale, and whether
the engines' outputs agree.

The pipeline part runs `batch.pipeline.run` on a fresh lake per scale, in the same Spark
session, from k copies of every input file (bench/scaled_sources.py, built once under
var/bench-data/), and reports each stage's seconds (ingest, clean, features) and the
silver and quarantine counts. DuckDB has no twin of the whole pipeline: the orders part
is the like-for-like comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

_WORK = Path(tempfile.mkdtemp(prefix="shopflow-bench-batch-"))
os.environ.setdefault("SHOPFLOW_LAKE__ROOT", str(_WORK / "lake"))
os.environ.setdefault("SHOPFLOW_METRICS_DIR", str(_WORK / "metrics"))

import duckdb  # noqa: E402
import pyarrow as pa  # noqa: E402
from pyspark.sql import DataFrame  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

from batch import ingest, pipeline  # noqa: E402
from batch.cleaning.orders import PRODUCT_CODE, RAW_COLUMNS, UCI_TIME_ZONE, clean_orders  # noqa: E402
from batch.featurize.orders import item_features, user_features  # noqa: E402
from batch.sources import UCI_OVERLAP_SOURCE, UCI_OVERLAP_START  # noqa: E402
from bench.scaled_sources import scaled_data_root  # noqa: E402
from shared.delta import read_arrow, read_table, write_arrow, write_table  # noqa: E402
from shared.pseudonymize import pseudonymize  # noqa: E402
from shared.settings import LakeSettings, Settings, get_settings  # noqa: E402
from shared.spark import get_spark  # noqa: E402


def replicate_spark(bronze: DataFrame, scale: int) -> DataFrame:
    copies = bronze.sparkSession.range(scale).withColumnRenamed("id", "_copy")
    return (
        bronze.crossJoin(copies)
        .withColumn(
            "invoice_no",
            F.when(F.col("_copy") == 0, F.col("invoice_no")).otherwise(
                F.concat("invoice_no", F.lit("r"), F.col("_copy"))
            ),
        )
        .withColumn("_row_number", F.col("_row_number") + F.col("_copy") * F.lit(1 << 40))
        .drop("_copy")
    )


def run_spark(bronze: DataFrame, scale: int, out: Path, key: bytes) -> dict[str, int]:
    result = clean_orders(replicate_spark(bronze, scale), key=key)
    result.tagged.persist()  # as the clean job does: silver and quarantine share it
    silver = write_table(result.silver, out / "silver", mode="overwrite")
    quarantine = write_table(result.quarantine, out / "quarantine", mode="overwrite")
    silver_df = read_table(bronze.sparkSession, out / "silver")
    items = write_table(item_features(silver_df), out / "items", mode="overwrite")
    users = write_table(user_features(silver_df), out / "users", mode="overwrite")
    result.tagged.unpersist()
    return {"silver": silver.rows, "quarantine": quarantine.rows, "items": items.rows, "users": users.rows}


DUCKDB_CLEAN = f"""
create or replace temp table tagged as
with copies as (
  select b.* replace (case when c.k = 0 then invoice_no else invoice_no || 'r' || c.k end as invoice_no),
         b._row_number + c.k * (1::bigint << 40) as _rn
  from bronze b, range(?) c(k)
), typed as (
  select *, try_cast(quantity as integer) as q, try_cast(unit_price as double) as p,
         try_strptime(invoice_date, '%Y-%m-%d %H:%M:%S') as local_ts,
         nullif(regexp_replace(trim(customer_id), '\\.0$', ''), '') as cust, trim(invoice_no) as inv
  from copies
), first_pass as (
  select *, case
    when _corrupt_record is not null then 'malformed_row'
    when q is null and trim(coalesce(quantity, '')) <> '' then 'malformed_row'
    when p is null and trim(coalesce(unit_price, '')) <> '' then 'malformed_row'
    when local_ts is null then 'malformed_row'
    when trim(coalesce(invoice_no, '')) = '' or trim(coalesce(stock_code, '')) = '' then 'malformed_row'
    when _source = '{UCI_OVERLAP_SOURCE}' and local_ts >= timestamp '{UCI_OVERLAP_START}' then 'source_overlap'
  end as reason from typed
), ranked as (
  select *, row_number() over (partition by reason is null, {", ".join(RAW_COLUMNS)} order by _source, _rn) as rk
  from first_pass
)
select *, coalesce(reason, case
    when rk > 1 then 'duplicate'
    when starts_with(inv, 'C') then 'cancellation'
    when starts_with(inv, 'A') then 'bad_debt_adjustment'
    when not regexp_matches(trim(stock_code), '{PRODUCT_CODE}') then 'non_product_code'
    when p <= 0 then 'non_positive_price'
    when q <= 0 then 'non_positive_quantity'
    when trim(coalesce(description, '')) = '' then 'missing_description'
  end) as final_reason
from ranked
"""

DUCKDB_SILVER = f"""
select inv as invoice_no, upper(trim(stock_code)) as stock_code, trim(description) as description,
       q as quantity, p as unit_price, round(q * p, 2) as line_total,
       timezone('{UCI_TIME_ZONE}', local_ts) as invoice_ts, k.customer_key, tagged.cust is null as is_guest,
       trim(country) as country
from tagged left join keys k on k.cust = tagged.cust
where final_reason is null
"""

DUCKDB_ITEMS = """
select stock_code, mode(description) as description, count(distinct invoice_no) as n_invoices,
       count(distinct customer_key) as n_customers, sum(quantity) as total_quantity,
       round(sum(line_total), 2) as revenue, round(avg(unit_price), 4) as avg_unit_price,
       count(distinct country) as n_countries, min(invoice_ts) as first_sold_at, max(invoice_ts) as last_sold_at
from silver group by stock_code
"""

DUCKDB_USERS = """
with known as (select * from silver where not is_guest),
inv as (select customer_key, invoice_no, sum(line_total) as v, min(invoice_ts) as ts from known group by all),
per_inv as (select customer_key, count(*) as n_invoices, round(avg(v), 2) as avg_invoice_value,
                   min(ts) as first_order_at, max(ts) as last_order_at from inv group by all),
per_line as (select customer_key, count(*) as n_lines, round(sum(line_total), 2) as total_spend,
                    count(distinct stock_code) as distinct_products, mode(country) as main_country from known group by all),
as_of as (select max(invoice_ts) as features_as_of from silver)
select *, date_diff('day', last_order_at, features_as_of) as recency_days,
       date_diff('day', first_order_at, last_order_at) as tenure_days
from per_inv join per_line using (customer_key), as_of
"""


def run_duckdb(bronze: pa.Table, scale: int, out: Path, key: bytes) -> dict[str, int]:
    con = duckdb.connect()
    con.register("bronze", bronze)
    con.execute(DUCKDB_CLEAN, [scale])
    # DuckDB has no HMAC: pseudonymize each distinct id with the shared Python function.
    ids = [r[0] for r in con.execute("select distinct cust from tagged where cust is not null").fetchall()]
    keys = pa.table({"cust": ids, "customer_key": [pseudonymize(i, "customer", key=key) for i in ids]})
    con.register("keys", keys)
    silver = con.sql(DUCKDB_SILVER).to_arrow_table()
    quarantine = con.sql(
        "select 'orders' as source_table, final_reason as reason, _source, _batch_id, _rn as _row_number from tagged where final_reason is not null"
    ).to_arrow_table()
    write_arrow(silver, out / "silver", mode="overwrite")
    write_arrow(quarantine, out / "quarantine", mode="overwrite")
    con.register("silver", silver)
    items = con.sql(DUCKDB_ITEMS).to_arrow_table()
    users = con.sql(DUCKDB_USERS).to_arrow_table()
    write_arrow(items, out / "items", mode="overwrite")
    write_arrow(users, out / "users", mode="overwrite")
    return {
        "silver": silver.num_rows,
        "quarantine": quarantine.num_rows,
        "items": items.num_rows,
        "users": users.num_rows,
    }


def run_pipeline(settings: Settings, scale: int, spark) -> dict[str, object]:
    """`shopflow pipeline` over k copies of every input, on a fresh lake: seconds by stage."""
    work = _WORK / f"pipeline-{scale}x"
    scaled = settings.model_copy(
        update={
            "data_root": scaled_data_root(settings.data_root, scale, REPO / "var" / "bench-data"),
            "lake": LakeSettings(root=work / "lake"),
            "metrics_dir": work / "metrics",
        }
    )
    start = time.perf_counter()
    ingested, cleaned, featured = pipeline.run(scaled, pipeline.PipelineOptions(), spark)
    total = time.perf_counter() - start
    tables = getattr(cleaned, "tables", {})
    shutil.rmtree(work, ignore_errors=True)
    return {
        "seconds": {
            "ingest": round(ingested.seconds, 2),
            "clean": round(cleaned.seconds, 2),
            "features": round(featured.seconds, 2),
            "total": round(total, 2),
        },
        "bronze_rows": ingested.counts.get("rows_in", 0),
        "silver": {name: account.silver for name, account in tables.items()},
        "quarantine": {name: account.quarantine for name, account in tables.items()},
    }


def timed(fn, *args) -> tuple[float, dict[str, int]]:
    start = time.perf_counter()
    counts = fn(*args)
    return time.perf_counter() - start, counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Spark vs DuckDB on the UCI clean + features")
    p.add_argument("--scales", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--engines", nargs="+", default=["spark", "duckdb"], choices=["spark", "duckdb"])
    p.add_argument("--pipeline-scales", type=int, nargs="*", default=[1, 4], help="none: skip the pipeline part")
    args = p.parse_args(argv)

    settings = get_settings()
    start = time.perf_counter()
    spark = get_spark(settings)
    session_start = time.perf_counter() - start
    ingest.main(["--source", "orders_2010_2011", "--source", "orders_2009_2010"])
    bronze_path = settings.lake.table("bronze", "orders")
    bronze_df = read_table(spark, bronze_path).cache()
    rows_1x = bronze_df.count()
    bronze_arrow = read_arrow(bronze_path)
    key = settings.pseudonymization_key.get_secret_value().encode()

    seconds: dict[str, dict[int, float]] = {e: {} for e in args.engines}
    counts: dict[str, dict[int, dict[str, int]]] = {e: {} for e in args.engines}
    for scale in args.scales:
        for engine in args.engines:
            out = _WORK / f"{engine}-{scale}x"
            if engine == "spark":
                s, c = timed(run_spark, bronze_df, scale, out, key)
            else:
                s, c = timed(run_duckdb, bronze_arrow, scale, out, key)
            seconds[engine][scale], counts[engine][scale] = round(s, 2), c
            shutil.rmtree(out, ignore_errors=True)
            print(f"# {engine} {scale}x: {s:.1f}s {c}", file=sys.stderr)

    bronze_df.unpersist()
    pipelines: dict[int, dict[str, object]] = {}
    for scale in args.pipeline_scales:
        pipelines[scale] = run_pipeline(settings, scale, spark)
        print(f"# pipeline {scale}x: {pipelines[scale]['seconds']}", file=sys.stderr)

    report = {
        "bench": "batch_uci_clean_features",
        "bronze_rows_1x": rows_1x,
        "cores": os.cpu_count(),
        "load_average": [round(x, 1) for x in os.getloadavg()],
        "session_start_seconds": round(session_start, 2),
        "seconds": seconds,
        "rows_per_second": {e: {k: round(rows_1x * k / v) for k, v in s.items()} for e, s in seconds.items()},
        "growth_vs_1x": {e: {k: round(v / s[min(s)], 2) for k, v in s.items()} for e, s in seconds.items()},
        "counts": counts,
    }
    if set(args.engines) == {"spark", "duckdb"}:
        report["spark_over_duckdb_seconds"] = {
            k: round(seconds["spark"][k] / seconds["duckdb"][k], 2) for k in args.scales
        }
        report["engines_agree"] = all(counts["spark"][k] == counts["duckdb"][k] for k in args.scales)
    if pipelines:
        report["pipeline"] = pipelines
    print(json.dumps(report))
    shutil.rmtree(_WORK, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
