"""Test-wide fixtures: an isolated lake/registry per test session and one SparkSession.

The environment is set before anything reads settings, so every job under test writes
below a temporary folder and never touches var/ of the checkout.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_SESSION_ROOT = Path(tempfile.mkdtemp(prefix="shopflow-tests-"))
os.environ["SHOPFLOW_LAKE__ROOT"] = str(_SESSION_ROOT / "lake")
os.environ["SHOPFLOW_MODELS__REGISTRY_ROOT"] = str(_SESSION_ROOT / "registry")
os.environ["SHOPFLOW_METRICS_DIR"] = str(_SESSION_ROOT / "metrics")
os.environ.setdefault("SHOPFLOW_SPARK__SHUFFLE_PARTITIONS", "2")
os.environ.setdefault("SHOPFLOW_SPARK__DRIVER_MEMORY", "2g")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_ROOT = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def session_root() -> Path:
    return _SESSION_ROOT


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not DATA_ROOT.exists():
        pytest.fail(f"the real data sets are expected at {DATA_ROOT}")
    return DATA_ROOT


@pytest.fixture(scope="session")
def spark():
    """One local SparkSession for the whole run (starting one costs ~10 s)."""
    from shared.spark import get_spark

    session = get_spark()
    yield session
    session.stop()
