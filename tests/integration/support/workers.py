"""The scoring worker as a real subprocess (`python -m stream.worker`) and its metrics page."""

from __future__ import annotations

import subprocess
import urllib.request
from pathlib import Path

from stream.worker import spawn, terminate
from tests.integration.support.env import wait_for


def start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen:
    return spawn(env, log_path)


def stop_worker(proc: subprocess.Popen, timeout: float = 20.0) -> int:
    return terminate(proc, timeout)


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


def serving_version(page: str) -> str | None:
    """The `version` label of the serving-model gauge that is set to 1."""
    for line in page.splitlines():
        if line.startswith("shopflow_stream_serving_model{") and line.endswith(" 1.0"):
            return line.split('version="', 1)[1].split('"', 1)[0]
    return None
