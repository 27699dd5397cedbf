"""ModelHolder: loads off the loop, swaps only between batches, refuses bad versions.
(Pure logic: the scorers here are plain objects, no model is claimed.)"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np

from shared.errors import CorruptCheckpointError
from stream.scoring import ModelHolder, Scorer


@dataclass
class ConstantScorer:
    version: str
    task: str = "propensity"
    model_name: str = "constant"

    def score(self, records):
        return np.full(len(records), float(self.version))


def _holder(champion: dict, corrupt: set[int]):
    events = []

    def load(version: int) -> Scorer:
        if version in corrupt:
            raise CorruptCheckpointError(f"version {version} fails verification")
        return ConstantScorer(str(version))

    return ModelHolder(lambda: champion["v"], load, on_event=lambda what, v: events.append((what, v))), events


def test_new_champion_waits_for_the_next_batch_then_serves():
    champion = {"v": 1}
    holder, events = _holder(champion, set())
    assert asyncio.run(holder.refresh())
    assert holder.current is None and holder.swap().version == "1"
    champion["v"] = 2
    assert asyncio.run(holder.refresh())
    assert holder.current.version == "1"  # a batch in flight keeps its model
    assert holder.swap().version == "2"
    assert not asyncio.run(holder.refresh())  # unchanged champion: nothing to do
    assert ("serving", "2") in events


def test_corrupt_champion_is_refused_once_and_the_old_keeps_serving():
    champion = {"v": 1}
    holder, events = _holder(champion, {2})
    holder.load_now()
    holder.swap()
    champion["v"] = 2
    assert not asyncio.run(holder.refresh())
    assert not asyncio.run(holder.refresh())  # remembered, not retried every poll
    assert holder.swap().version == "1"
    assert events.count(("refused", "2")) == 1
    champion["v"] = 3
    assert asyncio.run(holder.refresh()) and holder.swap().version == "3"
    holder.close()


def test_no_champion_means_nothing_to_serve():
    holder, _ = _holder({"v": None}, set())
    assert not holder.load_now() and holder.swap() is None


def _stamped_holder(champion: dict, corrupt: set[int], stamps: dict[int, str], clock=None):
    events = []

    def load(version: int) -> Scorer:
        if version in corrupt:
            raise CorruptCheckpointError(f"version {version} fails verification")
        return ConstantScorer(str(version))

    kwargs = {"clock": clock} if clock else {}
    holder = ModelHolder(
        lambda: champion["v"],
        load,
        on_event=lambda what, v: events.append((what, v)),
        fingerprint=lambda version: stamps.get(version, ""),
        **kwargs,
    )
    return holder, events


def test_refused_version_is_retried_when_announced_again():
    champion, corrupt = {"v": 1}, {2}
    holder, events = _stamped_holder(champion, corrupt, {})
    holder.load_now()
    holder.swap()
    champion["v"] = 2
    assert not asyncio.run(holder.refresh(retry=2))  # the first announcement: refused
    corrupt.clear()  # repaired in place (same files' stamp, e.g. a copy restored)
    assert not asyncio.run(holder.refresh())  # a poll alone does not retry it
    assert asyncio.run(holder.refresh(retry=2))  # announced (promoted) again: retried
    assert holder.swap().version == "2"
    assert events.count(("refused", "2")) == 1
    holder.close()


def test_refused_version_is_retried_when_its_files_or_promotion_change():
    champion, corrupt, stamps = {"v": 1}, {2}, {2: "manifest@1"}
    holder, events = _stamped_holder(champion, corrupt, stamps)
    holder.load_now()
    holder.swap()
    champion["v"] = 2
    assert not asyncio.run(holder.refresh())
    assert not asyncio.run(holder.refresh())
    corrupt.clear()
    stamps[2] = "manifest@2"  # repaired, or promoted again: its stamp changed
    assert asyncio.run(holder.refresh()) and holder.swap().version == "2"
    holder.close()


def test_mismatch_seconds_count_while_serving_differs_from_the_champion():
    now = [100.0]
    champion, corrupt = {"v": 1}, {2}
    holder, _ = _stamped_holder(champion, corrupt, {}, clock=lambda: now[0])
    holder.load_now()
    holder.swap()
    assert holder.mismatch_seconds() == 0.0
    champion["v"] = 2
    asyncio.run(holder.refresh())  # refused: v1 serves, the registry says v2
    now[0] += 42.0
    assert holder.mismatch_seconds() == 42.0
    corrupt.clear()
    assert asyncio.run(holder.refresh(retry=2))
    assert holder.mismatch_seconds() == 42.0  # loaded, not serving yet
    holder.swap()
    assert holder.mismatch_seconds() == 0.0
    holder.close()
