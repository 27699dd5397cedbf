"""A worker survives a restart of the embedded broker in every state, without a restart.

Each test runs its own broker (a restart wipes the in-memory topics of every test on it),
restarts it under a worker that is fresh, has recovered its session table from a
non-empty changelog, has a batch in flight, or is in the middle of a rebalance, and
measures restart-to-serving: from the new broker answering (topics created) to every
event sent after the restart being on `clicks.scored`. Tansu keeps everything in memory,
so the worker must also say, once, that the broker lost its data.

    pytest tests/integration/test_stream_broker_restart.py -s     # prints the figures
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from stream import broker
from stream.pipeline import EXIT_AGENT_DIED
from stream.replay import replay
from tests.integration import kit

pytestmark = pytest.mark.integration

SERVE_AGAIN_WITHIN_S = 30.0
DATA_LOST_METRIC = "shopflow_stream_broker_data_lost_total"
DATA_LOST_LINE = "WARNING"  # with "lost its data", see _data_loss_lines


def _private_env(champion: dict, tmp_path: Path) -> dict[str, str]:
    return {
        "SHOPFLOW_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{kit.free_port()}",
        "SHOPFLOW_STREAM__RUN_DIR": str(tmp_path / "run"),
        "SHOPFLOW_STREAM__METRICS_PORT": str(kit.free_port()),
        "SHOPFLOW_MODELS__REGISTRY_ROOT": str(champion["registry_root"]),
    }


def _second_worker_env(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    return {
        **env,
        "SHOPFLOW_STREAM__METRICS_PORT": str(kit.free_port()),
        "SHOPFLOW_STREAM__RUN_DIR": str(tmp_path / "run-b"),
    }


def _restart_broker(settings) -> float:
    """`broker stop; broker start`; returns the monotonic time the new broker answered."""
    assert broker.stop(settings)
    broker.start(settings)  # a fresh, empty broker: start re-creates every topic
    return time.monotonic()


def _seconds_until_scored(settings, events: list[dict], since: float, limit: float = 120.0) -> float:
    """Seconds from `since` until every event is on the scored topic (fails after `limit`)."""
    wanted = {e["event_id"] for e in events}
    watcher = kit.TopicWatcher(settings, [settings.kafka.scored_topic])
    try:
        watcher.wait(
            lambda w: wanted <= {json.loads(v)["event_id"] for v in w.values[settings.kafka.scored_topic]},
            limit,
            what=f"all {len(wanted)} events sent after the broker restart to be scored",
        )
    finally:
        watcher.close()
    return time.monotonic() - since


def _data_loss_lines(log: Path) -> list[str]:
    return [
        line
        for line in log.read_text(errors="replace").splitlines()
        if DATA_LOST_LINE in line and "lost its data" in line
    ]


def _check_survived(
    state: str, workers: list, logs: list[Path], ports: list[int], elapsed: float, expect_loss: bool = True
) -> None:
    print(f"\nrestart-to-serving [{state}]: {elapsed:.1f} s")
    for worker, log in zip(workers, logs):
        assert worker.poll() is None, f"worker exited with {worker.returncode} after the broker restart; see {log}"
    assert elapsed <= SERVE_AGAIN_WITHIN_S, f"{state}: serving again took {elapsed:.1f} s"
    if expect_loss:
        # A worker can be scoring again before it hears that its group is gone (at its
        # next heartbeat or commit); it reports the loss when it rejoins.
        kit.wait_for(
            lambda: sum(kit.metric_value(kit.metrics_text(p), DATA_LOST_METRIC) for p in ports) >= 1,
            30,
            what="a worker to count the broker's lost data",
        )
        assert any(_data_loss_lines(log) for log in logs), "no worker logged the broker's lost data"
        for worker, log in zip(workers, logs):
            assert worker.poll() is None, f"worker exited with {worker.returncode}; see {log}"


def test_fresh_worker_survives_a_broker_restart(champion, taobao_events, tmp_path):
    """A first worker (its session table started empty) that has scored events."""
    env = _private_env(champion, tmp_path)
    settings = kit.settings_from(env)
    port = int(env["SHOPFLOW_STREAM__METRICS_PORT"])
    log = tmp_path / "worker.log"
    broker.start(settings)
    first, after = taobao_events[20_000:20_300], taobao_events[20_300:20_600]
    worker = kit.start_worker(env, log)
    try:
        kit.wait_serving(port, worker)
        replay(first, settings, speed=None, progress=False)
        kit.wait_all_scored(settings, first, 60)
        since = _restart_broker(settings)
        replay(after, settings, speed=None, progress=False)
        elapsed = _seconds_until_scored(settings, after, since)
        _check_survived("fresh", [worker], [log], [port], elapsed)
    finally:
        kit.stop_worker(worker)
        broker.stop(settings)


def test_idle_worker_reports_no_loss_after_a_broker_restart(champion, taobao_events, tmp_path):
    """Serving, nothing read yet: nothing is lost, so nothing is reported lost."""
    env = _private_env(champion, tmp_path)
    settings = kit.settings_from(env)
    port = int(env["SHOPFLOW_STREAM__METRICS_PORT"])
    log = tmp_path / "worker.log"
    broker.start(settings)
    worker = kit.start_worker(env, log)
    try:
        kit.wait_serving(port, worker)
        # Also the worker's torch default (two threads fight the event loop).
        assert kit.metric_value(kit.metrics_text(port), "shopflow_stream_torch_threads") == 1
        since = _restart_broker(settings)
        after = taobao_events[21_000:21_300]
        replay(after, settings, speed=None, progress=False)
        elapsed = _seconds_until_scored(settings, after, since)
        _check_survived("idle", [worker], [log], [port], elapsed, expect_loss=False)
        assert kit.metric_value(kit.metrics_text(port), DATA_LOST_METRIC) == 0
        assert not _data_loss_lines(log)
    finally:
        kit.stop_worker(worker)
        broker.stop(settings)


def test_worker_that_recovered_its_table_survives_a_broker_restart(champion, taobao_events, tmp_path):
    """This worker once exited 1 on Faust's ConsistencyError ("persisted
    offset ... > highwater -1"): its recovery remembered changelog offsets that the new,
    empty broker does not have."""
    env = _private_env(champion, tmp_path)
    settings = kit.settings_from(env)
    port = int(env["SHOPFLOW_STREAM__METRICS_PORT"])
    first_log, log = tmp_path / "worker-1.log", tmp_path / "worker-2.log"
    broker.start(settings)
    first, more, after = taobao_events[22_000:22_300], taobao_events[22_300:22_400], taobao_events[22_400:22_700]
    worker = kit.start_worker(env, first_log)
    try:
        kit.wait_serving(port, worker)
        replay(first, settings, speed=None, progress=False)
        kit.wait_all_scored(settings, first, 60)
    finally:
        assert kit.stop_worker(worker) == 0
    worker = kit.start_worker(env, log)
    try:
        kit.wait_serving(port, worker)
        replay(more, settings, speed=None, progress=False)
        kit.wait_all_scored(settings, more, 60)
        # the worker's own restore of its session table (stream.restore) read the changelog
        assert re.search(r"session table restored: [1-9]\d* changelog records", log.read_text()), "no table recovery"

        since = _restart_broker(settings)
        replay(after, settings, speed=None, progress=False)
        elapsed = _seconds_until_scored(settings, after, since)
        _check_survived("after a table recovery", [worker], [log], [port], elapsed)
    finally:
        kit.stop_worker(worker)
        broker.stop(settings)


def test_worker_with_a_batch_in_flight_survives_a_broker_restart(champion, taobao_events, tmp_path):
    env = _private_env(champion, tmp_path)
    settings = kit.settings_from(env)
    port = int(env["SHOPFLOW_STREAM__METRICS_PORT"])
    log = tmp_path / "worker.log"
    broker.start(settings)
    backlog, after = taobao_events[23_000:27_000], taobao_events[27_000:27_300]
    worker = kit.start_worker(env, log)
    try:
        kit.wait_serving(port, worker)
        replay(backlog, settings, speed=None, progress=False)
        kit.wait_for(
            lambda: kit.metric_value(kit.metrics_text(port), "shopflow_stream_scored_total") >= 300,
            60,
            interval=0.05,
            what="300 scored events",
        )
        scored = kit.metric_value(kit.metrics_text(port), "shopflow_stream_scored_total")
        assert scored < len(backlog), "the restart came too late: no batch was in flight"

        since = _restart_broker(settings)
        replay(after, settings, speed=None, progress=False)
        elapsed = _seconds_until_scored(settings, after, since)
        _check_survived("mid-batch", [worker], [log], [port], elapsed)
    finally:
        kit.stop_worker(worker)
        broker.stop(settings)


@pytest.mark.parametrize("change", ["joining", "leaving"])
def test_workers_in_a_rebalance_survive_a_broker_restart(champion, taobao_events, tmp_path, change):
    """A second worker joins (or leaves) the group, so a rebalance runs, when the broker restarts."""
    env = _private_env(champion, tmp_path)
    env_b = _second_worker_env(env, tmp_path)
    settings = kit.settings_from(env)
    ports = [int(env["SHOPFLOW_STREAM__METRICS_PORT"]), int(env_b["SHOPFLOW_STREAM__METRICS_PORT"])]
    logs = [tmp_path / "worker-a.log", tmp_path / "worker-b.log"]
    broker.start(settings)
    first, after = taobao_events[28_000:28_300], taobao_events[28_300:28_600]
    workers = [kit.start_worker(env, logs[0])]
    try:
        kit.wait_serving(ports[0], workers[0])
        if change == "leaving":
            workers.append(kit.start_worker(env_b, logs[1]))
            kit.wait_serving(ports[1], workers[1])
        replay(first, settings, speed=None, progress=False)
        kit.wait_all_scored(settings, first, 60)
        if change == "joining":
            workers.append(kit.start_worker(env_b, logs[1]))
            kit.wait_serving(ports[1], workers[1])  # its consumer is joining the group now
        else:
            assert kit.stop_worker(workers.pop()) == 0  # left the group: a rebalance starts
            logs.pop(), ports.pop()
        since = _restart_broker(settings)
        replay(after, settings, speed=None, progress=False)
        elapsed = _seconds_until_scored(settings, after, since)
        _check_survived(f"during a rebalance (worker {change})", workers, logs, ports, elapsed)
    finally:
        for worker in workers:
            kit.stop_worker(worker)
        broker.stop(settings)


def test_unrecoverable_broker_loss_exits_70(champion, taobao_events, tmp_path):
    """A broker that never comes back is an infrastructure failure: exit 70, not 1, no hang."""
    env = {**_private_env(champion, tmp_path), "SHOPFLOW_STREAM__BROKER_LOST_EXIT_SECONDS": "15"}
    settings = kit.settings_from(env)
    port = int(env["SHOPFLOW_STREAM__METRICS_PORT"])
    log = tmp_path / "worker.log"
    broker.start(settings)
    worker = kit.start_worker(env, log)
    try:
        kit.wait_serving(port, worker)
        assert broker.stop(settings)
        assert worker.wait(90) == EXIT_AGENT_DIED, log.read_text()[-3000:]
    finally:
        kit.stop_worker(worker)
        broker.stop(settings)
