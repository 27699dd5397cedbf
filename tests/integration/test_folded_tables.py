"""The folded tables are found by the name the settings give them: the features job reads
the stream's folded clicks from a renamed stream table (real Spark, real Delta)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest

from shared.contract.folded import STREAM_SCHEMA, stream_table_path
from shared.delta import read_arrow, write_arrow
from shared.settings import Settings
from shared.silver import SILVER_CLICKS

pytestmark = pytest.mark.integration
T0 = datetime(2017, 11, 26, 1, tzinfo=timezone.utc)


def _click(i: int, source: str) -> dict:
    return {
        "event_id": f"{source}-{i}",
        "user_id": f"u{i % 3}",
        "session_id": None,
        "item_id": f"i{i % 4}",
        "event_type": "view" if i % 2 else "add_to_cart",
        "ts": T0 + timedelta(seconds=10 * i),
        "query": None,
        "category_id": "c1",
        "source": source,
        "_batch_id": "b1",
    }


def test_features_read_the_stream_table_the_settings_name(spark, tmp_path):
    from batch.features import FeaturesOptions, run

    settings = Settings(
        lake={"root": tmp_path / "lake"}, metrics_dir=tmp_path / "metrics", fold={"stream_table": "live_clicks"}
    )
    write_arrow(
        pa.Table.from_pylist([_click(i, "taobao") for i in range(6)], schema=SILVER_CLICKS.arrow_schema()),
        settings.lake.table("silver", "clicks"),
        mode="overwrite",
    )
    folded = [{**_click(i, "stream"), "model_name": "m", "model_version": "1", "_wire_version": 2} for i in range(6, 9)]
    path = stream_table_path(settings)
    assert path.name == "live_clicks"
    write_arrow(pa.Table.from_pylist(folded, schema=STREAM_SCHEMA), path, mode="append")

    result = run(settings, FeaturesOptions(tables=("click_sessions",)), spark=spark)

    assert "silver/live_clicks" in result.tables_read
    ids = read_arrow(settings.lake.table("gold", "click_sessions"), columns=["event_id"]).column("event_id")
    assert {f"stream-{i}" for i in range(6, 9)} <= set(ids.to_pylist())
