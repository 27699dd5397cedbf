"""The item snapshot: the gold table the stream worker enriches click events with.

The features job writes it (`gold/item_click_stats`, one Delta version per run), the
worker serves the latest version and hot-reloads newer ones, each scored event names
the version that enriched it (`item_snapshot_version`), and the propensity training set
reads that version back for the event's item counts. One path for all of them:

    path = item_snapshot_path(settings)   # settings.stream.item_snapshot_path, else gold/item_click_stats
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from shared.datasets import ITEM_CLICK_STATS

if TYPE_CHECKING:
    from shared.settings import Settings


def item_snapshot_path(settings: Settings) -> Path:
    configured = settings.stream.item_snapshot_path
    return Path(configured) if configured else settings.lake.table("gold", ITEM_CLICK_STATS.name)
