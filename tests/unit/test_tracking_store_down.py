"""A tracking store that is down costs a run one WARNING and a bounded few seconds: a
refused store is known at once, a server that accepts and never answers costs one request
timeout, and neither is asked again during the outage. (A real training run against an
unreachable store: tests/integration/test_tracking.py.)"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator

import pytest

from shared.settings import Settings
from shared.tracking import mirror_aliases, track_run


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A loopback port whose kernel accepts connections that no one ever answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


def _settings(tmp_path, uri: str) -> Settings:
    return Settings(
        models={"registry_root": tmp_path / "registry"},
        tracking={"enabled": True, "uri": uri, "root": tmp_path / "tracking", "request_timeout_seconds": 1},
    )


def _a_run_and_a_promotion_mirror(settings: Settings) -> str | None:
    with track_run(settings, "train", task="propensity", params={"seed": 13}) as run:
        run.log_document({"metrics": {"roc_auc": 0.6}, "decision": {"promote": True, "reason": "test"}})
        run.log_params({"more": 1})
    mirror_aliases(settings, "propensity")
    with track_run(settings, "retrain", task="propensity") as again:
        again.log_document({"metrics": {"roc_auc": 0.6}})
    return run.run_id or again.run_id


@pytest.mark.parametrize("server", ["refused", "silent"])
def test_a_store_that_is_down_costs_one_warning_and_seconds(server, silent_server, tmp_path, caplog) -> None:
    uri = "http://127.0.0.1:9" if server == "refused" else silent_server
    settings = _settings(tmp_path, uri)
    with caplog.at_level(logging.WARNING, logger="shared.tracking"):
        started = time.perf_counter()
        run_id = _a_run_and_a_promotion_mirror(settings)
        added = time.perf_counter() - started
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert run_id is None
    assert len(warnings) == 1 and "training and promotion go on" in warnings[0].getMessage(), warnings
    # Refused: no MLflow call at all; silent: one request timeout (1 s here, 2 s by default).
    assert added < (0.5 if server == "refused" else 5.0), added
    print(f"\nadded by a {server} store: {added:.2f} s")


def test_mlflow_is_imported_only_when_a_run_starts() -> None:
    """It takes seconds to import: the worker and the commands that do not track skip it."""
    import subprocess
    import sys

    code = (
        "import sys, jobs.cli, jobs.loop, jobs.retrain, jobs.runs, batch.train, stream.worker, shared.promotion\n"
        "assert 'mlflow' not in sys.modules, 'mlflow imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
