"""Faults the worker must survive: kill -9 mid-stream, and a first start on a backlog.

Broker restarts under a running worker have their own module,
tests/integration/test_stream_broker_restart.py (one broker per test).
"""

from __future__ import annotations

import collections
import os
import signal

import pytest

from stream.replay import replay
from tests.integration import kit

pytestmark = pytest.mark.integration


def test_kill_9_mid_stream_loses_no_event(stream_env, taobao_events, tmp_path):
    settings = kit.settings_from(stream_env)
    port = int(stream_env["SHOPFLOW_STREAM__METRICS_PORT"])
    events = taobao_events[10_000:14_000]
    worker = kit.start_worker(stream_env, tmp_path / "worker-1.log")
    try:
        kit.wait_serving(port, worker)
        replay(events, settings, speed=None, progress=False)
        # Kill while a good part, but not all, of the stream is scored.
        kit.wait_for(
            lambda: kit.metric_value(kit.metrics_text(port), "shopflow_stream_scored_total") >= 800,
            60,
            interval=0.05,
            what="800 scored events",
        )
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
        assert worker.returncode == -signal.SIGKILL
        before = kit.read_topic(settings, settings.kafka.scored_topic, expect=len(events), timeout=3)
        assert len(before) < len(events), "the kill came too late to test anything"
    finally:
        kit.stop_worker(worker)

    restarted = kit.start_worker(stream_env, tmp_path / "worker-2.log")
    try:
        kit.wait_serving(port, restarted)
        scored = kit.wait_all_scored(settings, events, 120)
        assert restarted.poll() is None
    finally:
        kit.stop_worker(restarted)

    assert {v["event_id"] for v in scored} == {e["event_id"] for e in events}  # none lost or invented
    # At-least-once: events in flight at the kill are scored again, with the same features
    # (the session table remembers recent event ids) and so the same score.
    by_id = collections.defaultdict(set)
    for v in scored:
        by_id[v["event_id"]].add(None if v["score"] is None else round(v["score"], 6))
    assert all(len(scores) == 1 for scores in by_id.values())
    assert kit.read_topic(settings, settings.kafka.dlq_topic, expect=1, timeout=1) == []


def test_first_start_on_a_backlog_scores_every_event(stream_env, taobao_events, tmp_path):
    """A new consumer group (no committed offsets) started on a full topic reads it all."""
    settings = kit.settings_from(stream_env)
    port = int(stream_env["SHOPFLOW_STREAM__METRICS_PORT"])
    events = taobao_events[30_000:33_000]
    replay(events, settings, speed=None, progress=False)
    worker = kit.start_worker(stream_env, tmp_path / "worker.log")
    try:
        kit.wait_serving(port, worker)
        scored = kit.wait_all_scored(settings, events, 60)
        assert worker.poll() is None
    finally:
        kit.stop_worker(worker)
    assert {v["event_id"] for v in scored} == {e["event_id"] for e in events}
