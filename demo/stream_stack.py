"""The demo's stream side: the embedded broker, one worker process, replay, and waits.

    with StreamStack(settings, env, log_dir) as stack:
        stack.replay(events)
        stack.wait_consumed(len(events), timeout=300)
        stack.serving_version()

The worker runs as its own process (`python -m stream.worker`), as it does in production,
reading its settings from the same SHOPFLOW_* variables the demo's jobs were given.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from demo.observe import Sample, scrape_once
from shared.errors import ShopflowError
from shared.settings import Settings
from stream.worker import spawn, terminate


class WorkerError(ShopflowError):
    """The demo's worker exited or did not get ready."""


class StreamStack:
    """Broker + one worker for the demo; stopped cleanly on exit, whatever happened."""

    def __init__(self, settings: Settings, env: dict[str, str], log_dir: Path) -> None:
        self.settings = settings
        self.env = env
        self.log_dir = log_dir
        self.worker: subprocess.Popen | None = None
        self.port = settings.stream.metrics_port

    def __enter__(self) -> StreamStack:
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
        self.worker = spawn(self.env, self.log_dir / "worker.log")
        self.wait(lambda s: s.serving_version is not None, timeout, "the worker to serve a model")

    def stop_worker(self, timeout: float = 20.0) -> int | None:
        proc, self.worker = self.worker, None
        return None if proc is None else terminate(proc, timeout)

    def metrics(self) -> Sample:
        """One scrape of the worker's metrics (`up` False while it does not answer)."""
        if self.worker is not None and self.worker.poll() is not None:
            raise WorkerError(
                f"the worker exited with status {self.worker.returncode}; see {self.log_dir / 'worker.log'}"
            )
        return scrape_once(self.settings.stream.metrics_host, self.port)

    def wait(self, check: Callable[[Sample], bool], timeout: float, what: str) -> Sample:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sample = self.metrics()
            if sample.up and check(sample):
                return sample
            time.sleep(0.5)
        raise WorkerError(f"timed out after {timeout:.0f} s waiting for {what}; see {self.log_dir / 'worker.log'}")

    def serving_version(self) -> str | None:
        return self.metrics().serving_version

    def wait_consumed(self, expected_in: int, timeout: float) -> Sample:
        """Until the worker has read `expected_in` events and every one is scored or dead-lettered."""

        def done(s: Sample) -> bool:
            return s.events_in >= expected_in and s.scored + s.dlq >= expected_in

        return self.wait(done, timeout, f"{expected_in} events to be scored or dead-lettered")

    # ------------------------------------------------------------------ replay

    def replay(self, events: list[dict[str, Any]], *, progress: bool = True, malformed: Sequence[Any] = ()) -> int:
        """Send `events` (and `malformed` raw records first) as fast as the broker takes them."""
        from stream.replay import replay

        return replay(events, self.settings, speed=None, progress=progress, malformed=list(malformed))
