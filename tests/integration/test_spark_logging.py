"""Spark's console noise is off by default and one setting brings it back (real Spark,
started in a subprocess so its JVM reads the log configuration from its first line)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
_JOB = """
from shared.settings import get_settings
from shared.spark import get_spark
spark = get_spark(get_settings())
assert spark.range(100).selectExpr("sum(id) AS s").collect()[0].s == 4950
spark.stop()
print("done")
"""


def _run(level: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SHOPFLOW_SPARK__LOG_LEVEL"}
    env["PYTHONPATH"] = str(REPO_ROOT)
    if level:
        env["SHOPFLOW_SPARK__LOG_LEVEL"] = level
    return subprocess.run(
        [sys.executable, "-c", _JOB], capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=240
    )


def test_spark_is_quiet_by_default_and_the_setting_brings_it_back() -> None:
    quiet = _run(None)
    assert quiet.returncode == 0 and quiet.stdout.strip() == "done", quiet.stderr
    noisy_lines = [
        line
        for line in quiet.stderr.splitlines()
        if " INFO " in line
        or "log4j" in line.lower()
        or "NativeCodeLoader" in line
        or "Setting default log level" in line
    ]
    assert noisy_lines == [], "\n".join(noisy_lines[:10])

    chatty = _run("INFO")
    assert chatty.returncode == 0, chatty.stderr
    assert sum(" INFO " in line for line in chatty.stderr.splitlines()) > 10, chatty.stderr[-2000:]
