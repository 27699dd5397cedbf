"""Records that once stopped the worker for good: each now
goes to the DLQ, the worker stays up, and the valid events sent after it are scored."""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime, timezone

import pytest

from shared.click_rules import ClickRejected, check_click_bytes
from shared.contract import DLQ_MAX_RAW_BYTES
from shared.contract.dead_letter import dlq_entry
from shared.redaction import Redactor
from shared.schemas import to_wire
from tests.integration import kit

pytestmark = pytest.mark.integration


class _Table(dict):
    """A dict with the one attribute of a Faust table the pipeline writes through."""

    @property
    def data(self) -> _Table:
        return self


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


def _redactor(env) -> Redactor:
    return Redactor(kit.settings_from(env).pseudonymization_key.get_secret_value().encode())


def test_an_oversized_record_is_dead_lettered_bounded(stream_env, tmp_path):
    big = os.urandom(300_000)
    _, dlq = _run(stream_env, tmp_path, [big])
    assert len(dlq) == 1
    entry = dlq[0]
    assert entry["raw_size"] == len(big) and entry["raw_truncated"] is True
    assert entry["raw_hmac_sha256"] == _redactor(stream_env).keyed_hash(big) and "raw_sha256" not in entry
    # Cut at the cap, so summarized: size of what was read, keyed hash, outline; no bytes.
    summary = json.loads(entry["raw"])
    assert entry["raw_encoding"] == "redacted-summary" and summary["form"] == "summary"
    assert summary["size"] == DLQ_MAX_RAW_BYTES and summary["truncated"] is True and len(entry["raw"]) < 1000
    assert entry["reason_code"] == "not_utf8" and entry["step"] == "parse_validate"
    assert all(len(r) <= 512 for r in entry["reasons"])


def test_lone_surrogates_are_dead_lettered(stream_env, tmp_path):
    _, dlq = _run(stream_env, tmp_path, [SURROGATE_USER, SURROGATE_ITEM])
    redactor = _redactor(stream_env)
    assert sorted(d["raw_hmac_sha256"] for d in dlq) == sorted(
        map(redactor.keyed_hash, [SURROGATE_USER, SURROGATE_ITEM])
    )
    assert sorted(d["raw"] for d in dlq) == sorted(map(redactor.click_value_text, [SURROGATE_USER, SURROGATE_ITEM]))
    assert all(d["reason_code"] == "not_utf8" and d["raw_truncated"] is False for d in dlq)


def test_an_entry_the_producer_refuses_is_replaced_by_the_minimal_one(broker_env):
    """The worker's own producer takes every bounded entry (a redacted record is a few KiB
    at most, under its 1 MB request limit), so a real producer with a smaller limit stands
    in for one that refuses: the full entry of a record of long fields (each kept cut) is
    refused by aiokafka, and the minimal one reaches the real broker through the same
    outbox, on the partition of the record it describes, before the batch returns."""
    import asyncio
    import time

    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from stream import steps
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
    # Parses (under the raw cap), rejected on 5 declared fields: its full entry keeps their outlines.
    fields = ("event_id", "item_id", "event_type", "query", "category_id")
    big = json.dumps({"user_id": "u", "ts": "2017-11-26T01:00:00Z", **{f: "x" * 5000 for f in fields}}).encode()
    with pytest.raises(ClickRejected) as rejected:
        check_click_bytes(big)
    # The producer's request limit lies between the two full entries: `big`'s is refused,
    # the unparseable record's (a short summary) and `big`'s minimal entry are taken.
    redactor = Redactor(settings.pseudonymization_key.get_secret_value().encode())

    def full_entry(raw: bytes, exc: Exception) -> bytes:
        code, reasons = steps.failure_reason(steps.STEP_PARSE, exc)
        return dlq_entry(
            raw,
            reasons,
            redactor=redactor,
            step=steps.STEP_PARSE,
            topic="clicks",
            partition=0,
            offset=0,
            failed_at=datetime.now(timezone.utc),
            reason_code=code,
            max_raw_bytes=settings.stream.dlq_max_raw_bytes,
        )

    with pytest.raises(ClickRejected) as unparseable:
        check_click_bytes(b"{not json")
    big_entry, small_entry = full_entry(big, rejected.value), full_entry(b"{not json", unparseable.value)
    limit = (len(big_entry) + len(small_entry)) // 2 + 100  # + the record's own framing
    assert len(big_entry) > limit + 100, (len(big_entry), len(small_entry))

    async def run() -> list:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks=-1, max_batch_size=16 * 1024, max_request_size=limit
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
            sessions=_Table(),
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
    assert minimal["raw"] is None and minimal["reasons"] == [] and minimal["reason_code"] == rejected.value.code
    assert minimal["raw_size"] == len(big) and minimal["raw_hmac_sha256"] == redactor.keyed_hash(big)
    assert minimal["source"] == {"topic": "clicks", "partition": 2, "offset": 40}
    assert full["raw"] == redactor.click_value_text(b"{not json") and full["reason_code"] == "not_json"
