"""A job killed halfway (SIGKILL, no cleanup) and rerun ends exactly like an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.compute as pc
import pytest

from shared.delta import read_arrow

pytestmark = [pytest.mark.integration, pytest.mark.spark_subprocesses]
REPO = Path(__file__).resolve().parents[2]


def _job(module: str, lake: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "SHOPFLOW_LAKE__ROOT": str(lake), "SHOPFLOW_METRICS_DIR": str(lake.parent / "metrics")}
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen, timeout: float = 300) -> None:
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]


def _sorted_rows(path: Path, key: str) -> list[dict]:
    table = read_arrow(path)
    return table.take(pc.sort_indices(table, [(key, "ascending")])).to_pylist()


def test_clean_killed_after_its_first_commit_then_rerun(gold_lake, tmp_path):
    lake = tmp_path / "lake"
    _finish(_job("batch.ingest", lake, "--all"))

    proc = _job("batch.clean", lake)
    first_commit = lake / "silver" / "orders" / "_delta_log" / f"{0:020d}.json"
    deadline = time.monotonic() + 300
    while not first_commit.exists():
        assert proc.poll() is None, "clean exited before it could be killed"
        assert time.monotonic() < deadline, "clean never committed silver/orders"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (lake / "silver" / "clicks" / "_delta_log").exists(), "the job was not killed halfway"

    _finish(_job("batch.clean", lake))

    for table, key in (("orders", "order_line_id"), ("reviews", "review_id"), ("clicks", "event_id")):
        assert _sorted_rows(lake / "silver" / table, key) == _sorted_rows(gold_lake[f"silver/{table}"], key), table
    quarantine = read_arrow(lake / "silver" / "quarantine")
    expected = read_arrow(gold_lake["silver/quarantine"])
    for table in ("orders", "reviews", "clicks"):
        got = quarantine.filter(pc.equal(quarantine["source_table"], table)).num_rows
        assert got == expected.filter(pc.equal(expected["source_table"], table)).num_rows, table
