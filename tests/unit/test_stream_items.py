"""The worker's item snapshots: a newer Delta version is loaded off the batch path and
served from the next batch; an unchanged or unreadable one changes nothing."""

from __future__ import annotations

import asyncio

from shared.settings import Settings
from stream.items import ItemSnapshot, ItemSnapshots


def _snapshots(latest: list[int | None], loads: list[int | None], fail: set[int] = frozenset()) -> ItemSnapshots:
    def load(version: int | None) -> ItemSnapshot:
        loads.append(version)
        if version in fail:
            raise OSError(f"version {version} was vacuumed")
        v = 0 if version is None else version
        return ItemSnapshot({"i1": {"item_views": float(v)}}, v)

    return ItemSnapshots(Settings(), load=load, latest=lambda: latest[0])


def test_a_newer_version_serves_from_the_next_swap_and_an_unchanged_one_is_not_reloaded():
    latest, loads = [0], []
    snapshots = _snapshots(latest, loads)
    assert snapshots.load_now().version == 0
    assert asyncio.run(snapshots.refresh()) is False and loads == [None]  # nothing newer
    latest[0] = 2
    assert asyncio.run(snapshots.refresh()) is True
    assert snapshots.current.version == 0  # the batch in flight keeps its snapshot
    assert asyncio.run(snapshots.refresh()) is False  # version 2 already waits
    assert snapshots.swap().version == 2 and snapshots.swap().version == 2
    assert snapshots.current("i1")["item_views"] == 2.0
    assert loads == [None, 2]


def test_a_version_that_cannot_be_read_keeps_the_current_one():
    latest, loads = [0], []
    snapshots = _snapshots(latest, loads, fail={1})
    snapshots.load_now()
    latest[0] = 1
    assert asyncio.run(snapshots.refresh()) is False
    assert snapshots.swap().version == 0
    latest[0] = 3
    assert asyncio.run(snapshots.refresh()) is True and snapshots.swap().version == 3


def test_no_snapshot_yet_serves_the_zero_count_prior_until_one_is_written():
    latest: list[int | None] = [None]
    snapshots = ItemSnapshots(
        Settings(),
        load=lambda v: ItemSnapshot({}, None) if v is None else ItemSnapshot({}, v),
        latest=lambda: latest[0],
    )
    assert snapshots.load_now().version is None
    assert asyncio.run(snapshots.refresh()) is False
    latest[0] = 0
    assert asyncio.run(snapshots.refresh()) is True and snapshots.swap().version == 0
