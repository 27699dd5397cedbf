"""Faults the worker must survive: kill -9 mid-stream, and the broker restarted under it."""

from __future__ import annotations

import collections
import os
import signal

import pytest

from stream import broker
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
        kit.wait_for(lambda: kit.metric_value(kit.metrics_text(port), "shopflow_stream_scored_total") >= 800,
                     60, interval=0.05, what="800 scored events")
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


def test_broker_restart_under_the_worker(champion, taobao_events, tmp_path):
    """Its own broker (a restart wipes the in-memory topics of every test on it)."""
    env = {
        "SHOPFLOW_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{kit.free_port()}",
        "SHOPFLOW_STREAM__RUN_DIR": str(tmp_path / "run"),
        "SHOPFLOW_STREAM__METRICS_PORT": str(kit.free_port()),
        "SHOPFLOW_MODELS__REGISTRY_ROOT": str(champion["registry_root"]),
    }
    settings = kit.settings_from(env)
    port = int(env["SHOPFLOW_STREAM__METRICS_PORT"])
    broker.start(settings)
    worker = kit.start_worker(env, tmp_path / "worker.log")
    try:
        kit.wait_serving(port, worker)
        first, second = taobao_events[20_000:20_300], taobao_events[20_300:20_600]
        replay(first, settings, speed=None, progress=False)
        assert len(kit.read_topic(settings, settings.kafka.scored_topic, expect=len(first), timeout=60)) == len(first)

        assert broker.stop(settings)
        broker.start(settings)  # a fresh, empty broker: start re-creates every topic
        restarted_at = kit.time.monotonic()
        wanted = {e["event_id"] for e in second}

        def serving_again():
            replay(second, settings, speed=None, progress=False)  # idempotent ids: resend is harmless
            got = kit.json_values(kit.read_topic(settings, settings.kafka.scored_topic,
                                                 expect=len(second), timeout=3))
            return wanted <= {v["event_id"] for v in got}

        kit.wait_for(serving_again, 30, interval=0.5, what="the worker to serve again after the broker restart")
        elapsed = kit.time.monotonic() - restarted_at
        assert worker.poll() is None, "the worker must survive the broker restart without a restart"
        assert elapsed <= 30
    finally:
        kit.stop_worker(worker)
        broker.stop(settings)
