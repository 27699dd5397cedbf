"""The dead-letter boundary of the per-batch steps, as pure logic: a scorer that fails on
one record, and a DLQ producer that refuses an entry. (The real broker and worker are
exercised by tests/integration/test_stream_poison.py and test_stream_fuzz.py; the topics
and the scorer here are stand-ins because what is tested is the pipeline's own logic.)"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone

import numpy as np
import pytest

from shared.errors import ModelError
from shared.settings import Settings
from stream import steps
from stream.metrics import WorkerMetrics
from stream.pipeline import Pipeline, Prepared

T0 = datetime(2017, 11, 26, 1, tzinfo=timezone.utc)


class _Topic:
    """Records what is sent; refuses values over `limit` bytes the way a producer does."""

    def __init__(self, limit: int = 10**9) -> None:
        self.values: list[bytes] = []
        self.limit = limit

    async def send(self, key=None, value=None, partition=None):
        if len(value) > self.limit:
            raise RuntimeError("MessageSizeTooLargeError: the message is too large")
        self.values.append(value)
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


class _Scorer:
    model_name, version, task = "m", "1", "propensity"

    def score(self, records):
        if any(r["item_id"] == "boom" for r in records):
            raise ValueError("cannot encode item " + "boom" * 1000)
        return np.full(len(records), 0.5)


class _Holder:
    def swap(self):
        return _Scorer()

    def close(self):
        pass


def _prepared(i: int, item: str, kind: str = "view") -> Prepared:
    record = {"event_id": f"e{i}", "user_id": "p" * 32, "session_id": None, "item_id": item,
              "event_type": kind, "ts": T0, "query": None, "category_id": None}
    return Prepared(record, 0.0, T0, 0, i, raw=json.dumps({"i": i}).encode(), topic="clicks")


def _pipeline(dlq: _Topic, scored: _Topic, scorer: object | None = None) -> Pipeline:
    holder = _Holder()
    if scorer is not None:
        holder.swap = lambda: scorer
    pipeline = Pipeline(Settings(), scored_topic=scored, dlq_topic=dlq, sessions={}, holder=holder,
                        metrics=WorkerMetrics())
    pipeline._items = lambda item_id: steps.item_features_from_counts(0, 0, 0)
    return pipeline


def test_a_record_the_model_cannot_score_is_dead_lettered_and_the_rest_scored():
    dlq, scored = _Topic(), _Topic()
    pipeline = _pipeline(dlq, scored)
    batch = [_prepared(0, "a"), _prepared(1, "boom"), _prepared(2, "b")]
    asyncio.run(pipeline._score_batch(batch))
    assert [json.loads(v)["event_id"] for v in scored.values] == ["e0", "e2"]
    [entry] = [json.loads(v) for v in dlq.values]
    assert entry["step"] == steps.STEP_SCORE and entry["reason_code"] == "score_error"
    assert entry["source"]["offset"] == 1 and len(entry["reasons"][0]) <= 512
    assert pipeline.last_offsets == {0: 2}
    pipeline.close()


class _BrokenScorer(_Scorer):
    def score(self, records):
        raise ValueError("encoder statistics have the wrong shape")


def test_a_model_that_fails_on_every_record_is_an_infrastructure_failure():
    dlq, scored = _Topic(), _Topic()
    pipeline = _pipeline(dlq, scored, _BrokenScorer())
    with pytest.raises(ModelError, match="known-good"):
        asyncio.run(pipeline._score_batch([_prepared(0, "a"), _prepared(1, "b")]))
    assert dlq.values == [] and scored.values == []  # nothing acked: the restart reads the batch again
    pipeline.close()


def test_a_refused_entry_is_replaced_by_the_minimal_one():
    dlq, scored = _Topic(limit=300), _Topic()
    pipeline = _pipeline(dlq, scored)
    asyncio.run(pipeline._score_batch([_prepared(7, "boom")]))
    [entry] = [json.loads(v) for v in dlq.values]
    assert entry["raw"] is None and entry["reason_code"] == "score_error" and entry["raw_sha256"]
    assert entry["source"] == {"topic": "clicks", "partition": 0, "offset": 7}
    pipeline.close()


def test_events_that_are_not_views_pass_unscored():
    dlq, scored = _Topic(), _Topic()
    pipeline = _pipeline(dlq, scored)
    asyncio.run(pipeline._score_batch([_prepared(0, "a"), _prepared(1, "boom", "add_to_cart")]))
    out = {v["event_id"]: v for v in map(json.loads, scored.values)}
    assert out["e0"]["score"] == 0.5 and out["e1"]["score"] is None and out["e1"]["model_version"] == "1"
    assert dlq.values == []
    pipeline.close()
