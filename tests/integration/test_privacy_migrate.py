"""`shopflow privacy migrate` on a copy of the batch lake with rows written the old way:
afterwards no raw identifier is anywhere under silver and gold (data files of every
version and _delta_log), and every table still answers (real Spark, Delta)."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.privacy import migrate
from shared.delta import read_arrow, write_arrow
from shared.pseudonymize import pseudonymize
from shared.schemas import click_event_id
from shared.settings import get_settings
from tests.legacy_rows import QUARANTINE_SCHEMA, STREAM_SCHEMA, Position, dlq_row, legacy_scored_row

pytestmark = pytest.mark.integration

EMAIL, SESSION = "legacy.person@example.com", "Wilhelmina Legacy"
NOW = datetime(2024, 1, 1, tzinfo=timezone.utc)


def _past_bronze(root: Path) -> bytes:
    """Every byte under silver and gold, parquet pages decoded (they are compressed)."""
    out = b""
    for layer in ("silver", "gold"):
        for f in (root / layer).rglob("*"):
            if f.is_file():
                out += f.read_bytes()
                if f.suffix == ".parquet":
                    out += json.dumps(pq.read_table(f).to_pylist(), default=str).encode()
    return out


def test_migrate_rewrites_old_rows_and_leaves_no_copy(gold_lake, spark, tmp_path: Path):
    settings = get_settings()
    root = tmp_path / "lake"
    shutil.copytree(settings.lake.root, root)
    settings = settings.model_copy(
        update={"lake": settings.lake.model_copy(update={"root": root}), "metrics_dir": tmp_path / "metrics"}
    )
    key = settings.pseudonymization_key.get_secret_value().encode()

    # Rows as they were written before: an unkeyed event id and a raw session id in the
    # stream's table, a dead letter with a raw e-mail, a quarantine row quoting it.
    bronze = read_arrow(root / "bronze" / "clicks_taobao").slice(0, 1).to_pylist()[0]
    fields = [bronze[c] or "" for c in ("user_id", "item_id", "category_id", "behavior_type", "timestamp")]
    row = legacy_scored_row(fields, SESSION, 1, key=key, folded_at=NOW)
    write_arrow(pa.Table.from_pylist([row], schema=STREAM_SCHEMA), root / "silver" / "clicks_stream", mode="append")
    raw = json.dumps({"user_id": EMAIL, "item_id": "1", "event_type": "teleport", "ts": 1511658100}).encode()
    entry = {
        "raw": raw.decode("latin-1"),
        "raw_encoding": "latin-1",
        "raw_truncated": False,
        "reasons": [f"quoting {EMAIL}"],
        "step": "parse_validate",
        "reason_code": "unknown_event_type",
        "source": {"topic": "clicks", "partition": 0, "offset": 9},
        "raw_size": len(raw),
    }
    dead = dlq_row(json.dumps(entry).encode(), Position("clicks.dlq", 0, 3), batch_id="b", folded_at=NOW)
    write_arrow(
        pa.Table.from_pylist([dead], schema=QUARANTINE_SCHEMA), root / "silver" / "quarantine_stream", mode="append"
    )
    old = read_arrow(root / "silver" / "quarantine").slice(0, 1).to_pylist()[0]
    old.update(source_table="clicks", detail=f"quoting {EMAIL}", record=json.dumps({"user_id": EMAIL}))
    quarantine = read_arrow(root / "silver" / "quarantine")
    write_arrow(pa.Table.from_pylist([old], schema=quarantine.schema), root / "silver" / "quarantine", mode="append")

    needles = [EMAIL.encode(), SESSION.encode(), row["event_id"].encode()]
    assert all(needle in _past_bronze(root) for needle in needles)  # the test has teeth

    migrate(settings, spark=spark)

    blob = _past_bronze(root)
    for needle in needles:
        assert needle not in blob, f"{needle!r} left under silver or gold"
    stream = read_arrow(root / "silver" / "clicks_stream").to_pylist()
    assert stream[0]["event_id"] == click_event_id("taobao", fields, key=key)
    assert stream[0]["session_id"] == pseudonymize(SESSION, "session", key=key)
    letters = read_arrow(root / "silver" / "quarantine_stream").to_pylist()
    assert json.loads(letters[0]["record"])["record"]["user_id"] == pseudonymize(EMAIL, "user", key=key)
    for name in ("silver/clicks", "silver/quarantine", "gold/click_sessions", "gold/train_propensity"):
        assert read_arrow(root / name).num_rows > 0, name
