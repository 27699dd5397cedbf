"""Test-wide fixtures: an isolated lake/registry per test session and one SparkSession.

The environment is set before anything reads settings, so every job under test writes
below a temporary folder and never touches var/ of the checkout.
"""

from __future__ import annotations

import functools
import os
import re
import tempfile
from pathlib import Path

import pytest

_SESSION_ROOT = Path(tempfile.mkdtemp(prefix="shopflow-tests-"))
os.environ["SHOPFLOW_LAKE__ROOT"] = str(_SESSION_ROOT / "lake")
os.environ["SHOPFLOW_MODELS__REGISTRY_ROOT"] = str(_SESSION_ROOT / "registry")
os.environ["SHOPFLOW_METRICS_DIR"] = str(_SESSION_ROOT / "metrics")
# Jobs under test read sliced copies of the real files (see tests/data_slices.py).
os.environ["SHOPFLOW_DATA_ROOT"] = str(_SESSION_ROOT / "data")
# Experiment tracking costs a second or two per process (MLflow's import, a new SQLite
# store's tables): off unless a test turns it on, and never a person's own store.
os.environ["SHOPFLOW_TRACKING__ROOT"] = str(_SESSION_ROOT / "tracking")
os.environ["SHOPFLOW_TRACKING__ENABLED"] = "false"
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ.setdefault("SHOPFLOW_SPARK__SHUFFLE_PARTITIONS", "2")
os.environ.setdefault("SHOPFLOW_SPARK__DRIVER_MEMORY", "2g")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_ROOT = REPO_ROOT.parent / "shared" / "data"
# A test function or fixture that takes one of these uses the session's SparkSession
# and the gold lake it built.
_SPARK_ARGUMENT = re.compile(r"def \w+\([^)]*\b(?:spark|gold_lake)\b", re.S)
# Files marked so spend minutes in Spark jobs of their own (subprocesses, a standalone
# cluster): they share a second worker, which builds a second copy of the gold lake.
_SPARK_SUBPROCESSES = re.compile(r"\bmark\.spark_subprocesses\b")


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """How pytest-xdist's workers share the suite (scripts/test.sh runs them in parallel).

    Every integration file whose tests or fixtures take the session's SparkSession or gold
    lake goes to one worker, so one driver builds the lake once; the files marked
    `spark_subprocesses` go together to another; every other integration
    file goes whole to one worker, so its module fixtures (a demo run, a trained model)
    are built once; unit tests go wherever a worker is free. Each worker is its own
    process with its own temporary lake, registry and broker. (xdist's own `loadgroup`
    marks do not group under pytest 9, whose node ids xdist can no longer suffix.)
    """
    from xdist.scheduler import LoadScopeScheduling

    root = config.rootpath

    @functools.cache
    def scope_of_file(path: str) -> str:
        if "/integration/" not in f"/{path}":
            return ""
        text = (root / path).read_text()
        if _SPARK_SUBPROCESSES.search(text):
            return "spark-subprocesses"
        return "spark" if _SPARK_ARGUMENT.search(text) else path

    class SharedFixtureScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return scope_of_file(nodeid.split("::", 1)[0]) or nodeid

    return SharedFixtureScheduling(config, log)


@pytest.fixture(scope="session")
def session_root() -> Path:
    return _SESSION_ROOT


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not DATA_ROOT.exists():
        pytest.fail(f"the real data sets are expected at {DATA_ROOT}")
    return DATA_ROOT


@pytest.fixture(scope="session")
def sliced_data(data_root: Path) -> Path:
    """Slices of every real file plus planted bad rows, at SHOPFLOW_DATA_ROOT."""
    from tests.data_slices import build_slices

    return build_slices(data_root, Path(os.environ["SHOPFLOW_DATA_ROOT"]))


@pytest.fixture(scope="session")
def gold_lake(spark, sliced_data: Path) -> dict[str, Path]:
    """Run the real ingest -> clean -> features jobs on the slices; table paths by name.

    Keys are "<layer>/<table>", e.g. "gold/train_sentiment", "silver/quarantine".
    """
    from batch import clean, features, ingest
    from shared.settings import get_settings

    assert ingest.main(["--all"]) == 0
    assert clean.main([]) == 0
    assert features.main([]) == 0
    root = get_settings().lake.root
    return {
        f"{layer.name}/{table.name}": table
        for layer in sorted(root.iterdir())
        for table in sorted(layer.iterdir())
        if (table / "_delta_log").is_dir()
    }


@pytest.fixture(scope="session")
def spark():
    """One local SparkSession for the whole run (starting one costs ~10 s)."""
    from shared.settings import get_settings
    from shared.spark import get_spark

    session = get_spark(get_settings())
    yield session
    session.stop()
