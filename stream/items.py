"""The gold item snapshot the worker enriches events with, held in memory.

The batch layer writes `gold/item_click_stats` (schema `shared.datasets.ITEM_CLICK_STATS`).
The worker reads one version of it at start; an item missing from the snapshot (new, or
no snapshot yet) gets the features of zero counts, i.e. the shared prior rates, which
is what batch gives an item it has never seen.

    snapshot = ItemSnapshot.load(settings)
    snapshot("12345")  # -> {"item_views": ..., "item_cart_rate": ...}
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from shared.datasets import ITEM_CLICK_STATS
from shared.delta import read_arrow, table_exists, table_version
from shared.features import ITEM_FEATURES
from shared.settings import Settings
from stream.steps import item_features_from_counts

log = logging.getLogger(__name__)


def snapshot_path(settings: Settings) -> Path:
    configured = settings.stream.item_snapshot_path
    return Path(configured) if configured else settings.lake.table("gold", ITEM_CLICK_STATS.name)


class ItemSnapshot:
    """item_id -> ITEM_FEATURES, with the zero-count prior for unknown items."""

    def __init__(self, rows: dict[str, dict[str, float]], version: int | None) -> None:
        self._rows = rows
        self.version = version
        self._unknown = item_features_from_counts(0, 0, 0)

    def __len__(self) -> int:
        return len(self._rows)

    def __call__(self, item_id: str) -> Mapping[str, float]:
        return self._rows.get(item_id, self._unknown)

    @classmethod
    def load(cls, settings: Settings) -> ItemSnapshot:
        path = snapshot_path(settings)
        if not table_exists(path):
            log.warning(
                "no item snapshot at %s: every item gets the prior rates until "
                "`shopflow features` writes it and the worker restarts",
                path,
            )
            return cls({}, None)
        version = table_version(path)
        table = read_arrow(path, version, columns=["item_id", *ITEM_FEATURES.names])
        columns = table.to_pydict()
        rows = {
            str(item): {name: float(columns[name][i]) for name in ITEM_FEATURES.names}
            for i, item in enumerate(columns["item_id"])
        }
        log.info("item snapshot %s version %s: %d items", path, version, len(rows))
        return cls(rows, version)
