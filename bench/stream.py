"""Stream benchmark: end-to-end scoring throughput and latency against the raw model.

usage: python -m bench.stream [--events 6000] [--rate-seconds 30] [--fast-seconds 20]
       (needs a propensity champion in SHOPFLOW_MODELS__REGISTRY_ROOT)

Starts its own embedded broker on a free loopback port and the worker as a subprocess,
replays the Taobao log, and prints ONE JSON line:
  raw_model_events_per_s      champion.score() alone, batches of the worker's batch size
  e2e_events_per_s            replay as fast as possible -> every event in clicks.scored
  ratio                       e2e / raw (target >= 0.8); sustained target >= 280 ev/s
  latency_ms.real_rate/x20    p50/p99 of click produce time -> scored_at, with the log
                              replayed at ~14 ev/s (the full slice's real rate) and 20x
  torch_threads               the throughput phase (and the raw model) with the worker's
                              default of 1 torch intra-op thread and with 2, same run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
REAL_RATE = 14.0  # events/s of the full Taobao slice (the data README)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _settings(env: dict[str, str]):
    from shared.settings import Settings

    saved = dict(os.environ)
    os.environ.update(env)
    try:
        return Settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _raw_model_rate(settings, events: list[dict[str, Any]], batch: int, threads: int) -> tuple[float, str]:
    """Events/s of the champion's score() alone, on records the worker's steps built,
    with `threads` torch intra-op threads."""
    import torch

    from shared.predictor import load_predictor
    from shared.registry import ModelRegistry
    from stream import steps

    key = settings.pseudonymization_key.get_secret_value().encode()
    prior = steps.item_features_from_counts(0, 0, 0)
    entries: dict[str, Any] = {}
    records = []
    for event in events:
        record = steps.pseudonymize_user(event, key=key)
        entry, scoring, _ = steps.enrich(record, entries.get(record["user_id"]), lambda _: prior)
        entries[record["user_id"]] = entry
        records.append(scoring)
    predictor = load_predictor(settings.stream.model_task, registry=ModelRegistry(settings.models.registry_root))
    torch.set_num_threads(threads)
    predictor.score(records[:batch])  # warm-up
    started = time.perf_counter()
    for start in range(0, len(records), batch):
        predictor.score(records[start : start + batch])
    return len(records) / (time.perf_counter() - started), predictor.version


def _read_all(settings, topic: str, expect: int, timeout: float) -> list[Any]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers, group_id=None,
                             enable_auto_commit=False, auto_offset_reset="earliest")
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = [r for records in consumer.poll(timeout_ms=300).values() for r in records]
            out += got
            if len(out) >= expect and not got:
                break
        return out
    finally:
        consumer.close()


def _phase(settings, events: list[dict[str, Any]], speed: float | None, timeout: float) -> dict[str, Any]:
    """Replay `events`, wait until all are scored; latency from the clicks' record times."""
    from stream.replay import replay

    wanted = {e["event_id"] for e in events}
    started = time.time()
    replay(events, settings, speed=speed, progress=False)
    deadline = time.monotonic() + timeout
    scored: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline and not wanted <= set(scored):
        for record in _read_all(settings, settings.kafka.scored_topic, len(wanted), 5):
            value = json.loads(record.value)
            if value["event_id"] in wanted:
                scored.setdefault(value["event_id"], value)
    clicks = {json.loads(r.value)["event_id"]: r.timestamp / 1000.0
              for r in _read_all(settings, settings.kafka.clicks_topic, 0, 5)}
    scored_at = {eid: datetime.fromisoformat(v["scored_at"].replace("Z", "+00:00")).timestamp()
                 for eid, v in scored.items()}
    latency = np.array([scored_at[eid] - clicks[eid] for eid in scored_at if eid in clicks]) * 1000.0
    last = max(scored_at.values()) if scored_at else time.time()
    return {
        "events": len(events),
        "scored": len(scored),
        "events_per_s": round(len(scored) / max(1e-9, last - started), 1),
        "p50_ms": round(float(np.percentile(latency, 50)), 1) if len(latency) else None,
        "p99_ms": round(float(np.percentile(latency, 99)), 1) if len(latency) else None,
    }


def _start_worker(env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "stream.worker"], cwd=REPO_ROOT,
                            env={**os.environ, **env, "PYTHONPATH": str(REPO_ROOT)},
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT)


def _throughput_with_threads(env: dict[str, str], events: list[dict[str, Any]], n: int, threads: int,
                             work: Path) -> dict[str, Any]:
    """The throughput phase on a worker with `threads` torch threads, on its own topics
    and consumer group (so the main run below starts from clean topics)."""
    from stream.broker import ensure_topics
    from stream.topics import required_topics

    tag = f"t{threads}"
    env = {**env, "SHOPFLOW_STREAM__TORCH_THREADS": str(threads), "SHOPFLOW_STREAM__APP_ID": f"bench-{tag}",
           "SHOPFLOW_KAFKA__CLICKS_TOPIC": f"clicks-{tag}", "SHOPFLOW_KAFKA__SCORED_TOPIC": f"clicks-{tag}.scored",
           "SHOPFLOW_KAFKA__DLQ_TOPIC": f"clicks-{tag}.dlq", "SHOPFLOW_KAFKA__MODELS_TOPIC": f"models-{tag}"}
    settings = _settings(env)
    ensure_topics(settings.kafka.bootstrap_servers, required_topics(settings))
    worker = _start_worker(env, work / f"worker-{tag}.log")
    try:
        time.sleep(1.0)
        warm = _phase(settings, events[-300:], None, 60)
        if warm["scored"] < 300:
            raise SystemExit(f"worker did not score the warm-up; see {work / f'worker-{tag}.log'}")
        phase = _phase(settings, events[:n], None, 180)
    finally:
        worker.terminate()
        worker.wait(30)
    return {"e2e_events_per_s": phase["events_per_s"], "scored": phase["scored"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.stream", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=6000, help="events in the throughput phase")
    parser.add_argument("--rate-seconds", type=float, default=30.0, help="length of the ~14 ev/s phase")
    parser.add_argument("--fast-seconds", type=float, default=20.0, help="length of the 20x phase")
    args = parser.parse_args(argv)

    from stream import broker
    from stream.replay import load_events

    work = Path(tempfile.mkdtemp(prefix="shopflow-bench-"))
    env = {
        "SHOPFLOW_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{_free_port()}",
        "SHOPFLOW_STREAM__RUN_DIR": str(work / "run"),
        "SHOPFLOW_STREAM__METRICS_PORT": str(_free_port()),
        "SHOPFLOW_LOG_LEVEL": "WARNING",
    }
    settings = _settings(env)
    events = load_events("taobao", settings.data_root)
    span = (events[-1]["ts"] - events[0]["ts"]).total_seconds()
    file_rate = len(events) / span
    batch = settings.stream.batch_max_events

    default_threads = settings.stream.torch_threads or 1
    raw_2, _ = _raw_model_rate(settings, events[: args.events], batch, 2)
    raw_rate, version = _raw_model_rate(settings, events[: args.events], batch, default_threads)
    broker.start(settings)
    try:
        two_threads = _throughput_with_threads(env, events, args.events, 2, work)
    except BaseException:
        broker.stop(settings)
        raise
    worker = _start_worker(env, work / "worker.log")
    try:
        time.sleep(1.0)
        # Warm-up: group join, first batch; not measured.
        warm = _phase(settings, events[-300:], None, 60)
        if warm["scored"] < 300:
            raise SystemExit(f"worker did not score the warm-up; see {work / 'worker.log'}")
        start = 0
        throughput = _phase(settings, events[start : start + args.events], None, 180)
        start += args.events
        n_rate = int(REAL_RATE * args.rate_seconds)
        real = _phase(settings, events[start : start + n_rate], REAL_RATE / file_rate, args.rate_seconds + 60)
        start += n_rate
        n_fast = int(20 * REAL_RATE * args.fast_seconds)
        fast = _phase(settings, events[start : start + n_fast], 20 * REAL_RATE / file_rate, args.fast_seconds + 60)
        alive = worker.poll() is None
    finally:
        worker.terminate()
        worker.wait(30)
        broker.stop(settings)

    e2e = throughput["events_per_s"]
    print(json.dumps({
        "bench": "stream",
        "host": {"cpus": os.cpu_count(), "machine": platform.machine()},
        "model": {"task": settings.stream.model_task, "version": version},
        "batch_size": batch,
        "raw_model_events_per_s": round(raw_rate, 1),
        "e2e_events_per_s": e2e,
        "ratio": round(e2e / raw_rate, 3),
        "sustained_target_events_per_s": 20 * REAL_RATE,
        "throughput_phase": throughput,
        "latency_ms": {"real_rate": real, "x20": fast},
        "worker_alive_at_end": alive,
        "torch_threads": {
            str(default_threads): {"raw_model_events_per_s": round(raw_rate, 1), "e2e_events_per_s": e2e},
            "2": {"raw_model_events_per_s": round(raw_2, 1), **two_threads},
        },
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
