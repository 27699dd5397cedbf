"""The item counts each folded stream event was served with, for its training row.

The worker enriches an event with one Delta version of `gold/item_click_stats` and the
scored event records which (`item_snapshot_version`, folded into the stream table). A
training row for that event takes its item counts from the same version, read back
with time travel, so the model trains on exactly what it saw when it scored: no
train/serve skew by construction. An item the version lacks, or an event the worker
enriched before any snapshot existed, was served the zero counts (the prior rates).

Rows folded before scored events named their snapshot (wire version below
ITEM_SNAPSHOT_WIRE_VERSION) are left out: their training rows take the counts the
loop's cadence would have served (`training_sets.snapshot_item_counts`), like history.

    served = served_item_counts(stream_table, lambda v: read_table(spark, path, v))
    served.columns  # event_id, served_views, served_carts, served_purchases
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from shared.contract import ITEM_SNAPSHOT_WIRE_VERSION
from shared.contract.folded import WIRE_VERSION_COLUMN

log = logging.getLogger(__name__)

SERVED_COUNTS = ("served_views", "served_carts", "served_purchases")
_SNAPSHOT_COUNTS = ("views", "carts", "purchases")


def served_item_counts(stream: DataFrame, snapshot_at: Callable[[int], DataFrame]) -> DataFrame:
    """event_id -> the (views, carts, purchases) of its item in the snapshot that served it.

    `snapshot_at(version)` reads one version of the item snapshot table. A version that
    cannot be read any more (vacuumed past its retention) is logged and its events are
    left out, so they fall back to the cadence's counts instead of failing the build.
    """
    recorded = stream.where(F.col(WIRE_VERSION_COLUMN) >= ITEM_SNAPSHOT_WIRE_VERSION).select(
        "event_id", "item_id", F.col("item_snapshot_version").alias("_version")
    )
    versions = sorted(r[0] for r in recorded.select("_version").distinct().collect() if r[0] is not None)
    snapshots = []
    for version in versions:
        try:
            frame = snapshot_at(version)
        except Exception as exc:  # noqa: BLE001 - delta-rs raises its own types for a vacuumed version
            log.warning(
                "item snapshot version %d is unreadable (%s): its events take the cadence's counts", version, exc
            )
            recorded = recorded.where(F.col("_version").isNull() | (F.col("_version") != version))
            continue
        snapshots.append(frame.select("item_id", *_SNAPSHOT_COUNTS).withColumn("_version", F.lit(version)))
    if snapshots:
        counts = snapshots[0]
        for frame in snapshots[1:]:
            counts = counts.unionByName(frame)
        recorded = recorded.join(counts, ["_version", "item_id"], "left")
    else:
        recorded = recorded.select("*", *(F.lit(None).cast("long").alias(c) for c in _SNAPSHOT_COUNTS))
    # An item the snapshot lacks, or no snapshot at all (null version): zero counts.
    return recorded.select(
        "event_id",
        *(F.coalesce(F.col(c), F.lit(0)).cast("long").alias(s) for c, s in zip(_SNAPSHOT_COUNTS, SERVED_COUNTS)),
    ).dropDuplicates(["event_id"])
