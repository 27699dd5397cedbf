"""Helpers for the stream integration tests: ports, settings, a real model, subprocesses.

Everything here starts or reads the real thing (the embedded broker through
`stream.broker`, models through `shared.registry`, the worker as `python -m stream.worker`).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from shared.features import fold_user_events
from shared.pseudonymize import pseudonymize
from shared.settings import Settings
from stream.steps import item_features_from_counts

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def _environ(env: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def settings_from(env: dict[str, str]) -> Settings:
    """The Settings a subprocess started with `env` (on top of ours) would read."""
    with _environ(env):
        return Settings()


def scoring_records(events: list[dict[str, Any]], key: bytes) -> list[dict[str, Any]]:
    """Events -> scoring records the batch way: pseudonymize, fold per user, prior item rates."""
    by_user: dict[str, list[dict[str, Any]]] = {}
    for event in sorted(events, key=lambda e: (e["ts"], e["event_id"])):
        pseudo = {**event, "user_id": pseudonymize(event["user_id"], "user", key=key)}
        by_user.setdefault(pseudo["user_id"], []).append(pseudo)
    out = []
    for user_events in by_user.values():
        for event, feats in zip(user_events, fold_user_events(user_events)):
            out.append({**event, **feats, **item_features_from_counts(0, 0, 0)})
    return out


def start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen:
    full = {**os.environ, **env, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}
    log_fh = open(log_path, "ab")
    return subprocess.Popen([sys.executable, "-m", "stream.worker"], cwd=REPO_ROOT, env=full,
                            stdout=log_fh, stderr=subprocess.STDOUT)


def stop_worker(proc: subprocess.Popen, timeout: float = 20.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


def metrics_text(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
        return resp.read().decode()


def metric_value(text: str, name: str) -> float:
    """Sum of every sample of `name` (all label sets) in a Prometheus text page."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            head, _, value = line.rpartition(" ")
            if head == name or head.startswith(name + "{"):
                total += float(value)
    return total


def read_topic(settings: Settings, topic: str, *, expect: int, timeout: float) -> list[tuple[bytes | None, bytes]]:
    """Every (key, value) on `topic` from the beginning, waiting until `expect` arrived."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers,
                             enable_auto_commit=False, group_id=None, auto_offset_reset="earliest")
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        out: list[tuple[bytes | None, bytes]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batch = [(r.key, r.value) for records in consumer.poll(timeout_ms=500).values() for r in records]
            out.extend(batch)
            # Past `expect`, keep reading until the topic is drained: duplicates count too.
            if len(out) >= expect and not batch:
                break
        return out
    finally:
        consumer.close()


def json_values(pairs: list[tuple[bytes | None, bytes]]) -> list[dict[str, Any]]:
    return [json.loads(v) for _, v in pairs]


def wait_all_scored(settings: Settings, events: list[dict[str, Any]], timeout: float) -> list[dict[str, Any]]:
    """Every scored value once each of `events` is on the scored topic (duplicates too)."""
    wanted = {e["event_id"] for e in events}

    def all_scored():
        values = json_values(read_topic(settings, settings.kafka.scored_topic, expect=len(events), timeout=2))
        return values if wanted <= {v["event_id"] for v in values} else None

    return wait_for(all_scored, timeout, interval=1.0, what=f"all {len(wanted)} events scored")


def register_propensity_from_task(registry_root: Path, records: list[dict[str, Any]], work: Path) -> int:
    """Build a propensity model with the task's own builder, save it and register it.

    The model's encoder statistics are fitted on `records`; its weights are the GRU's
    initial ones. Used where the trainer is not needed (plumbing); the served-model tests
    use `train_propensity` below.
    """
    import torch

    from shared.registry import ModelRegistry
    from shared.tasks import get_task

    torch.manual_seed(0)
    task = get_task("propensity")
    model, encoder = task.build("", records)
    folder = work / f"propensity-{time.time_ns()}"
    task.save(model, encoder, folder)
    registry = ModelRegistry(registry_root)
    return registry.register("propensity", folder, {"base_model": task.base_model_name(""),
                                                    "metrics": {}, "note": "test build"})


def write_propensity_gold(events: list[dict[str, Any]], key: bytes, lake_root: Path) -> Path:
    """A small gold/train_propensity table from real Taobao events, for the trainer.

    Rows are the views of `events` with their session features (shared fold) and prior
    item rates, labelled 1 when the same user carts or buys any item within the horizon;
    split by time (70/15/15).
    """
    import pyarrow as pa
    from deltalake import write_deltalake

    from shared.datasets import PROPENSITY_HORIZON_SECONDS, PROPENSITY_TRAINING_SET

    records = scoring_records(events, key)
    positives: dict[str, list[Any]] = {}
    views_at: dict[str, list[Any]] = {}
    for r in records:
        if r["event_type"] in ("add_to_cart", "purchase"):
            positives.setdefault(r["user_id"], []).append(r["ts"])
        elif r["event_type"] == "view":
            views_at.setdefault(r["user_id"], []).append(r["ts"])
    views = sorted((r for r in records if r["event_type"] == "view"),
                   key=lambda r: (r["ts"], r["event_id"]))
    n = len(views)
    for i, r in enumerate(views):
        user_positives = positives.get(r["user_id"], [])
        r["user_prior_views"] = sum(t < r["ts"] for t in views_at.get(r["user_id"], []))
        r["user_prior_positives"] = sum(t < r["ts"] for t in user_positives)
        r["label"] = int(any(0 < (t - r["ts"]).total_seconds() <= PROPENSITY_HORIZON_SECONDS for t in user_positives))
        r["split"] = "train" if i < 0.7 * n else ("valid" if i < 0.85 * n else "test")
    schema = PROPENSITY_TRAINING_SET.schema.arrow_schema()
    table = pa.Table.from_pylist([{k: r.get(k) for k in schema.names} for r in views], schema=schema)
    path = lake_root / "gold" / PROPENSITY_TRAINING_SET.table
    write_deltalake(str(path), table, mode="overwrite")
    return path


def train_propensity(table: Path, *, seed: int, promote: bool, samples: int = 400) -> int:
    """Smoke-train a propensity model with the project's trainer; returns its version."""
    import contextlib
    import io

    from batch.train import main as train_main

    out = io.StringIO()
    argv = ["--task", "propensity", "--table-path", str(table), "--max-train-samples", str(samples),
            "--seed", str(seed), "--device", "cpu", "--no-progress"]
    with contextlib.redirect_stdout(out):
        train_main(argv + (["--promote"] if promote else []))
    return int(json.loads(out.getvalue().strip().splitlines()[-1])["version"])


def wait_for(check, timeout: float, interval: float = 0.25, what: str = "condition"):
    """Poll `check()` until it returns a truthy value; raise AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def wait_serving(port: int, proc: subprocess.Popen, timeout: float = 60.0) -> str:
    """Wait until the worker's metrics page shows a serving model; returns the page."""
    def check():
        if proc.poll() is not None:
            raise AssertionError(f"worker exited with {proc.returncode} while starting")
        try:
            page = metrics_text(port)
        except OSError:
            return None
        return page if metric_value(page, "shopflow_stream_serving_model") >= 1 else None

    return wait_for(check, timeout, what="the worker to serve a model")


def send_raw(settings: Settings, values: list[tuple[bytes | None, bytes]]) -> None:
    """Produce raw (key, value) pairs to the clicks topic and wait for the acks."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all", linger_ms=5)
    try:
        for key, value in values:
            producer.send(settings.kafka.clicks_topic, key=key, value=value)
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=5)


def serving_version(page: str) -> str | None:
    """The `version` label of the serving-model gauge that is set to 1."""
    for line in page.splitlines():
        if line.startswith("shopflow_stream_serving_model{") and line.endswith(" 1.0"):
            return line.split('version="', 1)[1].split('"', 1)[0]
    return None


class TopicWatcher:
    """Reads topics from the beginning and keeps every value seen, for waiting on output."""

    def __init__(self, settings: Settings, topics: list[str]) -> None:
        from kafka import KafkaConsumer, TopicPartition

        self._consumer = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers,
                                       group_id=None, enable_auto_commit=False,
                                       auto_offset_reset="earliest")
        tps = [TopicPartition(t, p) for t in topics for p in sorted(self._consumer.partitions_for_topic(t) or [])]
        self._consumer.assign(tps)
        self._consumer.seek_to_beginning(*tps)
        self.values: dict[str, list[bytes]] = {t: [] for t in topics}

    def poll(self) -> None:
        for tp, records in self._consumer.poll(timeout_ms=200).items():
            self.values[tp.topic].extend(r.value for r in records)

    def wait(self, check, timeout: float, what: str) -> None:
        def step():
            self.poll()
            return check(self)
        wait_for(step, timeout, interval=0.0, what=what)

    def close(self) -> None:
        self._consumer.close()
