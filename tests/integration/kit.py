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
        while len(out) < expect and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                out.extend((r.key, r.value) for r in records)
        return out
    finally:
        consumer.close()


def json_values(pairs: list[tuple[bytes | None, bytes]]) -> list[dict[str, Any]]:
    return [json.loads(v) for _, v in pairs]


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
