"""Stream benchmark: the worker against its ceilings and peers on one backlog, one broker.

usage: python -m bench.stream [--events 50000] [--rounds 3] [--rate-seconds 30] [--fast-seconds 20]
       (needs a propensity champion in SHOPFLOW_MODELS__REGISTRY_ROOT; the item snapshot
       is read from the lake when there is one; the Quix peer needs bash bench/quix_env.sh)

Starts an embedded broker on a free port, produces `--events` Taobao clicks once on the
clicks partitions, and lets each system consume that whole backlog with its own group and
output topic, `--rounds` times, interleaved (A, B, Faust, Quix, worker, then again), so
that a slow spell of a shared machine hits every system alike. Each system's figure is its
best round (the least disturbed one), with the median, the spread and every round listed.
Prints ONE JSON line, events/s:
  ceiling_a           aiokafka consume -> produce, no work (bench.stream_peers)
  ceiling_b           the worker's own per-batch code (stream.pipeline) in a bare aiokafka
                      loop: parse, validate, pseudonymize, enrich, encode, score,
                      serialize, produce, session changelog (bench.steps_ceiling)
  faust_passthrough   a Faust agent sending each micro-batch with the producer's batch API
  quix                Quix Streams with per-user state and changelog (its own venv), or
                      {"skipped": why}
  worker              `shopflow worker` as a subprocess, timed from the broker timestamps of
                      its outputs after its first micro-batch (start-up excluded)
  ratios              worker / each ceiling and peer
  latency_ms          p50/p99 click produce -> scored_at with the log replayed at ~14 ev/s
                      (the slice's real rate) and at 20x, on a fresh worker
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from bench import stream_peers as peers
from bench.local import free_port, settings_with
from shared.schemas import parse_timestamp

REPO_ROOT = Path(__file__).resolve().parent.parent
REAL_RATE = 14.0  # events/s of the full Taobao slice (the data README)
BACKLOG = "bench-backlog"


def _read_all(settings, topic: str, expect: int, timeout: float) -> list[Any]:
    return peers.read_topic(settings.kafka.bootstrap_servers, topic, expect, timeout)


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
    clicks = {
        json.loads(r.value)["event_id"]: r.timestamp / 1000.0
        for r in _read_all(settings, settings.kafka.clicks_topic, 0, 5)
    }
    scored_at = {eid: parse_timestamp(v["scored_at"]).timestamp() for eid, v in scored.items()}
    latency = np.array([scored_at[eid] - clicks[eid] for eid in scored_at if eid in clicks]) * 1000.0
    last = max(scored_at.values()) if scored_at else time.time()
    return {
        "events": len(events),
        "scored": len(scored),
        "events_per_s": round(len(scored) / max(1e-9, last - started), 1),
        "p50_ms": round(float(np.percentile(latency, 50)), 1) if len(latency) else None,
        "p99_ms": round(float(np.percentile(latency, 99)), 1) if len(latency) else None,
    }


def _worker_env(env: dict[str, str], tag: str, clicks: str) -> dict[str, str]:
    """The worker's settings on its own topics and group (`clicks` is its input)."""
    return {
        **env,
        "SHOPFLOW_STREAM__APP_ID": f"bench-{tag}",
        "SHOPFLOW_KAFKA__CLICKS_TOPIC": clicks,
        "SHOPFLOW_KAFKA__SCORED_TOPIC": f"{tag}.scored",
        "SHOPFLOW_KAFKA__DLQ_TOPIC": f"{tag}.dlq",
        "SHOPFLOW_KAFKA__MODELS_TOPIC": f"{tag}.models",
    }


def _worker_backlog(env: dict[str, str], expect: int, work: Path, tag: str) -> dict[str, Any]:
    """The worker consuming the backlog: events/s from its outputs' broker timestamps,
    leaving out its first micro-batch (group join, first fetch, warm-up)."""
    from stream.broker import ensure_topics
    from stream.topics import required_topics
    from stream.worker import spawn, terminate

    env = _worker_env(env, tag, BACKLOG)
    settings = settings_with(env)
    ensure_topics(settings.kafka.bootstrap_servers, [t for t in required_topics(settings) if t.name != BACKLOG])
    log_path = work / f"{tag}-backlog.log"
    worker = spawn(env, log_path)
    try:
        out = _read_all(settings, settings.kafka.scored_topic, expect, 300)
    finally:
        terminate(worker)
    if len(out) < expect:
        raise SystemExit(f"the worker scored {len(out)} of {expect} events; see {log_path}")
    peers.check_output(settings.kafka.bootstrap_servers, settings.kafka.scored_topic, expect, "the worker")
    stamps = sorted(r.timestamp / 1000.0 for r in out)
    skip = min(settings.stream.batch_max_events, len(stamps) - 2)
    seconds = stamps[-1] - stamps[skip]
    return {
        "events": len(out),
        "seconds": round(seconds, 3),
        "events_per_s": round((len(out) - skip - 1) / seconds, 1),
        "batch_max_events": settings.stream.batch_max_events,
        "score_part_events": settings.stream.score_part_events,
    }


def _latency(env: dict[str, str], events: list[dict[str, Any]], args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """p50/p99 produce -> scored at the real rate and at 20x, on a fresh worker and topics."""
    from stream.broker import ensure_topics
    from stream.topics import required_topics
    from stream.worker import spawn, terminate

    env = _worker_env(env, "latency", "latency.clicks")
    settings = settings_with(env)
    ensure_topics(settings.kafka.bootstrap_servers, required_topics(settings))
    span = (events[-1]["ts"] - events[0]["ts"]).total_seconds()
    file_rate = len(events) / span
    worker = spawn(env, work / "worker-latency.log")
    try:
        time.sleep(1.0)
        warm = _phase(settings, events[-300:], None, 60)  # group join, first batch; not measured
        if warm["scored"] < 300:
            raise SystemExit(f"the worker did not score the warm-up; see {work / 'worker-latency.log'}")
        n_rate = int(REAL_RATE * args.rate_seconds)
        real = _phase(settings, events[:n_rate], REAL_RATE / file_rate, args.rate_seconds + 60)
        n_fast = int(20 * REAL_RATE * args.fast_seconds)
        fast = _phase(settings, events[n_rate : n_rate + n_fast], 20 * REAL_RATE / file_rate, args.fast_seconds + 60)
        alive = worker.poll() is None
    finally:
        terminate(worker)
    return {"real_rate": real, "x20": fast, "worker_alive_at_end": alive}


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def _best_of(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One system's rounds summed up: its best events/s, the median and spread, every round."""
    rates = [r["events_per_s"] for r in rounds]
    return {
        "events_per_s": max(rates),
        "median": round(statistics.median(rates), 1),
        "min": min(rates),
        "rounds": rounds,
    }


def _backlog_round(
    settings: Any, env: dict[str, str], i: int, keys: Counter[bytes], work: Path, with_quix: bool
) -> dict[str, Any]:
    """Round `i`: every system consumes the whole backlog on its own group and output topics."""
    from bench.steps_ceiling import steps_loop
    from stream import broker
    from stream.topics import TopicSpec

    bootstrap, partitions, n = settings.kafka.bootstrap_servers, settings.kafka.partitions, sum(keys.values())
    a_out, b_out, faust_out = f"bench-a{i}.out", f"bench-b{i}.out", f"bench-faust{i}.out"
    topics = [a_out, b_out, f"{b_out}-changelog", f"{b_out}-dlq", faust_out]
    broker.ensure_topics(bootstrap, [TopicSpec(t, partitions, peers.TOPIC_CONFIGS) for t in topics])
    result: dict[str, Any] = {}
    result["ceiling_a"] = asyncio.run(
        peers.aiokafka_passthrough(bootstrap, BACKLOG, a_out, expect=n, group=f"bench-a{i}")
    )
    result["ceiling_b"] = asyncio.run(steps_loop(settings, BACKLOG, b_out, expect=n, group=f"bench-b{i}"))
    peers.check_output(bootstrap, b_out, n, "ceiling B", keys=None)
    result["faust_passthrough"] = peers.faust_passthrough(
        bootstrap, BACKLOG, faust_out, expect=n, group=f"bench-faust{i}", partitions=partitions, keys=keys, log_dir=work
    )
    if with_quix:
        result["quix"] = peers.quix_peer(
            bootstrap, BACKLOG, expect=n, group=f"bench-quix{i}", partitions=partitions, keys=keys
        )
    result["worker"] = _worker_backlog(env, n, work, f"worker{i}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.stream", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000, help="backlog size (Taobao clicks)")
    parser.add_argument("--rounds", type=int, default=3, help="backlog runs of each system; the best is reported")
    parser.add_argument("--rate-seconds", type=float, default=30.0, help="length of the ~14 ev/s phase")
    parser.add_argument("--fast-seconds", type=float, default=20.0, help="length of the 20x phase")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")

    from shared.schemas import to_wire
    from stream import broker
    from stream.replay import load_events
    from stream.topics import TopicSpec

    work = Path(tempfile.mkdtemp(prefix="shopflow-bench-"))
    env = {
        "SHOPFLOW_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "SHOPFLOW_STREAM__RUN_DIR": str(work / "run"),
        "SHOPFLOW_STREAM__METRICS_PORT": str(free_port()),
        "SHOPFLOW_LOG_LEVEL": "WARNING",
    }
    settings = settings_with(env)
    bootstrap, partitions = settings.kafka.bootstrap_servers, settings.kafka.partitions
    events = load_events("taobao", settings.data_root)
    backlog = events[: args.events]
    records = [(e["user_id"].encode("utf-8"), to_wire(e)) for e in backlog]
    keys = Counter(key for key, _ in records)
    n = len(records)

    quix_skipped = peers.quix_unavailable()
    broker.start(settings)
    try:
        broker.ensure_topics(bootstrap, [TopicSpec(BACKLOG, partitions, peers.TOPIC_CONFIGS)])
        peers.produce_backlog(bootstrap, BACKLOG, records, partitions)
        rounds = [_backlog_round(settings, env, i, keys, work, with_quix=not quix_skipped) for i in range(args.rounds)]
        latency = _latency(env, events[args.events :], args, work)
    finally:
        broker.stop(settings)

    systems = {name: _best_of([r[name] for r in rounds]) for name in rounds[0]}
    ceiling_a, ceiling_b, faust, worker = (
        systems[k] for k in ("ceiling_a", "ceiling_b", "faust_passthrough", "worker")
    )
    quix = systems.get("quix", {"skipped": quix_skipped})
    rates = {
        "ceiling_a": ceiling_a["events_per_s"],
        "ceiling_b": ceiling_b["events_per_s"],
        "faust_passthrough": faust["events_per_s"],
        "quix": quix.get("events_per_s"),
    }
    print(
        json.dumps(
            {
                "bench": "stream",
                "host": {"cpus": os.cpu_count(), "machine": platform.machine()},
                "backlog_events": n,
                "partitions": partitions,
                "rounds": args.rounds,
                "worker_events_per_s": worker["events_per_s"],
                "ceiling_b_events_per_s": ceiling_b["events_per_s"],
                "ratios": {f"worker/{name}": _ratio(worker["events_per_s"], rate) for name, rate in rates.items()}
                | {"ceiling_b/ceiling_a": _ratio(ceiling_b["events_per_s"], ceiling_a["events_per_s"])},
                "ceiling_a": ceiling_a,
                "ceiling_b": ceiling_b,
                "faust_passthrough": faust,
                "quix": quix,
                "worker": worker,
                "latency_ms": latency,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
