"""The demo's stream side: the embedded broker, one worker process, replay, and waits.

    with StreamStack(settings, env, log_dir) as stack:
        stack.replay(events)
        stack.wait_consumed(len(events), timeout=300)
        stack.serving_version()

The worker runs as its own process (`python -m stream.worker`), as it does in production,
reading its settings from the same SHOPFLOW_* variables the demo's jobs were given.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

from prometheus_client.parser import text_string_to_metric_families

from shared.errors import ShopflowError
from shared.settings import REPO_ROOT, Settings

log = logging.getLogger("jobs.demo")


class WorkerError(ShopflowError):
    """The demo's worker exited or did not get ready."""


def scrape(port: int, host: str = "127.0.0.1") -> dict[str, list[tuple[dict[str, str], float]]]:
    """The worker's /metrics page as {sample name: [(labels, value)]}."""
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=2) as resp:
        text = resp.read().decode()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    return samples


def total(samples: dict[str, list[tuple[dict[str, str], float]]], name: str) -> float:
    return sum(value for _, value in samples.get(name, []))


def serving_version_of(samples: dict[str, list[tuple[dict[str, str], float]]]) -> str | None:
    for labels, value in samples.get("shopflow_stream_serving_model", []):
        if value >= 1:
            return labels.get("version")
    return None


class StreamStack:
    """Broker + one worker for the demo; stopped cleanly on exit, whatever happened."""

    def __init__(self, settings: Settings, env: dict[str, str], log_dir: Path) -> None:
        self.settings = settings
        self.env = env
        self.log_dir = log_dir
        self.worker: subprocess.Popen | None = None
        self.port = settings.stream.metrics_port

    def __enter__(self) -> "StreamStack":
        from stream import broker

        self.log_dir.mkdir(parents=True, exist_ok=True)
        broker.start(self.settings)
        self.start_worker()
        return self

    def __exit__(self, *exc: Any) -> None:
        from stream import broker

        self.stop_worker()
        broker.stop(self.settings)

    # ------------------------------------------------------------------ worker

    def start_worker(self, timeout: float = 90.0) -> None:
        full = {**os.environ, **self.env, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}
        log_fh = open(self.log_dir / "worker.log", "ab")
        self.worker = subprocess.Popen([sys.executable, "-m", "stream.worker"], cwd=REPO_ROOT,
                                       env=full, stdout=log_fh, stderr=subprocess.STDOUT)
        log_fh.close()
        self.wait(lambda s: serving_version_of(s) is not None, timeout, "the worker to serve a model")

    def stop_worker(self, timeout: float = 20.0) -> int | None:
        proc, self.worker = self.worker, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        return proc.returncode

    def metrics(self) -> dict[str, list[tuple[dict[str, str], float]]]:
        if self.worker is not None and self.worker.poll() is not None:
            raise WorkerError(f"the worker exited with status {self.worker.returncode}; "
                              f"see {self.log_dir / 'worker.log'}")
        return scrape(self.port, self.settings.stream.metrics_host)

    def wait(self, check: Callable[[dict], bool], timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                samples = self.metrics()
            except OSError:
                samples = None  # not listening yet
            if samples is not None and check(samples):
                return samples
            time.sleep(0.5)
        raise WorkerError(f"timed out after {timeout:.0f} s waiting for {what}; "
                          f"see {self.log_dir / 'worker.log'}")

    def serving_version(self) -> str | None:
        return serving_version_of(self.metrics())

    def wait_consumed(self, expected_in: int, timeout: float) -> dict:
        """Until the worker has read `expected_in` events and every one is scored or dead-lettered."""

        def done(s: dict) -> bool:
            handled = total(s, "shopflow_stream_scored_total") + total(s, "shopflow_stream_dlq_total")
            return total(s, "shopflow_stream_events_in_total") >= expected_in and handled >= expected_in

        return self.wait(done, timeout, f"{expected_in} events to be scored or dead-lettered")

    # ------------------------------------------------------------------ replay

    def replay(self, events: list[dict[str, Any]], *, progress: bool = True) -> int:
        from stream.replay import replay

        return replay(events, self.settings, speed=None, progress=progress)
