"""Run the scoring worker: clicks -> validate, pseudonymize, enrich, score -> clicks.scored.

    shopflow worker                     # or: python -m stream.worker
    SHOPFLOW_STREAM__METRICS_PORT=9200 shopflow worker

Reads everything from shared.settings (SHOPFLOW_* variables). Exits with status 70 when an
agent dies or Faust itself crashes (an infrastructure failure), so a supervisor restarts
it; offsets of the batch in flight are not committed, so the restart scores that batch
again (at-least-once, same features).
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from shared.options import start_job
from shared.settings import REPO_ROOT

log = logging.getLogger(__name__)
# Allocations between two young-generation collections (CPython's default is 700).
GC_YOUNG_THRESHOLD = 50_000


def set_torch_threads(threads: int) -> None:
    """Torch's intra-op thread count for this process (0: leave torch's default)."""
    if threads > 0:
        import torch

        torch.set_num_threads(threads)
        log.info("torch intra-op threads: %d", threads)


def spawn(env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """A worker in its own process, as a supervisor runs it: `env` (SHOPFLOW_* variables)
    on top of this process's environment, stdout and stderr appended to `log_path`."""
    full = {**os.environ, **env, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}
    with open(log_path, "ab") as log_fh:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "stream.worker"], cwd=REPO_ROOT, env=full, stdout=log_fh, stderr=subprocess.STDOUT
        )


def terminate(proc: subprocess.Popen, timeout: float = 20.0) -> int:
    """SIGTERM (a clean stop: offsets committed), SIGKILL after `timeout`; the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


def settle_garbage_collector() -> None:
    """After start-up: park what is loaded for good (the item snapshot, the model, the
    modules) outside the collector's scans, and let it run less often.

    The worker allocates a few containers per event; with the default thresholds the
    collector ran every ~700 of them and rescanned the loaded objects each full pass,
    about a third of the per-event step time in a backlog.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 20)


@dataclass(frozen=True)
class WorkerOptions:
    """None: the worker reads everything from settings (see --print-config)."""


def main(argv: list[str] | None = None) -> int:
    # Faust sets up logging itself (see Worker below).
    _, settings = start_job(WorkerOptions, argv, prog="shopflow worker", doc=__doc__, configure_logging=False)

    import faust

    from stream.app import create_app
    from stream.pipeline import EXIT_AGENT_DIED, die

    class Worker(faust.Worker):
        def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
            super().on_setup_root_logger(logger, level)
            # Faust leaves the root logger at DEBUG, and every library's debug call
            # then builds a record that no handler prints (a few % of a busy worker).
            logger.setLevel(level or logging.INFO)

        def on_worker_shutdown(self) -> None:
            # A crashed Faust service (e.g. table recovery) would otherwise stop
            # gracefully and exit with status 1; every crash is an infrastructure failure.
            if self.crash_reason is not None:
                die("faust worker", self.crash_reason)
            super().on_worker_shutdown()

    set_torch_threads(settings.stream.torch_threads)
    app = create_app(settings)
    # Snapshot and champion load before the consumer starts (see Pipeline.load).
    app.shopflow["pipeline"].load()  # type: ignore[attr-defined]
    settle_garbage_collector()
    worker = Worker(app, loglevel=settings.log_level.lower(), quiet=True)
    # The per-connection chatter of the Kafka clients drowns the worker's own lines.
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    logging.getLogger("kafka").setLevel(logging.WARNING)
    try:
        worker.execute_from_commandline()  # runs until SIGTERM/SIGINT, then exits
    except SystemExit as exc:
        if exc.code not in (0, None):  # any other failure path of Faust's: still status 70
            log.critical("the worker stopped with status %s; exiting with status %d", exc.code, EXIT_AGENT_DIED)
            return EXIT_AGENT_DIED
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
