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
