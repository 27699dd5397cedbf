"""End to end on real data, real torch/transformers, real Spark + Delta: train a task on a
small gold slice, register it, load it back, predict, and bulk-score a table with it.

Gold tables come from the `gold_lake` fixture: the real ingest -> clean -> features jobs
run on slices of the real data.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from batch import score as score_job
from batch import train as train_job
from shared.delta import read_arrow
from shared.predictor import load_predictor
from shared.registry import ModelRegistry
from shared.settings import get_settings

pytestmark = pytest.mark.integration

TEXT_ARGS = ["--max-train-samples", "48", "--max-eval-samples", "48", "--max-length", "48",
             "--batch-size", "16", "--no-progress"]
PROPENSITY_ARGS = ["--max-train-samples", "256", "--max-eval-samples", "200", "--batch-size", "32",
                   "--epochs", "2", "--no-progress"]


@pytest.fixture(scope="module")
def gold(gold_lake: dict[str, Path]) -> dict[str, str]:
    return {name: str(path) for name, path in gold_lake.items()}


@pytest.fixture(scope="module", autouse=True)
def own_registry(tmp_path_factory: pytest.TempPathFactory):
    """A registry of this module's own: the stream tests promote champions in the session's."""
    mp = pytest.MonkeyPatch()
    mp.setenv("SHOPFLOW_MODELS__REGISTRY_ROOT", str(tmp_path_factory.mktemp("registry")))
    get_settings.cache_clear()
    yield
    mp.undo()
    get_settings.cache_clear()


def _train(task: str, gold: dict[str, str], *extra: str) -> dict:
    """Run the trainer's main() and return the metrics JSON it wrote for the new version."""
    table = gold["gold/train_sentiment" if task != "propensity" else "gold/train_propensity"]
    registry = ModelRegistry()
    before = set(registry.versions(task))
    assert train_job.main(["--task", task, "--table-path", table, *extra]) == 0
    (version,) = set(registry.versions(task)) - before
    metrics = get_settings().metrics_dir / f"train-{task}-v{version}.json"
    return json.loads(metrics.read_text())


def _test_rows(table: str, n: int) -> list[dict]:
    rows = [r for r in read_arrow(table).to_pylist() if r["split"] == "test"]
    return rows[:n]


def test_sentiment_train_register_load_predict_and_bulk_score(gold, spark, tmp_path: Path) -> None:
    doc = _train("sentiment", gold, *TEXT_ARGS, "--promote")
    version = doc["version"]
    assert doc["promoted"] and ModelRegistry().resolve("sentiment") == version
    for name in ("accuracy", "macro_f1"):
        assert 0.0 <= doc["metrics"][name] <= 1.0
        assert 0.0 <= doc["baseline_metrics"]["tfidf_logreg"][name] <= 1.0
    manifest = ModelRegistry().verify("sentiment", version)
    assert manifest["training_data"]["train_sentiment"]["delta_version"] == doc["data"]["delta_version"]
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= set(manifest["files"])
    assert "all-MiniLM-L6-v2" in manifest["base_model"]

    predictor = load_predictor("sentiment")
    records = _test_rows(gold["gold/train_sentiment"], 5)
    proba = predictor.predict_proba(records)
    assert proba.shape == (5, 3) and np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert predictor.score(records).shape == (5,)

    out = tmp_path / "scored_sentiment"
    assert score_job.main(["--task", "sentiment", "--input", gold["gold/train_sentiment"], "--output", str(out)]) == 0
    scored = read_arrow(out).to_pandas()
    assert len(scored) == read_arrow(gold["gold/train_sentiment"]).num_rows
    assert set(scored["model_name"]) == {"shopflow-sentiment"} and set(scored["model_version"]) == {str(version)}
    # Spark's mapInPandas path and the in-process predictor give the same scores.
    by_id = scored.set_index("review_id")
    direct = predictor.score(records)
    assert np.allclose([by_id.loc[r["review_id"], "score"] for r in records], direct, atol=1e-5)


def test_recommendation_is_a_third_task_and_lora_saves_a_plain_model(gold) -> None:
    doc = _train("recommendation", gold, *TEXT_ARGS, "--lora")
    assert doc["args"]["lora"] and not doc["promoted"]
    assert "roc_auc" in doc["metrics"] and "tfidf_logreg" in doc["baseline_metrics"]
    folder = ModelRegistry().path("recommendation", doc["version"])
    weights = load_file(str(folder / "model.safetensors"))
    assert not [k for k in weights if "lora" in k.lower()], "LoRA adapters must be merged before saving"
    predictor = load_predictor("recommendation", version=doc["version"])
    assert predictor.predict_proba([{"text": "Love it, fits perfectly."}]).shape == (1, 2)


def test_propensity_promotes_only_when_better_on_the_same_slice(gold, spark, tmp_path: Path) -> None:
    registry = ModelRegistry()
    assert registry.resolve("propensity") is None
    first = _train("propensity", gold, *PROPENSITY_ARGS, "--promote")
    assert first["promoted"] and registry.resolve("propensity") == first["version"]
    assert set(first["baseline_metrics"]) == {"logreg_numeric", "gbt_numeric", "user_prior_rate", "item_prior_rate"}
    assert 0.0 <= first["metrics"]["roc_auc"] <= 1.0 and 0.0 <= first["metrics"]["pr_auc"] <= 1.0

    # Same seed, same data: an equal model is not better, so the champion stays.
    second = _train("propensity", gold, *PROPENSITY_ARGS, "--promote")
    assert not second["promoted"] and registry.resolve("propensity") == first["version"]
    assert second["champion"]["version"] == first["version"]
    assert second["champion"]["metrics_on_this_slice"]["roc_auc"] == pytest.approx(second["metrics"]["roc_auc"])

    out = tmp_path / "scored_propensity"
    assert score_job.main(["--task", "propensity", "--input", gold["gold/train_propensity"], "--output", str(out)]) == 0
    scored = read_arrow(out).to_pandas()
    assert set(scored["model_version"]) == {str(first["version"])}
    assert scored["score"].between(0, 1).all() and len(scored) == read_arrow(gold["gold/train_propensity"]).num_rows
    records = _test_rows(gold["gold/train_propensity"], 32)
    direct = load_predictor("propensity").score(records)
    by_id = scored.set_index("event_id")
    assert np.allclose([by_id.loc[r["event_id"], "score"] for r in records], direct, atol=1e-6)


def test_resume_from_checkpoint_matches_an_uninterrupted_run(gold, tmp_path: Path) -> None:
    uninterrupted = _train("propensity", gold, *PROPENSITY_ARGS)

    table = gold["gold/train_propensity"]
    ckpt_dir = tmp_path / "ckpt"
    args = ["--task", "propensity", "--table-path", table, *PROPENSITY_ARGS, "--output-dir", str(ckpt_dir)]
    before = ModelRegistry().versions("propensity")
    train_job.main([*args, "--save-steps", "4", "--stop-after-steps", "6"])
    assert ModelRegistry().versions("propensity") == before, "a stopped run registers nothing"
    assert (ckpt_dir / "checkpoint-4" / "trainer_state.safetensors").exists()
    resumed = _train("propensity", gold, *PROPENSITY_ARGS, "--resume-from", str(ckpt_dir / "checkpoint-4"))

    assert resumed["training"]["steps"] == uninterrupted["training"]["steps"]
    assert resumed["metrics"] == uninterrupted["metrics"]
    registry = ModelRegistry()
    a = load_file(str(registry.path("propensity", uninterrupted["version"]) / "model.safetensors"))
    b = load_file(str(registry.path("propensity", resumed["version"]) / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)
