"""Where batch computes in the JVM what the stream computes in Python, both agree."""

from __future__ import annotations

import pytest
from pyspark.sql import functions as F

from batch.cleaning.clicks import TAOBAO_RAW, event_id_column
from shared.pseudonymize import pseudonymize, pseudonymize_column
from shared.schemas import click_event_id

pytestmark = pytest.mark.integration

VALUES = ["17850", "987654321", "anon-session:42", "ünïcødé", "", "x" * 200]


@pytest.mark.parametrize("key", [b"short", b"k" * 64, b"a-key-longer-than-the-sha256-block-size-" * 3])
def test_spark_hmac_equals_python_hmac(spark, key):
    df = spark.createDataFrame([(v,) for v in VALUES] + [(None,)], "value string")
    got = df.select("value", pseudonymize_column(F.col("value"), "user", key=key).alias("p")).collect()
    for row in got:
        assert row.p == pseudonymize(row.value, "user", key=key)


def test_spark_event_ids_equal_python_event_ids(spark):
    rows = [("543462", "1715", "1464116", "pv", "1511658000"), ("1", "2", "3", "buy", "4")]
    df = spark.createDataFrame(rows, ", ".join(f"{c} string" for c in TAOBAO_RAW))
    got = [r.id for r in df.select(event_id_column("taobao", TAOBAO_RAW, key=b"k").alias("id")).collect()]
    assert got == [click_event_id("taobao", list(r), key=b"k") for r in rows]


def test_spark_summary_of_an_unsplit_line_equals_the_python_one(spark):
    from batch.cleaning.common import unsplit_row_detail
    from shared.redaction import Redactor

    lines = ['alice@example.com,1715,"Zoë \\ Smith",pv,1511658100,extra', "x" * 100, "tab\there ✓ 42"]
    df = spark.createDataFrame([(line,) for line in lines], "_corrupt_record string")
    got = [r.d for r in df.select(unsplit_row_detail(key=b"k").alias("d")).collect()]
    assert got == [Redactor(b"k").summary_text(line.encode()) for line in lines]
