"""The dead-letter boundary of the per-batch steps, as pure logic: a scorer that fails on
one record, and a producer that refuses a dead-letter entry. Every output goes through
the real `Outbox`; the producer under it records what it is handed. (The real broker
and worker are exercised by tests/integration/test_stream_poison.py and
test_stream_fuzz.py; the producer and the scorer here are stand-ins because what is
tested is the pipeline's own logic and routing.)"""

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
from stream.outbox import Outbox
from stream.pipeline import InputPosition, Pipeline
from stream.sessions import changelog_record
from tests.record_batches import RecordBatch

T0 = datetime(2017, 11, 26, 1, tzinfo=timezone.utc)


class _Producer:
    """Records what reaches the broker, by topic: (partition, key, value). Refuses values
    the way aiokafka and a broker do: `send` raises at once for one over `request_limit`
    bytes; the broker refuses one over `broker_limit` (its acknowledgement fails). Its
    acknowledgements are done at once, or held until `release(topic)` when `hold`."""

    def __init__(self, request_limit=10**9, broker_limit=10**9, hold=False) -> None:
        self.sent: dict[str, list[tuple]] = {}
        self.request_limit, self.broker_limit = request_limit, broker_limit
        self.held: list[tuple[str, asyncio.Future]] | None = [] if hold else None

    async def partitions_for(self, topic):
        return {0}  # one partition: the scored events keep the batch's order

    def create_batch(self):
        return RecordBatch()

    def _ack(self, topic, partition, records) -> asyncio.Future:
        ack = asyncio.get_running_loop().create_future()
        if any(len(value) > self.broker_limit for _, value in records):
            ack.set_exception(RuntimeError("MessageSizeTooLargeError: the broker refused the batch"))
            return ack
        self.sent.setdefault(topic, []).extend((partition, key, value) for key, value in records)
        if self.held is None:
            ack.set_result(None)
        else:
            self.held.append((topic, ack))
        return ack

    async def send_batch(self, batch, topic, partition):
        return self._ack(topic, partition, batch.records)

    async def send(self, topic, value, key=None, partition=None):
        if len(value) > self.request_limit:
            raise RuntimeError("MessageSizeTooLargeError: the message is too large")
        return self._ack(topic, partition, [(key, value)])

    def release(self, *topics: str) -> None:
        for topic, ack in self.held:
            if topic in topics and not ack.done():
                ack.set_result(None)

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


def _event(i: int, item: str, kind: str = "view") -> tuple[bytes, InputPosition]:
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
    return to_wire(event), InputPosition("clicks", 0, i, 0.0)


def _run(pipeline: Pipeline, events: list[tuple[bytes, InputPosition]]) -> None:
    asyncio.run(pipeline._score_batch([v for v, _ in events], [o for _, o in events]))


def _pipeline(producer: _Producer, scorer: object | None = None) -> Pipeline:
    holder = _Holder()
    if scorer is not None:
        holder.swap = lambda: scorer
    pipeline = Pipeline(
        Settings(),
        outbox=Outbox(lambda: producer),
        scored_topic="clicks.scored",
        changelog_topic="changelog",
        dlq_topic="clicks.dlq",
        changelog_record=changelog_record,
        sessions=_Table(),
        holder=holder,
        metrics=WorkerMetrics(),
    )
    pipeline._ready.set()  # not loaded: no item snapshot, every item gets the zero-count prior
    return pipeline


def test_a_record_the_model_cannot_score_is_dead_lettered_and_the_rest_scored():
    producer = _Producer()
    pipeline = _pipeline(producer)
    _run(pipeline, [_event(0, "a"), _event(1, "boom"), _event(2, "b")])
    assert [json.loads(v)["event_id"] for v in producer.values("clicks.scored")] == ["e0", "e2"]
    [entry] = [json.loads(v) for v in producer.values("clicks.dlq")]
    assert entry["step"] == steps.STEP_SCORE and entry["reason_code"] == "score_error"
    assert entry["source"]["offset"] == 1 and len(entry["reasons"][0]) <= 512
    assert pipeline.last_offsets == {0: 2}
    # Each user's entry once, with every event of the batch folded in (the failed one too:
    # its features were computed before scoring failed, and a replay reuses them).
    changelog = {json.loads(k): json.loads(v) for _, k, v in producer.sent["changelog"]}
    assert len(producer.sent["changelog"]) == len(changelog) == 2
    assert [row[0] for row in changelog[next(iter(changelog))]["recent"]] in (["e0", "e2"], ["e1"])
    pipeline.close()


def test_a_record_that_fails_validation_is_dead_lettered_with_its_code():
    producer = _Producer()
    pipeline = _pipeline(producer)
    _run(pipeline, [_event(0, "a"), (b"{not json", InputPosition("clicks", 3, 9, 0.0))])
    [entry] = [json.loads(v) for v in producer.values("clicks.dlq")]
    assert entry["reason_code"] == "not_json" and entry["source"] == {"topic": "clicks", "partition": 3, "offset": 9}
    # Not JSON: kept only as a summary (size, keyed hash, outline), never its bytes.
    assert entry["raw_encoding"] == "redacted-summary" and json.loads(entry["raw"])["outline"] == "{aaa aaaa"
    assert [json.loads(v)["event_id"] for v in producer.values("clicks.scored")] == ["e0"]
    assert pipeline.last_offsets == {0: 0, 3: 9}
    pipeline.close()


def test_a_batch_larger_than_a_part_keeps_its_order():
    producer = _Producer()
    pipeline = _pipeline(producer)
    pipeline._part_size = 3
    _run(pipeline, [_event(i, "a", "view" if i % 3 else "add_to_cart") for i in range(11)])
    assert [json.loads(v)["event_id"] for v in producer.values("clicks.scored")] == [f"e{i}" for i in range(11)]
    pipeline.close()


class _BrokenScorer(_Scorer):
    def score(self, records):
        raise ValueError("encoder statistics have the wrong shape")


def test_a_model_that_fails_on_every_record_is_an_infrastructure_failure():
    producer = _Producer()
    pipeline = _pipeline(producer, _BrokenScorer())
    with pytest.raises(ModelError, match="known-good"):
        _run(pipeline, [_event(0, "a"), _event(1, "b")])
    # No output: the process ends (status 70) and the restart reads the batch again. The
    # session changelog went out before scoring: read again, the events are replays of
    # their entries and get the features they had (tests/unit/test_stream_sessions.py).
    assert "clicks.dlq" not in producer.sent and "clicks.scored" not in producer.sent
    pipeline.close()


# The full entry (the redacted value and its reason) is larger than 600 bytes, the minimal one is not.
@pytest.mark.parametrize(
    "refusing",
    [
        pytest.param({"request_limit": 600}, id="by-the-producer"),
        pytest.param({"broker_limit": 600}, id="by-the-broker"),
    ],
)
def test_a_refused_entry_is_replaced_by_the_minimal_one_on_the_same_way_out(refusing):
    producer = _Producer(**refusing)
    pipeline = _pipeline(producer)
    boom = _event(7, "boom")[0]
    _run(
        pipeline,
        [
            _event(6, "a"),
            (boom, InputPosition("clicks", 2, 7, 0.0)),
            (b"{not json", InputPosition("clicks", 3, 8, 0.0)),
        ],
    )
    # Every output went through the one outbox and producer; each dead letter on its input's partition.
    assert [json.loads(v)["event_id"] for v in producer.values("clicks.scored")] == ["e6"]
    minimal, small = sorted((json.loads(v) for v in producer.values("clicks.dlq")), key=lambda e: e["source"]["offset"])
    assert {(p, json.loads(v)["source"]["partition"]) for p, _, v in producer.sent["clicks.dlq"]} == {(2, 2), (3, 3)}
    assert minimal["raw"] is None and minimal["reasons"] == [] and minimal["reason_code"] == "score_error"
    assert minimal["raw_hmac_sha256"] and minimal["raw_size"] == len(boom)
    assert minimal["source"] == {"topic": "clicks", "partition": 2, "offset": 7}
    assert small["raw_encoding"] == "redacted-summary" and small["reason_code"] == "not_json"  # the full entry
    assert pipeline.last_offsets == {0: 6, 2: 7, 3: 8}
    pipeline.close()


def test_a_refused_minimal_entry_is_an_infrastructure_failure():
    producer = _Producer(broker_limit=100)  # smaller than any entry: the broker is at fault
    pipeline = _pipeline(producer)
    with pytest.raises(RuntimeError, match="MessageSizeTooLarge"):
        _run(pipeline, [(b"{not json", InputPosition("clicks", 0, 1, 0.0))])
    # The process ends (status 70) with the batch's offsets not moved: read again on restart.
    assert pipeline.last_offsets == {}
    pipeline.close()


def test_a_batch_is_done_only_once_every_output_is_acknowledged():
    async def scenario(pipeline: Pipeline, producer: _Producer) -> None:
        values, inputs = zip(*[_event(0, "a"), _event(1, "boom"), (b"{not json", InputPosition("clicks", 0, 2, 0.0))])
        batch = asyncio.ensure_future(pipeline._score_batch(list(values), list(inputs)))
        for _ in range(500):  # until every output is handed to the producer (the model runs in its thread)
            await asyncio.sleep(0.01)
            if len(producer.values("clicks.dlq")) == 2 and "clicks.scored" in producer.sent:
                break
        assert len(producer.values("clicks.scored")) == 1 and len(producer.values("changelog")) == 2  # u0, u1
        await asyncio.sleep(0.05)
        assert not batch.done() and pipeline.last_offsets == {}
        producer.release("clicks.scored", "changelog")
        await asyncio.sleep(0.05)
        assert not batch.done() and pipeline.last_offsets == {}  # the dead letters are not acknowledged yet
        producer.release("clicks.dlq")
        await batch
        assert pipeline.last_offsets == {0: 2}

    producer = _Producer(hold=True)
    pipeline = _pipeline(producer)
    asyncio.run(scenario(pipeline, producer))
    pipeline.close()


def test_events_that_are_not_views_pass_unscored():
    producer = _Producer()
    pipeline = _pipeline(producer)
    _run(pipeline, [_event(0, "a"), _event(1, "boom", "add_to_cart")])
    out = {v["event_id"]: v for v in map(json.loads, producer.values("clicks.scored"))}
    assert out["e0"]["score"] == 0.5 and out["e1"]["score"] is None and out["e1"]["model_version"] == "1"
    assert "clicks.dlq" not in producer.sent
    pipeline.close()


def test_a_fast_model_is_scored_on_the_loop_and_a_slow_one_in_its_thread():
    import time as _time

    from stream.model_runner import ScoringTime

    class _Slow(_Scorer):
        version = "2"

        def score(self, records):
            _time.sleep(0.002 * len(records))
            return np.full(len(records), 0.5)

    timing = ScoringTime(inline_max_seconds=0.025)
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
        producer = _Producer()
        pipeline = _pipeline(producer, scorer)
        pipeline._part_size = 3
        _run(pipeline, events[:1])  # the first batch times the model on probe records
        scorer.calls.clear()
        _run(pipeline, events)
        assert scorer.calls == calls
        assert [json.loads(v)["event_id"] for v in producer.values("clicks.scored")][1:] == [f"e{i}" for i in range(11)]
        pipeline.close()
