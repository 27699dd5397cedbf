"""Soak bench: many distinct users through a real broker and worker, with session expiry and without.

usage: python -m bench.soak [--users 200000] [--hours-per-million 10] [--skip-baseline]
       (uses the propensity champion in SHOPFLOW_MODELS__REGISTRY_ROOT when there is one,
       else registers an untrained one in a scratch registry: the model is not what is measured)

Starts an embedded broker on a free port and sends `--users` view events, one per user
(each a user never seen before), spread over event time as 1,000,000 users over
`--hours-per-million` hours would be (about 50,000 users active in any 30 minutes at the
default, whatever `--users`), in ten slices. After each slice it waits until the worker
has scored it and samples the worker's resident memory (RSS, /proc) and its live session
entries (the `shopflow_stream_session_entries` gauge). Then it stops the worker, starts a
new one on the same topics and times restart-to-serving: from the new process's start
to the first new event scored, with the table restore inside it (the worker logs how long
that took). All of this twice on their own topics and groups, in the same run: with
expiry (the default settings) and with `SHOPFLOW_STREAM__SESSION_RETENTION_SECONDS=0`,
the baseline that keeps every entry. Prints ONE JSON line.

Goals (issue: months, not minutes): RSS growth under 300 MB and restart-to-serving under
10 s at 1,000,000 users.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from bench import stream_peers as peers
from bench.local import free_port, settings_with

T0 = datetime(2017, 11, 25, tzinfo=timezone.utc)
SLICES = 10


def _events(count: int, first: int, total: int, span: timedelta) -> list[dict[str, Any]]:
    """Users first..first+count of `total`, one view each, at their place in `span`."""
    rng = random.Random(first)
    return [
        {
            "event_id": f"soak-{n}",
            "user_id": f"soak-user-{n}",
            "session_id": None,
            "item_id": str(rng.randint(1, 50_000)),
            "event_type": "view",
            "ts": T0 + span * (n / total),
            "query": None,
            "category_id": str(rng.randint(1, 500)),
        }
        for n in range(first, first + count)
    ]


def _metric(port: int, name: str) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            page = resp.read().decode()
    except OSError:
        return None
    total = None
    for line in page.splitlines():
        head, _, value = line.rpartition(" ")
        if head == name or head.startswith(name + "{"):
            total = (total or 0.0) + float(value)
    return total


def _wait(check, timeout: float, what: str, proc) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the worker exited ({proc.returncode}) while waiting for {what}")
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise SystemExit(f"no VmRSS for process {pid}")


def _champion_registry(work: Path) -> str | None:
    """A scratch registry with an untrained propensity champion, when the settings' has none."""
    from shared.registry import ModelRegistry
    from shared.settings import Settings
    from shared.tasks import get_task
    from stream.sessions import fold
    from stream.steps import item_features_from_counts

    if ModelRegistry(Settings().models.registry_root).resolve("propensity") is not None:
        return None
    records = []
    for event in _events(200, 0, 200, timedelta(minutes=10)):
        _, features, _ = fold(None, event)
        records.append({**event, **features, **item_features_from_counts(0, 0, 0)})
    task = get_task("propensity")
    model, encoder = task.build("", records)
    task.save(model, encoder, work / "model")
    root = work / "registry"
    registry = ModelRegistry(root)
    version = registry.register("propensity", work / "model", {"base_model": task.base_model_name(""), "metrics": {}})
    registry.flip_alias("propensity", version)
    return str(root)


def _soak(env: dict[str, str], users: int, span: timedelta, work: Path, tag: str) -> dict[str, Any]:
    """One worker through `users` new users, sampled every tenth; then a restart."""
    from shared.schemas import to_wire
    from stream.broker import ensure_topics
    from stream.topics import required_topics
    from stream.worker import spawn, terminate

    settings = settings_with(env)
    bootstrap, partitions, port = (
        settings.kafka.bootstrap_servers,
        settings.kafka.partitions,
        settings.stream.metrics_port,
    )
    ensure_topics(bootstrap, required_topics(settings))
    log = work / f"{tag}-worker.log"
    worker = spawn(env, log)
    samples = []
    try:
        _wait(lambda: _metric(port, "shopflow_stream_serving_model"), 120, "the worker to serve", worker)
        time.sleep(2.0)  # group join and an empty first fetch
        samples.append({"users": 0, "rss_mb": _rss_mb(worker.pid), "live_entries": 0})
        per_slice = -(-users // SLICES)
        sent, started = 0, time.monotonic()
        for first in range(0, users, per_slice):
            events = _events(min(per_slice, users - first), first, users, span)
            peers.produce_backlog(
                bootstrap,
                settings.kafka.clicks_topic,
                [(e["user_id"].encode(), to_wire(e)) for e in events],
                partitions,
            )
            sent += len(events)
            _wait(
                lambda sent=sent: (_metric(port, "shopflow_stream_scored_total") or 0) >= sent,
                600,
                f"{sent} events scored",
                worker,
            )
            samples.append(
                {
                    "users": sent,
                    "rss_mb": _rss_mb(worker.pid),
                    "live_entries": int(_metric(port, "shopflow_stream_session_entries") or 0),
                    "expired": int(_metric(port, "shopflow_stream_sessions_expired_total") or 0),
                    "seconds": round(time.monotonic() - started, 1),
                }
            )
            print(f"{tag}: {json.dumps(samples[-1])}", file=sys.stderr, flush=True)
    finally:
        terminate(worker, timeout=60)

    # Restart: from the new process's start to the first new event scored.
    probe = _events(1, users, users, span)[0]
    started = time.monotonic()
    worker = spawn(env, work / f"{tag}-restart.log")
    try:
        peers.produce_backlog(bootstrap, settings.kafka.clicks_topic, [(b"probe", to_wire(probe))], partitions)
        _wait(lambda: _metric(port, "shopflow_stream_serving_model"), 600, "the restarted worker's metrics", worker)
        process_s = time.monotonic() - started
        _wait(lambda: (_metric(port, "shopflow_stream_scored_total") or 0) >= 1, 600, "the restarted worker", worker)
        restart_s = time.monotonic() - started
        rss_after = _rss_mb(worker.pid)
        live_after = int(_metric(port, "shopflow_stream_session_entries") or 0)
        restored = {
            outcome: int(_metric(port, f'shopflow_stream_sessions_restored_total{{outcome="{outcome}"}}') or 0)
            for outcome in ("live", "skipped")
        }
        restore_s = _metric(port, "shopflow_stream_session_restore_seconds")
        restored["records_read"] = int(_metric(port, "shopflow_stream_session_restore_records_total") or 0)
    finally:
        terminate(worker, timeout=60)
    return {
        "samples": samples,
        "rss_growth_mb": round(samples[-1]["rss_mb"] - samples[0]["rss_mb"], 1),
        "events_per_s": round(users / max(1e-9, samples[-1]["seconds"]), 1),
        "restart_to_serving_s": round(restart_s, 2),
        # the new process up to its metrics page (imports, model and snapshot loaded)
        "restart_process_start_s": round(process_s, 2),
        "restore": {
            "seconds": None if restore_s is None else round(restore_s, 3),
            "live_entries": restored["live"],
            "skipped_expired": restored["skipped"],
            "changelog_records_read": restored["records_read"],
            "records_per_s": round(restored["records_read"] / restore_s) if restore_s else None,
        },
        "after_restart": {"rss_mb": rss_after, "live_entries": live_after},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=200_000, help="distinct users (one view each)")
    parser.add_argument(
        "--hours-per-million", type=float, default=10.0, help="event-time span of 1,000,000 users (hours)"
    )
    parser.add_argument("--skip-baseline", action="store_true", help="only the run with expiry")
    args = parser.parse_args(argv)
    if args.users < SLICES:
        parser.error(f"--users must be at least {SLICES}")

    from stream import broker

    work = Path(tempfile.mkdtemp(prefix="shopflow-soak-"))
    env = {
        "SHOPFLOW_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "SHOPFLOW_STREAM__RUN_DIR": str(work / "run"),
        "SHOPFLOW_LOG_LEVEL": "WARNING",
    }
    registry = _champion_registry(work)
    if registry:
        env["SHOPFLOW_MODELS__REGISTRY_ROOT"] = registry
    span = timedelta(hours=args.hours_per_million * args.users / 1_000_000)
    settings = settings_with(env)
    runs: dict[str, Any] = {}
    broker.start(settings)
    try:
        modes = {"expiry": {}, "baseline_no_expiry": {"SHOPFLOW_STREAM__SESSION_RETENTION_SECONDS": "0"}}
        if args.skip_baseline:
            del modes["baseline_no_expiry"]
        for tag, extra in modes.items():
            run_env = {
                **env,
                **extra,
                "SHOPFLOW_STREAM__APP_ID": f"soak-{tag}",
                "SHOPFLOW_KAFKA__CLICKS_TOPIC": f"soak-{tag}.clicks",
                "SHOPFLOW_KAFKA__SCORED_TOPIC": f"soak-{tag}.scored",
                "SHOPFLOW_KAFKA__DLQ_TOPIC": f"soak-{tag}.dlq",
                "SHOPFLOW_KAFKA__MODELS_TOPIC": f"soak-{tag}.models",
                "SHOPFLOW_STREAM__METRICS_PORT": str(free_port()),
            }
            runs[tag] = _soak(run_env, args.users, span, work, tag)
    finally:
        broker.stop(settings)
    print(
        json.dumps(
            {
                "bench": "soak",
                "host": {"cpus": os.cpu_count(), "machine": platform.machine()},
                "users": args.users,
                "event_time_hours": round(span.total_seconds() / 3600, 2),
                "retention_s": settings.stream.session_retention_seconds,
                "model": "untrained (scratch registry)" if registry else "the registry's champion",
                "logs": str(work),
                **runs,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
