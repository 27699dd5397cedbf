"""Records that once stopped the worker for good (issue 10, defects 1 and 2): each now
goes to the DLQ, the worker stays up, and the valid events sent after it are scored."""

from __future__ import annotations

import hashlib
import json
import os
import uuid

import pytest

from shared.contract import DLQ_MAX_RAW_BYTES
from shared.schemas import to_wire
from tests.integration import kit

pytestmark = pytest.mark.integration

SURROGATE_USER = (
    b'{"event_id":"sur-1","user_id":"\\ud800","item_id":"4625350","event_type":"view","ts":"2017-11-26T01:00:00Z"}'
)
SURROGATE_ITEM = (
    b'{"event_id":"sur-2","user_id":"u-sur","item_id":"\\udfff","event_type":"view","ts":"2017-11-26T01:00:00Z"}'
)


def _good(n: int) -> list[dict]:
    return [
        {
            "event_id": f"ok-{uuid.uuid4().hex[:12]}",
            "user_id": f"poison-user-{i % 3}",
            "item_id": "4625350",
            "event_type": "view",
            "ts": f"2017-11-26T01:00:{i:02d}Z",
            "session_id": None,
            "query": None,
            "category_id": "7",
        }
        for i in range(n)
    ]


def _run(stream_env, tmp_path, bad: list[bytes]) -> tuple[list[dict], list[dict]]:
    """Send `bad` then valid events; wait for every valid one to be scored; worker alive."""
    settings = kit.settings_from(stream_env)
    port = int(stream_env["SHOPFLOW_STREAM__METRICS_PORT"])
    good = _good(6)
    worker = kit.start_worker(stream_env, tmp_path / "worker.log")
    watcher = None
    try:
        kit.wait_serving(port, worker)
        watcher = kit.TopicWatcher(settings, [settings.kafka.scored_topic, settings.kafka.dlq_topic])
        # One key: every record lands on one partition, so the good ones queue behind the bad.
        kit.send_raw(settings, [(b"same-key", raw) for raw in bad] + [(b"same-key", to_wire(e)) for e in good])
        wanted = {e["event_id"] for e in good}

        def done(w: kit.TopicWatcher) -> bool:
            if worker.poll() is not None:
                raise AssertionError(
                    f"the worker exited with status {worker.returncode}: "
                    + (tmp_path / "worker.log").read_text()[-3000:]
                )
            scored = {json.loads(v)["event_id"] for v in w.values[settings.kafka.scored_topic]}
            return wanted <= scored and len(w.values[settings.kafka.dlq_topic]) >= len(bad)

        watcher.wait(done, 60, what="the bad records dead-lettered and the good ones scored")
        assert worker.poll() is None
        scored = [json.loads(v) for v in watcher.values[settings.kafka.scored_topic]]
        dlq = [json.loads(v) for v in watcher.values[settings.kafka.dlq_topic]]
    finally:
        if watcher:
            watcher.close()
        kit.stop_worker(worker)
    assert {s["event_id"] for s in scored} == {e["event_id"] for e in good}
    return scored, dlq


def test_an_oversized_record_is_dead_lettered_bounded(stream_env, tmp_path):
    big = os.urandom(300_000)
    _, dlq = _run(stream_env, tmp_path, [big])
    assert len(dlq) == 1
    entry = dlq[0]
    assert entry["raw_size"] == len(big) and entry["raw_truncated"] is True
    assert entry["raw_sha256"] == hashlib.sha256(big).hexdigest()
    assert big.startswith(entry["raw"].encode("latin-1")) and len(entry["raw"]) == DLQ_MAX_RAW_BYTES
    assert entry["reason_code"] == "not_utf8" and entry["step"] == "parse_validate"
    assert all(len(r) <= 512 for r in entry["reasons"])


def test_lone_surrogates_are_dead_lettered(stream_env, tmp_path):
    _, dlq = _run(stream_env, tmp_path, [SURROGATE_USER, SURROGATE_ITEM])
    assert sorted(d["raw"].encode("latin-1") for d in dlq) == sorted([SURROGATE_USER, SURROGATE_ITEM])
    assert all(d["reason_code"] == "not_utf8" and d["raw_truncated"] is False for d in dlq)


def test_an_entry_the_producer_refuses_is_replaced_by_the_minimal_one(broker_env):
    """The worker's own producer takes every bounded entry (6 x 128 KiB of escaped bytes is
    under its 1 MB request limit), so a real producer with a smaller limit stands in for
    one that refuses: the full entry of an oversized record is refused by aiokafka, and
    the minimal one reaches the real broker through the same outbox, on the partition of
    the record it describes, before the batch returns."""
    import asyncio
    import time

    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from stream.broker import ensure_topics
    from stream.metrics import WorkerMetrics
    from stream.outbox import Outbox
    from stream.pipeline import InputPosition, Pipeline
    from stream.scoring import ModelHolder
    from stream.sessions import changelog_record
    from stream.topics import TopicSpec

    tag = uuid.uuid4().hex[:8]
    dlq, scored, changelog = f"refused-{tag}.dlq", f"refused-{tag}.scored", f"refused-{tag}-changelog"
    settings = kit.settings_from(broker_env)
    bootstrap = settings.kafka.bootstrap_servers
    ensure_topics(bootstrap, [TopicSpec(t, 4) for t in (dlq, scored, changelog)])
    big = os.urandom(300_000)  # its full entry: 64 KiB of raw bytes, ~390 KB escaped

    async def run() -> list:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks=-1, max_batch_size=16 * 1024, max_request_size=100_000
        )
        await producer.start()
        holder = ModelHolder(resolve=lambda: None, load=lambda version: None)  # no record reaches scoring
        pipeline = Pipeline(
            settings,
            outbox=Outbox(lambda: producer),
            scored_topic=scored,
            changelog_topic=changelog,
            dlq_topic=dlq,
            changelog_record=changelog_record,
            sessions={},
            holder=holder,
            metrics=WorkerMetrics(),
        )
        pipeline._ready.set()  # no item snapshot: no record reaches enrichment
        try:
            now = time.time()
            await pipeline.process(
                [big, b"{not json"], [InputPosition("clicks", 2, 40, now), InputPosition("clicks", 1, 41, now)]
            )
            assert pipeline.last_offsets == {2: 40, 1: 41}
        finally:
            await producer.stop()
            pipeline.close()
        # Acknowledged before `process` returned: both entries are on the broker now.
        consumer = AIOKafkaConsumer(dlq, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest")
        await consumer.start()
        try:
            got = []
            deadline = time.monotonic() + 30
            while len(got) < 2 and time.monotonic() < deadline:
                got += [r for records in (await consumer.getmany(timeout_ms=500)).values() for r in records]
            return got
        finally:
            await consumer.stop()

    records = asyncio.run(run())
    entries = {r.partition: json.loads(r.value) for r in records}
    assert len(records) == 2 and set(entries) == {1, 2}
    minimal, full = entries[2], entries[1]
    assert minimal["raw"] is None and minimal["reasons"] == [] and minimal["reason_code"] == "not_utf8"
    assert minimal["raw_size"] == len(big) and minimal["raw_sha256"] == hashlib.sha256(big).hexdigest()
    assert minimal["source"] == {"topic": "clicks", "partition": 2, "offset": 40}
    assert full["raw"] == "{not json" and full["reason_code"] == "not_json"
