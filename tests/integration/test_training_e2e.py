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
from batch.train import TrainOptions
from batch.training.data import load_training_data
from shared.delta import read_arrow
from shared.predictor import load_predictor
from shared.registry import ModelRegistry
from shared.settings import get_settings
from shared.tasks import get_task

pytestmark = pytest.mark.integration

TEXT_ARGS = [
    "--max-train-samples",
    "48",
    "--max-eval-samples",
    "48",
    "--max-length",
    "48",
    "--batch-size",
    "16",
    "--no-progress",
]
PROPENSITY_ARGS = [
    "--max-train-samples",
    "256",
    "--max-eval-samples",
    "200",
    "--batch-size",
    "32",
    "--epochs",
    "2",
    "--no-progress",
]
PROPENSITY = dict(max_train_samples=256, max_eval_samples=200, batch_size=32, epochs=2, progress=False)


@pytest.fixture(scope="module")
def gold(gold_lake: dict[str, Path]) -> dict[str, str]:
    return {name: str(path) for name, path in gold_lake.items()}


@pytest.fixture(scope="module", autouse=True)
def own_registry(tmp_path_factory: pytest.TempPathFactory):
    """A registry of this module's own: the stream tests promote champions in the session's."""
    mp = pytest.MonkeyPatch()
    mp.setenv("SHOPFLOW_MODELS__REGISTRY_ROOT", str(tmp_path_factory.mktemp("registry")))
    mp.setenv("SHOPFLOW_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:1")  # no broker: promotion is not announced
    get_settings.cache_clear()
    yield
    mp.undo()
    get_settings.cache_clear()


def registry() -> ModelRegistry:
    return ModelRegistry(get_settings().models.registry_root)


def _train(task: str, gold: dict[str, str], *extra: str) -> dict:
    """Run the trainer's main() and return the metrics JSON it wrote for the new version."""
    table = gold["gold/train_sentiment" if task != "propensity" else "gold/train_propensity"]
    before = set(registry().versions(task))
    assert train_job.main(["--task", task, "--table-path", table, *extra]) == 0
    (version,) = set(registry().versions(task)) - before
    metrics = get_settings().metrics_dir / f"train-{task}-v{version}.json"
    return json.loads(metrics.read_text())


def _test_rows(table: str, n: int) -> list[dict]:
    rows = [r for r in read_arrow(table).to_pylist() if r["split"] == "test"]
    return rows[:n]


def _recomputed(task_name: str, version: int, table: str, **limits) -> dict[str, float]:
    """The registered model's metrics recomputed here, on the rows the trainer evaluated."""
    task = get_task(task_name)
    data = load_training_data(task, table, seed=13, **limits)
    predictor = load_predictor(task_name, version=version, registry=registry(), device="cpu")
    return task.metrics(task.labels(data.test), predictor.predict_proba(data.test))


def test_sentiment_train_register_load_predict_and_bulk_score(gold, spark, tmp_path: Path) -> None:
    from shared.promotion import promote

    doc = _train("sentiment", gold, *TEXT_ARGS, "--promote")
    version = doc["version"]
    # Gated like any version: against TF-IDF on macro-F1, over rows (reviews have no users).
    gate = doc["gate"]
    assert gate["metric"] == "macro_f1" and gate["strongest_baseline"] == "tfidf_logreg"
    assert gate["baselines"]["tfidf_logreg"]["groups"] == gate["baselines"]["tfidf_logreg"]["rows"] == 48
    assert doc["promoted"] == (gate["verdict"] == "passed") and "fallback" not in doc  # sentiment has none
    if doc["promoted"]:
        assert doc["announced"] is False  # no broker here: the alias alone carries the promotion
    else:
        assert registry().resolve("sentiment") is None
        promote(get_settings(), "sentiment", version, reason="test: scored below", force=True)
    assert registry().resolve("sentiment") == version
    # The metrics reported are the registered model's on the evaluated rows, not a stale or
    # mismatched copy: recompute them from the registry's files.
    again = _recomputed("sentiment", version, gold["gold/train_sentiment"], max_train_samples=48, max_eval_samples=48)
    assert again == pytest.approx(doc["metrics"], abs=1e-6)
    manifest = registry().verify("sentiment", version)
    assert manifest.metrics == doc["metrics"] and manifest.baseline_metrics == doc["baseline_metrics"]
    assert set(doc["baseline_metrics"]) == {"tfidf_logreg"} and doc["baseline_metrics"]["tfidf_logreg"]["n"] == 48
    assert manifest.training_data["train_sentiment"].delta_version == doc["data"]["delta_version"]
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= set(manifest.files)
    assert "all-MiniLM-L6-v2" in manifest.base_model

    predictor = load_predictor("sentiment", registry=registry())
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
    folder = registry().path("recommendation", doc["version"])
    weights = load_file(str(folder / "model.safetensors"))
    assert not [k for k in weights if "lora" in k.lower()], "LoRA adapters must be merged before saving"
    predictor = load_predictor("recommendation", version=doc["version"], registry=registry())
    assert predictor.predict_proba([{"text": "Love it, fits perfectly."}]).shape == (1, 2)


def test_propensity_promotion_follows_the_champion_on_the_same_rows(gold, spark, tmp_path: Path) -> None:
    from shared.promotion import promote

    settings = get_settings()
    table = gold["gold/train_propensity"]
    assert registry().resolve("propensity") is None
    # A model that barely moves from its random init (lr ~ 0), made champion by hand: the
    # comparisons below are against it (the gate's own tests are in test_baseline_gate).
    weak = train_job.run(settings, TrainOptions(task="propensity", table_path=table, lr=1e-9, **PROPENSITY))
    promote(settings, "propensity", weak.version, reason="test: a weak champion", force=True)
    assert registry().resolve("propensity") == weak.version

    trained = train_job.run(settings, TrainOptions(task="propensity", table_path=table, promote=True, **PROPENSITY))
    auc = trained.metrics["roc_auc"]
    # The champion was re-scored on the very rows the challenger was: its numbers are the
    # weak model's own, and the decision is the comparison of the two.
    assert trained.test_rows == weak.test_rows == 200
    assert trained.champion_version == weak.version
    assert trained.champion_metrics == pytest.approx(weak.metrics, abs=1e-9)
    # Better than the champion on the same rows, and not worse than the strongest baseline.
    assert (
        trained.gate["verdict"] in ("passed", "refused") and trained.gate["baselines"]["logreg_numeric"]["rows"] == 200
    )
    assert trained.promoted == (auc > weak.metrics["roc_auc"] and trained.gate["verdict"] == "passed")
    champion = trained.version if trained.promoted else weak.version
    assert registry().resolve("propensity") == champion
    # Baselines are scored on the same rows, and the reported metrics are the registered model's.
    assert set(trained.baseline_metrics) == {"logreg_numeric", "gbt_numeric", "user_prior_rate", "item_prior_rate"}
    assert all(m["n"] == 200 for m in trained.baseline_metrics.values())
    again = _recomputed("propensity", trained.version, table, max_train_samples=256, max_eval_samples=200)
    assert again == pytest.approx(trained.metrics, abs=1e-6, nan_ok=True)
    # Same seed, same data: an equal model is not better, so the champion stays.
    equal = train_job.run(settings, TrainOptions(task="propensity", table_path=table, promote=True, **PROPENSITY))
    assert equal.metrics["roc_auc"] == pytest.approx(auc) and not equal.promoted
    assert registry().resolve("propensity") == champion

    out = tmp_path / "scored_propensity"
    assert score_job.main(["--task", "propensity", "--input", table, "--output", str(out)]) == 0
    scored = read_arrow(out).to_pandas()
    assert set(scored["model_version"]) == {str(champion)}
    assert scored["score"].between(0, 1).all() and len(scored) == read_arrow(table).num_rows
    records = _test_rows(table, 32)
    direct = load_predictor("propensity", registry=registry()).score(records)
    by_id = scored.set_index("event_id")
    assert np.allclose([by_id.loc[r["event_id"], "score"] for r in records], direct, atol=1e-6)


def test_promote_if_better_refuses_a_worse_challenger_and_takes_a_better_one(gold, tmp_path: Path) -> None:
    """A challenger that is the champion with its scores inverted (AUC -> 1 - AUC) is
    worse by construction when the champion beats chance, and better when it does not:
    promote-if-better must refuse the one and take the other, on the same rows."""
    import copy
    import dataclasses

    import torch

    from batch.training.stages import FitSpec, evaluate_model, fit_model, promote_if_better, register_model
    from batch.training.trainer import TrainerConfig
    from shared.promotion import promote

    settings = get_settings()
    task = get_task("propensity")
    data = load_training_data(task, gold["gold/train_propensity"], seed=13, max_train_samples=256, max_eval_samples=200)
    fitted = fit_model(
        settings,
        task,
        data,
        FitSpec(trainer=TrainerConfig(epochs=2, batch_size=32, lr=2e-3, progress=False), device="cpu"),
    )
    inverted_model = copy.deepcopy(fitted.model)
    with torch.no_grad():  # negated logits: softmax swaps the two classes' probabilities
        inverted_model.head[-1].weight.neg_()
        inverted_model.head[-1].bias.neg_()
    inverted = dataclasses.replace(fitted, model=inverted_model)

    reports = {
        name: evaluate_model(settings, m, data, seed=13, champion_version=None)
        for name, m in (("fitted", fitted), ("inverted", inverted))
    }
    auc = {name: r.metrics["roc_auc"] for name, r in reports.items()}
    assert auc["fitted"] == pytest.approx(1.0 - auc["inverted"], abs=1e-6) and auc["fitted"] != 0.5
    better, worse = ("fitted", "inverted") if auc["fitted"] > auc["inverted"] else ("inverted", "fitted")
    models = {"fitted": fitted, "inverted": inverted}
    versions = {
        name: register_model(settings, models[name], reports[name], data, tmp_path / name, extra={"test": name})[0]
        for name in models
    }
    extra = registry().manifest("propensity", versions["inverted"]).extra
    assert extra["test"] == "inverted" and extra["trained_until"] == max(r["ts"] for r in data.train).isoformat()

    promote(settings, "propensity", versions[better], reason="test: the better one is champion", force=True)
    challenge = evaluate_model(settings, models[worse], data, seed=13)
    assert challenge.champion_version == versions[better]
    assert challenge.champion_metrics["roc_auc"] == pytest.approx(auc[better])
    assert promote_if_better(settings, task, versions[worse], challenge) is None
    assert registry().resolve("propensity") == versions[better]

    promote(settings, "propensity", versions[worse], reason="test: the worse one is champion", force=True)
    challenge = evaluate_model(settings, models[better], data, seed=13)
    result = promote_if_better(settings, task, versions[better], challenge)
    # Better than the champion: promoted unless the baseline gate refuses it.
    if challenge.gate.passed:
        assert result is not None and result.previous == versions[worse] and not result.announced
        assert registry().resolve("propensity") == versions[better]
    else:
        assert result is None and registry().resolve("propensity") == versions[worse]
        assert registry().manifest("propensity", versions[better]).extra["promotions"][-1]["outcome"] == "refused"


def test_stages_give_paired_per_row_predictions(gold) -> None:
    """What the retrain job builds on: fit from the champion, then challenger and champion
    predictions on the same rows, keyed by event and grouped by user."""
    from batch.training.stages import FitSpec, evaluate_model, fit_model
    from batch.training.trainer import TrainerConfig
    from shared.promotion import promote

    settings = get_settings()
    task = get_task("propensity")
    if registry().resolve("propensity") is None:  # run on its own (-k): make a champion first
        first = train_job.run(
            settings, TrainOptions(task="propensity", table_path=gold["gold/train_propensity"], **PROPENSITY)
        )
        promote(settings, "propensity", first.version, reason="test: a champion to start from", force=True)
    champion = registry().resolve("propensity")
    data = load_training_data(task, gold["gold/train_propensity"], seed=13, max_train_samples=128, max_eval_samples=100)
    fitted = fit_model(
        settings,
        task,
        data,
        FitSpec(
            trainer=TrainerConfig(epochs=1, batch_size=32, lr=1e-3, progress=False),
            init_from_champion=True,
            device="cpu",
        ),
    )
    assert fitted.init_from is not None and fitted.init_from.version == champion
    report = evaluate_model(settings, fitted, data, seed=13)
    ex = report.examples
    assert ex.keys == [r["event_id"] for r in data.test] and ex.groups == [r["user_id"] for r in data.test]
    assert ex.champion is not None and ex.candidate.shape == ex.champion.shape == (100, 2)
    incumbent = load_predictor("propensity", version=champion, registry=registry(), device="cpu")
    assert np.allclose(ex.champion, incumbent.predict_proba(data.test), atol=1e-6)
    assert report.champion_metrics == pytest.approx(task.metrics(ex.labels, ex.champion))
    assert report.metrics == pytest.approx(task.metrics(ex.labels, ex.candidate))


def test_resume_from_checkpoint_matches_an_uninterrupted_run(gold, tmp_path: Path) -> None:
    uninterrupted = _train("propensity", gold, *PROPENSITY_ARGS)

    table = gold["gold/train_propensity"]
    ckpt_dir = tmp_path / "ckpt"
    args = ["--task", "propensity", "--table-path", table, *PROPENSITY_ARGS, "--output-dir", str(ckpt_dir)]
    before = registry().versions("propensity")
    train_job.main([*args, "--save-steps", "4", "--stop-after-steps", "6"])
    assert registry().versions("propensity") == before, "a stopped run registers nothing"
    assert (ckpt_dir / "checkpoint-4" / "trainer_state.safetensors").exists()
    resumed = _train("propensity", gold, *PROPENSITY_ARGS, "--resume-from", str(ckpt_dir / "checkpoint-4"))

    assert resumed["training"]["steps"] == uninterrupted["training"]["steps"]
    assert resumed["metrics"] == uninterrupted["metrics"]
    a = load_file(str(registry().path("propensity", uninterrupted["version"]) / "model.safetensors"))
    b = load_file(str(registry().path("propensity", resumed["version"]) / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)


def test_a_model_worse_than_its_baseline_is_refused_as_the_first_version_and_the_fallback_serves(
    gold, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A deliberately bad first version is refused by the gate, and the logistic regression
    fallback serves instead; a forced promotion goes through, on the record. Bad by
    construction on any slice: a linear model fitted on the evaluation rows themselves,
    with its scores inverted, ranks their positives last."""
    import dataclasses

    import torch

    from batch.training.stages import (
        FitSpec,
        evaluate_model,
        fit_model,
        promote_if_better,
        register_model,
        serve_fallback_if_unserved,
    )
    from batch.training.trainer import TrainerConfig
    from jobs.cli import main as shopflow

    monkeypatch.setenv("SHOPFLOW_MODELS__REGISTRY_ROOT", str(tmp_path / "registry"))  # no champion yet
    get_settings.cache_clear()
    settings = get_settings()
    task = get_task("propensity")
    data = load_training_data(task, gold["gold/train_propensity"], seed=13, max_train_samples=128, max_eval_samples=200)
    fitted = fit_model(
        settings, task, data, FitSpec(trainer=TrainerConfig(epochs=1, batch_size=32, progress=False), device="cpu")
    )
    model, encoder = task.build_fallback(data.test, seed=13)
    with torch.no_grad():  # negated logits: the in-sample ranking, upside down
        model.linear.weight.neg_()
        model.linear.bias.neg_()
    bad = dataclasses.replace(fitted, model=model, encoder=encoder)
    report = evaluate_model(settings, bad, data, seed=13)
    strongest = report.gate.strongest
    assert report.metrics["roc_auc"] < report.baselines[strongest]["roc_auc"] - 0.01
    assert not report.gate.passed and "worse than" in report.gate.reason
    # The gate's figures are the report's metrics, row for row (the bootstrap's own AUC).
    for name, figures in report.gate.baselines.items():
        assert figures.value == pytest.approx(report.baselines[name]["roc_auc"], abs=1e-9, nan_ok=True)
        assert figures.model == pytest.approx(report.metrics["roc_auc"], abs=1e-9)

    version, manifest = register_model(settings, bad, report, data, tmp_path / "bad")
    assert manifest.extra["kind"] == "trained" and manifest.extra["gate"]["verdict"] == "refused"
    assert promote_if_better(settings, task, version, report) is None  # no champion, and still refused
    assert registry().resolve("propensity") is None
    assert registry().manifest("propensity", version).extra["promotions"][-1]["outcome"] == "refused"

    served = serve_fallback_if_unserved(settings, task, data, tmp_path / "fb", seed=13)
    assert served is not None and registry().resolve("propensity") == served.version
    fallback = registry().manifest("propensity", served.version)
    assert fallback.extra["kind"] == "fallback_baseline" and fallback.extra["baseline"] == "logreg_numeric"
    # The served fallback is the baseline: the same metrics on the same rows, through the
    # Predictor a worker loads.
    assert fallback.metrics["roc_auc"] == pytest.approx(report.baselines["logreg_numeric"]["roc_auc"], abs=1e-6)
    worker_side = load_predictor("propensity", registry=registry(), device="cpu")
    assert worker_side.version == str(served.version) and worker_side.score(data.test[:8]).shape == (8,)

    assert shopflow(["models", "list", "--task", "propensity"]) == 0
    listing = capsys.readouterr().out
    assert "fallback_baseline" in listing and "refused" in listing
    assert shopflow(["models", "promote", "propensity", str(version)]) == 2
    assert "baseline gate" in capsys.readouterr().err and registry().resolve("propensity") == served.version
    assert shopflow(["models", "promote", "propensity", str(version), "--force", "--reason", "test override"]) == 0
    assert registry().resolve("propensity") == version
    forced = registry().manifest("propensity", version).extra["promotions"][-1]
    assert forced["outcome"] == "forced" and forced["reason"] == "test override" and forced["by"]
    get_settings.cache_clear()
