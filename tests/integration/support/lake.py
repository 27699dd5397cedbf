"""Small gold Delta tables written from real events, for the trainer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.integration.support.models import scoring_records


def write_propensity_gold(events: list[dict[str, Any]], key: bytes, lake_root: Path) -> Path:
    """A small gold/train_propensity table from real Taobao events, for the trainer.

    Rows are the views of `events` with their session features (shared fold) and prior
    item rates, labelled 1 when the same user carts or buys any item within the horizon;
    split by time (70/15/15).
    """
    import pyarrow as pa
    from deltalake import write_deltalake

    from shared.datasets import PROPENSITY_HORIZON_SECONDS, PROPENSITY_TRAINING_SET

    records = scoring_records(events, key)
    positives: dict[str, list[Any]] = {}
    views_at: dict[str, list[Any]] = {}
    for r in records:
        if r["event_type"] in ("add_to_cart", "purchase"):
            positives.setdefault(r["user_id"], []).append(r["ts"])
        elif r["event_type"] == "view":
            views_at.setdefault(r["user_id"], []).append(r["ts"])
    views = sorted((r for r in records if r["event_type"] == "view"), key=lambda r: (r["ts"], r["event_id"]))
    n = len(views)
    for i, r in enumerate(views):
        user_positives = positives.get(r["user_id"], [])
        r["user_prior_views"] = sum(t < r["ts"] for t in views_at.get(r["user_id"], []))
        r["user_prior_positives"] = sum(t < r["ts"] for t in user_positives)
        r["label"] = int(any(0 < (t - r["ts"]).total_seconds() <= PROPENSITY_HORIZON_SECONDS for t in user_positives))
        r["split"] = "train" if i < 0.7 * n else ("valid" if i < 0.85 * n else "test")
    schema = PROPENSITY_TRAINING_SET.schema.arrow_schema()
    table = pa.Table.from_pylist([{k: r.get(k) for k in schema.names} for r in views], schema=schema)
    path = lake_root / "gold" / PROPENSITY_TRAINING_SET.table
    write_deltalake(str(path), table, mode="overwrite")
    return path
