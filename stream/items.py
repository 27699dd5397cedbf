"""The gold item snapshot the worker enriches events with, held in memory.

The batch layer writes `gold/item_click_stats` (schema `shared.datasets.ITEM_CLICK_STATS`),
one Delta version per features run. The worker reads the latest version at start and
hot-reloads each newer one (`ItemSnapshots`: polled, loaded off the event loop, swapped
in between micro-batches, like the model), and every scored event records the version
that enriched it, so training takes that event's item features from the same version.
An item missing from the snapshot (new, or no snapshot yet) gets the features of zero
counts, i.e. the shared prior rates, which is what batch gives an item it has never seen.

    snapshot = ItemSnapshot.load(settings)
    snapshot("12345")  # -> {"item_views": ..., "item_cart_rate": ...}
    snapshots = ItemSnapshots(settings); snapshots.load_now()
    await snapshots.refresh(); snapshots.swap().version   # between batches
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

from shared.contract.item_snapshot import item_snapshot_path
from shared.delta import read_arrow, table_exists, table_version
from shared.features import ITEM_FEATURES
from shared.settings import Settings
from stream.steps import item_features_from_counts

log = logging.getLogger(__name__)


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
    def load(cls, settings: Settings, version: int | None = None) -> ItemSnapshot:
        """The snapshot at `version` (default: the latest); empty while there is none."""
        path = item_snapshot_path(settings)
        if not table_exists(path):
            log.warning(
                "no item snapshot at %s: every item gets the prior rates until "
                "`shopflow features` writes it (the worker polls for it)",
                path,
            )
            return cls({}, None)
        version = table_version(path) if version is None else version
        table = read_arrow(path, version, columns=["item_id", *ITEM_FEATURES.names])
        columns = table.to_pydict()
        rows = {
            str(item): {name: float(columns[name][i]) for name in ITEM_FEATURES.names}
            for i, item in enumerate(columns["item_id"])
        }
        log.info("item snapshot %s version %s: %d items", path, version, len(rows))
        return cls(rows, version)


def latest_version(settings: Settings) -> int | None:
    """The snapshot table's latest Delta version (None while it does not exist)."""
    path = item_snapshot_path(settings)
    return table_version(path) if table_exists(path) else None


class ItemSnapshots:
    """The serving snapshot and a newer one waiting for the next batch.

    `refresh` (a timer) loads a newer Delta version in a thread, off the event loop; the
    batch loop calls `swap` at a batch's start, so a whole batch sees one snapshot and
    its scored events name it. A version that fails to load keeps the current one (and
    is tried again at the next poll).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        load: Callable[[int | None], ItemSnapshot] | None = None,
        latest: Callable[[], int | None] | None = None,
    ) -> None:
        self._load = load or (lambda version: ItemSnapshot.load(settings, version))
        self._latest = latest or (lambda: latest_version(settings))
        self.current = ItemSnapshot({}, None)
        self.pending: ItemSnapshot | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="item-snapshot")
        self._lock = asyncio.Lock()

    def load_now(self) -> ItemSnapshot:
        """Blocking first load, before the worker serves."""
        self.current = self._load(None)
        return self.current

    def _newer(self) -> ItemSnapshot | None:
        latest = self._latest()
        known = self.pending.version if self.pending is not None else self.current.version
        if latest is None or (known is not None and latest <= known):
            return None
        return self._load(latest)

    async def refresh(self) -> bool:
        """Load the latest version if it is newer; True when one now waits for `swap`."""
        async with self._lock:
            try:
                newer = await asyncio.get_running_loop().run_in_executor(self._executor, self._newer)
            except Exception as exc:  # noqa: BLE001 - a snapshot being rewritten or vacuumed: keep serving
                log.warning("item snapshot not reloaded (keeping version %s): %s", self.current.version, exc)
                return False
            if newer is None:
                return False
            self.pending = newer
            log.info(
                "item snapshot version %s loaded (%d items); it serves from the next batch", newer.version, len(newer)
            )
            return True

    def swap(self) -> ItemSnapshot:
        """Between batches: the pending snapshot becomes the serving one; returns it."""
        if self.pending is not None:
            log.info("item snapshot version %s serves (was %s)", self.pending.version, self.current.version)
            self.current, self.pending = self.pending, None
        return self.current

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
