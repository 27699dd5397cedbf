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
from shared.schemas import to_wire
from shared.settings import Settings
from stream import steps
from stream.metrics import WorkerMetrics
from stream.pipeline import Origin, Pipeline
from stream.sessions import changelog_record

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


class _Outbox:
    """The scored events and changelog records handed to the producer, by topic."""

    def __init__(self) -> None:
        self.sent: dict[str, list[tuple]] = {}

    async def send(self, topic, records):
        self.sent.setdefault(topic, []).extend(records)
        return []

    def values(self, topic: str) -> list[bytes]:
        return [value for _, _, value in self.sent.get(topic, [])]


class _Table(dict):
    @property
    def data(self):
        return self


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


def _event(i: int, item: str, kind: str = "view") -> tuple[bytes, Origin]:
    event = {
        "event_id": f"e{i}",
        "user_id": f"u{i % 2}",
        "session_id": None,
        "item_id": item,
        "event_type": kind,
        "ts": T0,
        "query": None,
        "category_id": None,
    }
    return to_wire(event), Origin("clicks", 0, i, 0.0)


def _run(pipeline: Pipeline, events: list[tuple[bytes, Origin]]) -> None:
    asyncio.run(pipeline._process([v for v, _ in events], [o for _, o in events]))


def _pipeline(dlq: _Topic, outbox: _Outbox, scorer: object | None = None) -> Pipeline:
    holder = _Holder()
    if scorer is not None:
        holder.swap = lambda: scorer
    pipeline = Pipeline(
        Settings(),
        outbox=outbox,
        scored_topic="clicks.scored",
        changelog_topic="changelog",
        changelog_record=changelog_record,
        dlq_topic=dlq,
        sessions=_Table(),
        holder=holder,
        metrics=WorkerMetrics(),
    )
    pipeline._items = lambda item_id: steps.item_features_from_counts(0, 0, 0)
    pipeline._ready.set()
    return pipeline


def test_a_record_the_model_cannot_score_is_dead_lettered_and_the_rest_scored():
    dlq, outbox = _Topic(), _Outbox()
    pipeline = _pipeline(dlq, outbox)
    _run(pipeline, [_event(0, "a"), _event(1, "boom"), _event(2, "b")])
    assert [json.loads(v)["event_id"] for v in outbox.values("clicks.scored")] == ["e0", "e2"]
    [entry] = [json.loads(v) for v in dlq.values]
    assert entry["step"] == steps.STEP_SCORE and entry["reason_code"] == "score_error"
    assert entry["source"]["offset"] == 1 and len(entry["reasons"][0]) <= 512
    assert pipeline.last_offsets == {0: 2}
    # Each user's entry once, with every event of the batch folded in (the failed one too:
    # its features were computed before scoring failed, and a replay reuses them).
    changelog = {json.loads(k): json.loads(v) for _, k, v in outbox.sent["changelog"]}
    assert len(outbox.sent["changelog"]) == len(changelog) == 2
    assert [row[0] for row in changelog[next(iter(changelog))]["recent"]] in (["e0", "e2"], ["e1"])
    pipeline.close()


def test_a_record_that_fails_validation_is_dead_lettered_with_its_code():
    dlq, outbox = _Topic(), _Outbox()
    pipeline = _pipeline(dlq, outbox)
    _run(pipeline, [_event(0, "a"), (b"{not json", Origin("clicks", 3, 9, 0.0))])
    [entry] = [json.loads(v) for v in dlq.values]
    assert entry["reason_code"] == "not_json" and entry["source"] == {"topic": "clicks", "partition": 3, "offset": 9}
    assert entry["raw"] == "{not json"
    assert [json.loads(v)["event_id"] for v in outbox.values("clicks.scored")] == ["e0"]
    assert pipeline.last_offsets == {0: 0, 3: 9}
    pipeline.close()


def test_a_batch_larger_than_a_part_keeps_its_order():
    dlq, outbox = _Topic(), _Outbox()
    pipeline = _pipeline(dlq, outbox)
    pipeline._part_size = 3
    _run(pipeline, [_event(i, "a", "view" if i % 3 else "add_to_cart") for i in range(11)])
    assert [json.loads(v)["event_id"] for v in outbox.values("clicks.scored")] == [f"e{i}" for i in range(11)]
    pipeline.close()


class _BrokenScorer(_Scorer):
    def score(self, records):
        raise ValueError("encoder statistics have the wrong shape")


def test_a_model_that_fails_on_every_record_is_an_infrastructure_failure():
    dlq, outbox = _Topic(), _Outbox()
    pipeline = _pipeline(dlq, outbox, _BrokenScorer())
    with pytest.raises(ModelError, match="known-good"):
        _run(pipeline, [_event(0, "a"), _event(1, "b")])
    # No output: the process ends (status 70) and the restart reads the batch again. The
    # session changelog went out before scoring: read again, the events are replays of
    # their entries and get the features they had (tests/unit/test_stream_sessions.py).
    assert dlq.values == [] and "clicks.scored" not in outbox.sent
    pipeline.close()


def test_a_refused_entry_is_replaced_by_the_minimal_one():
    dlq, outbox = _Topic(limit=600), _Outbox()  # the full entry is larger, the minimal one is not
    pipeline = _pipeline(dlq, outbox)
    _run(pipeline, [_event(7, "boom")])
    [entry] = [json.loads(v) for v in dlq.values]
    assert entry["raw"] is None and entry["reason_code"] == "score_error" and entry["raw_sha256"]
    assert entry["source"] == {"topic": "clicks", "partition": 0, "offset": 7}
    pipeline.close()


def test_events_that_are_not_views_pass_unscored():
    dlq, outbox = _Topic(), _Outbox()
    pipeline = _pipeline(dlq, outbox)
    _run(pipeline, [_event(0, "a"), _event(1, "boom", "add_to_cart")])
    out = {v["event_id"]: v for v in map(json.loads, outbox.values("clicks.scored"))}
    assert out["e0"]["score"] == 0.5 and out["e1"]["score"] is None and out["e1"]["model_version"] == "1"
    assert dlq.values == []
    pipeline.close()


def test_a_fast_model_is_scored_on_the_loop_and_a_slow_one_in_its_thread():
    import time as _time

    from stream.pipeline import _ScoringTime

    class _Slow(_Scorer):
        version = "2"

        def score(self, records):
            _time.sleep(0.002 * len(records))
            return np.full(len(records), 0.5)

    timing = _ScoringTime(inline_max_seconds=0.025)
    fast, slow = _Scorer(), _Slow()
    assert not timing.known(fast) and not timing.inline(fast, 1)  # untimed: the thread
    timing.timed(fast, [{"item_id": "a"}] * 32)
    timing.timed(slow, [{"item_id": "a"}] * 4)
    assert timing.inline(fast, 256)
    assert not timing.inline(slow, 256) and timing.inline(slow, 5)


def test_a_fast_model_scores_a_batch_in_one_call_and_a_slow_one_part_by_part():
    import time as _time

    class _Counting(_Scorer):
        def __init__(self, version: str, seconds_per_record: float) -> None:
            self.version, self.seconds, self.calls = version, seconds_per_record, []

        def score(self, records):
            self.calls.append(len(records))
            _time.sleep(self.seconds * len(records))
            return np.full(len(records), 0.5)

    events = [_event(i, "a", "view" if i % 3 else "add_to_cart") for i in range(11)]  # 7 views
    for scorer, calls in [(_Counting("fast", 0.0), [7]), (_Counting("slow", 0.01), [2, 2, 2, 1])]:
        dlq, outbox = _Topic(), _Outbox()
        pipeline = _pipeline(dlq, outbox, scorer)
        pipeline._part_size = 3
        _run(pipeline, events[:1])  # the first batch times the model on probe records
        scorer.calls.clear()
        _run(pipeline, events)
        assert scorer.calls == calls
        assert [json.loads(v)["event_id"] for v in outbox.values("clicks.scored")][1:] == [f"e{i}" for i in range(11)]
        pipeline.close()
