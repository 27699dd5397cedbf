"""The scale path: ingest -> clean -> features under `spark-submit` on a real Spark
standalone cluster (one master, one worker, started from the pyspark wheel on loopback),
ending with the same tables as the local run of the `gold_lake` fixture.

Executors run in their own JVM and Python processes here, so this catches what local
mode hides: code that only works in the driver, paths executors cannot see, modules the
Python workers cannot import. Bronze and the larger silver/gold tables are written by
the executors (a low Arrow threshold), the path large data takes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.compute as pc
import pyspark
import pytest

from batch.sources import KNOWN_SOURCES
from shared.delta import read_arrow
from tests.integration.support.env import free_port

pytestmark = [pytest.mark.integration, pytest.mark.spark_subprocesses]
REPO = Path(__file__).resolve().parents[2]
SPARK_HOME = Path(pyspark.__file__).resolve().parent
LOOPBACK = "127.0.0.1"


def _wait_for_line(log: Path, needle: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and needle in log.read_text(errors="replace"):
            return
        assert proc.poll() is None, f"{proc.args[2]} exited {proc.returncode}:\n{log.read_text()[-3000:]}"
        time.sleep(0.2)
    raise AssertionError(f"no {needle!r} within {timeout:.0f}s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the daemon's process group (spark-class execs java), SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)


@pytest.fixture
def cluster_env(tmp_path: Path) -> dict[str, str]:
    """What the daemons, the driver and the executors share: this interpreter and checkout."""
    return {
        **os.environ,
        "SPARK_HOME": str(SPARK_HOME),
        "SPARK_LOCAL_IP": LOOPBACK,
        "SPARK_LOCAL_DIRS": str(tmp_path / "spark-local"),
        "SPARK_WORKER_DIR": str(tmp_path / "spark-work"),
        "SPARK_DAEMON_MEMORY": "256m",  # master and worker JVM heaps; executors get their own
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]),
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"],
    }


@pytest.fixture
def standalone_master(tmp_path: Path, cluster_env: dict[str, str]) -> Iterator[str]:
    """spark://127.0.0.1:<port> with one registered worker (1 core, 1 GiB for executors)."""
    port = free_port()
    url = f"spark://{LOOPBACK}:{port}"
    spark_class = str(SPARK_HOME / "bin" / "spark-class")
    daemons: list[subprocess.Popen] = []
    try:
        master_log = tmp_path / "master.log"
        with master_log.open("w") as out:
            daemons.append(
                subprocess.Popen(
                    [
                        spark_class,
                        "org.apache.spark.deploy.master.Master",
                        "--host",
                        LOOPBACK,
                        "--port",
                        str(port),
                        "--webui-port",
                        "0",
                    ],
                    env=cluster_env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        _wait_for_line(master_log, "I have been elected leader", daemons[0], timeout=60)
        worker_log = tmp_path / "worker.log"
        with worker_log.open("w") as out:
            daemons.append(
                subprocess.Popen(
                    [
                        spark_class,
                        "org.apache.spark.deploy.worker.Worker",
                        url,
                        "--host",
                        LOOPBACK,
                        "--webui-port",
                        "0",
                        "--cores",
                        "1",
                        "--memory",
                        "1g",
                    ],
                    env=cluster_env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        _wait_for_line(worker_log, "Successfully registered with master", daemons[1], timeout=60)
        yield url
    finally:
        for daemon in reversed(daemons):
            _stop(daemon)


def _submit(master: str, env: dict[str, str], job: str, *args: str) -> None:
    command = [
        str(Path(sys.executable).parent / "spark-submit"),
        "--master",
        master,
        "--driver-memory",
        "768m",
        "--executor-memory",
        "512m",
        "--total-executor-cores",
        "1",
        "--conf",
        "spark.ui.enabled=false",
        "--conf",
        f"spark.executorEnv.PYTHONPATH={env['PYTHONPATH']}",
        "--conf",
        f"spark.executorEnv.PYSPARK_PYTHON={sys.executable}",
        f"batch/{job}.py",
        *args,
    ]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{job} under {master} failed:\n{done.stderr[-4000:]}"


def _count_by(table, column: str) -> dict[str, int]:
    counts = pc.value_counts(table[column]).to_pylist()
    return {c["values"]: c["counts"] for c in counts}


def test_ingest_clean_features_on_a_standalone_cluster(standalone_master, cluster_env, gold_lake, tmp_path):
    lake = tmp_path / "lake"
    env = {
        **cluster_env,
        "SHOPFLOW_LAKE__ROOT": str(lake),
        "SHOPFLOW_METRICS_DIR": str(tmp_path / "metrics"),
        # Frames above this are written by the executors: the path full-size data takes.
        "SHOPFLOW_SPARK__ARROW_WRITE_MAX_ROWS": "1500",
    }
    _submit(standalone_master, env, "ingest", "--all")
    _submit(standalone_master, env, "clean")
    _submit(standalone_master, env, "features")

    written = {f"{layer.name}/{table.name}" for layer in lake.iterdir() for table in layer.iterdir()}
    expected = {name for name in gold_lake if not name.startswith("bronze/")}
    expected |= {f"bronze/{source.bronze_table}" for source in KNOWN_SOURCES}
    assert written == expected
    for name in sorted(expected):
        got, want = read_arrow(lake / name), read_arrow(gold_lake[name])
        assert got.num_rows == want.num_rows > 0, name
    # Each job ran its tasks in an executor the worker launched, not in the driver.
    assert (tmp_path / "worker.log").read_text().count("Asked to launch executor") == 3
    # The executors' Python workers ran shopflow's code (UDFs, event ids), not just the JVM.
    clicks, local_clicks = read_arrow(lake / "silver/clicks"), read_arrow(gold_lake["silver/clicks"])
    assert set(clicks["event_id"].to_pylist()) == set(local_clicks["event_id"].to_pylist())
    reviews = read_arrow(lake / "silver/reviews")
    assert (
        pc.sum(reviews["text_repaired"]).as_py()
        == pc.sum(read_arrow(gold_lake["silver/reviews"])["text_repaired"]).as_py()
        > 0
    )
    quarantine, local_quarantine = read_arrow(lake / "silver/quarantine"), read_arrow(gold_lake["silver/quarantine"])
    assert _count_by(quarantine, "reason") == _count_by(local_quarantine, "reason")
    # Bronze commits of more than the Arrow threshold went through the executors' parquet.
    bronze_clicks = lake / "bronze" / "clicks_taobao"
    assert read_arrow(bronze_clicks).num_rows > 1500 and not list(bronze_clicks.glob(".staging-*"))
