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
