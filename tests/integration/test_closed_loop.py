"""The closed loop on a slice of the real data, with every real part: Spark + Delta batch,
the embedded broker, a worker process, the propensity model, the fold, the retrain and
the report. `shopflow demo`'s own stages run here (sentiment skipped), then a challenger
built to be worse is refused. Every training and retraining is an MLflow run, read back
through the MLflow client, and the MLflow aliases follow the registry's, also after an
outage of the tracking store.

The promotion margin is set to -1 for the demo run, so the champion rule passes any
verified challenger and the baseline gate decides alone: a challenger it lets through is
promoted and served without a restart; one it refuses leaves what serves in place (the
fallback baseline when the first trained version was refused too). Either way no
version the gate refuses ever becomes champion. The decision logic itself is tested
with the default margin below and in tests/unit/test_evidence.py and test_gate.py.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from pathlib import Path

import pytest

from shared.contract.folded import stream_table_path
from shared.delta import read_arrow
from shared.registry import ModelRegistry
from shared.settings import Settings

pytestmark = pytest.mark.integration

CHARTS = ("throughput", "lag", "dlq", "model-version", "evaluation", "accounting", "stages")


@pytest.fixture(scope="module")
def demo(sliced_data: Path, spark, tmp_path_factory) -> dict:
    from demo.options import DemoOptions, demo_environment
    from demo.run import run_demo

    work = tmp_path_factory.mktemp("demo")
    options = DemoOptions(
        workdir=work, cutoff="2017-11-26T01:50:00Z", swap_minutes=15.0, sentiment_seconds=0, progress=False
    )
    env = {
        **demo_environment(options),
        "SHOPFLOW_LOOP__PROMOTION_MARGIN": "-1",
        "SHOPFLOW_LOOP__BOOTSTRAP_RESAMPLES": "200",
        "SHOPFLOW_LOOP__MIN_EVAL_ROWS": "50",
        "SHOPFLOW_TRACKING__ENABLED": "true",  # into the demo's own store (demo_environment)
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        settings = Settings()
        report = run_demo(settings, options, env, source_root=sliced_data)
        return {
            "settings": settings,
            "report": report,
            "env": env,
            "record": json.loads((report.parent / "demo.json").read_text()),
        }


def test_the_loop_promotes_through_the_gate_and_the_worker_swaps(demo) -> None:
    record = demo["record"]
    evaluation = record["evaluation"]
    settings: Settings = demo["settings"]
    registry = ModelRegistry(settings.models.registry_root)
    challenger = int(evaluation["challenger"]["version"])
    stored = registry.manifest("propensity", challenger).extra
    assert evaluation["champion"]["ci_low"] <= evaluation["champion"]["value"] <= evaluation["champion"]["ci_high"]
    assert stored["evaluation"]["slice"]["rows"] >= 50 and stored["evaluation"]["fold_offsets"]
    assert stored["gate"]["baselines"]["logreg_numeric"]["rows"] == stored["evaluation"]["slice"]["rows"]
    if stored["gate"]["verdict"] == "passed":  # margin -1: the gate alone decides
        assert evaluation["decision"] == "promoted", evaluation
        # The worker served the promoted challenger without a restart (seen in its metrics).
        assert record["swap"] is not None and record["swap"]["to_version"] == str(challenger)
        assert registry.resolve("propensity") == challenger and stored["evaluation"]["decision"]["promote"]
    else:
        assert evaluation["decision"] == "not promoted" and "baseline gate" in evaluation["reason"], evaluation
        assert record["swap"] is None and registry.resolve("propensity") == int(evaluation["champion"]["version"])


def test_the_demo_never_makes_a_version_the_gate_refuses_champion(demo) -> None:
    settings: Settings = demo["settings"]
    registry = ModelRegistry(settings.models.registry_root)
    served = []
    for version in registry.versions("propensity"):
        extra = registry.manifest("propensity", version).extra
        if any(p["outcome"] != "refused" for p in extra.get("promotions", [])):
            served.append(version)
            assert extra["kind"] == "fallback_baseline" or extra["gate"]["verdict"] == "passed", (version, extra)
    assert served and registry.resolve("propensity") in served
    # The report says what serves at the end, and why.
    serving = demo["record"]["serving"]["propensity"]
    assert serving["version"] == registry.resolve("propensity") and serving["kind"] and serving["why"]
    assert 'id="serving"' in Path(demo["report"]).read_text()


def test_every_event_is_folded_once_with_its_model_version(demo) -> None:
    settings: Settings = demo["settings"]
    record = demo["record"]
    rows = read_arrow(
        stream_table_path(settings),
        columns=["event_id", "model_version", "event_type", "score"],
    ).to_pylist()
    ids = Counter(r["event_id"] for r in rows)
    assert ids and max(ids.values()) == 1
    accounting = record["accounting"]
    assert accounting["rows_in"] == accounting["folded"] + accounting["dead_lettered"]
    assert accounting["folded"] == len(rows)
    # The demo's 24 deliberately malformed records (and the slice's planted far-future
    # line) are in the lake's quarantine, by reason.
    assert sum(record["dlq_by_reason"].values()) == accounting["dead_lettered"] == 25
    assert {"not_json", "bad_timestamp", "blank_id", "bad_type", "not_utf8"} <= set(record["dlq_by_reason"])
    # Events scored after a swap carry the new version; views have a score, others none.
    swap = record["swap"]
    served = {swap["from_version"], swap["to_version"]} if swap else {str(record["serving"]["propensity"]["version"])}
    assert {r["model_version"] for r in rows} == served
    assert all((r["score"] is None) == (r["event_type"] != "view") for r in rows)


def test_the_report_holds_every_chart(demo) -> None:
    html = Path(demo["report"]).read_text()
    for chart in CHARTS:
        assert f'id="chart-{chart}"' in html, chart
    assert "<script src=" not in html and html.count("plotly") > 0


def test_a_challenger_built_to_be_worse_is_not_promoted(demo, monkeypatch) -> None:
    from jobs.retrain import RetrainOptions, run

    settings = Settings(
        **{
            **demo["settings"].model_dump(),
            "loop": {
                **demo["settings"].loop.model_dump(),
                "promotion_margin": 0.0,
                "bootstrap_resamples": 200,
                "min_eval_rows": 50,
            },
        }
    )
    registry = ModelRegistry(settings.models.registry_root)
    champion = registry.resolve("propensity")
    # A learning rate this large wrecks the champion's weights in one epoch.
    result = run(settings, RetrainOptions(lr=50.0))
    assert not result.promoted and result.challenger_version != champion
    assert registry.resolve("propensity") == champion
    # Not "worse than the champion" by value: on a slice this small the champion itself can
    # sit below 0.5, and a wrecked model scores about 0.5. What must hold is the gate.
    assert result.comparison.difference.low <= 0.0, result.comparison
    stored = registry.manifest("propensity", result.challenger_version).extra["evaluation"]
    assert stored["decision"] == {"promote": False, "reason": result.decision.reason, "margin": 0.0}
    assert "not proven better" in result.decision.reason


def test_retrain_without_a_champion_trains_from_scratch_and_something_serves(demo, tmp_path) -> None:
    """An empty registry: the gate alone decides, and when it refuses, the fallback serves."""
    from jobs.retrain import RetrainOptions, run

    settings = Settings(
        **{
            **demo["settings"].model_dump(),
            "models": {**demo["settings"].models.model_dump(), "registry_root": tmp_path / "registry"},
            "loop": {**demo["settings"].loop.model_dump(), "bootstrap_resamples": 200, "min_eval_rows": 50},
            # Another registry: the demo's MLflow mirror must not follow its aliases.
            "tracking": {**demo["settings"].tracking.model_dump(), "enabled": False},
        }
    )
    result = run(settings, RetrainOptions(max_train_samples=200))
    registry = ModelRegistry(settings.models.registry_root)
    assert result.champion_version is None and result.comparison is None and result.init_from is None
    assert result.promoted == (result.gate["verdict"] == "passed")
    serving = registry.resolve("propensity")
    if result.promoted:
        assert serving == result.challenger_version and result.fallback_version is None
    else:
        assert serving == result.fallback_version != result.challenger_version
        assert registry.manifest("propensity", serving).extra["kind"] == "fallback_baseline"


def _tracking(settings: Settings):
    from mlflow.tracking import MlflowClient

    from shared.tracking import tracking_uri

    client = MlflowClient(tracking_uri=tracking_uri(settings), registry_uri=tracking_uri(settings))
    experiment = client.get_experiment_by_name(settings.tracking.experiment)
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    return client, {r.info.run_id: r for r in runs}


def _mirrored_aliases(client, settings: Settings) -> dict[str, int]:
    model = client.get_registered_model(f"{settings.tracking.model_prefix}propensity")
    return {
        alias: int(client.get_model_version(model.name, v).tags["shopflow.registry_version"])
        for alias, v in model.aliases.items()
    }


def test_every_training_and_retraining_is_an_mlflow_run(demo) -> None:
    from shared.tracking import overhead_seconds

    print(f"\ntracking took {overhead_seconds():.1f} s of this process so far (the demo and a retrain)")
    settings: Settings = demo["settings"]
    record = demo["record"]
    client, runs = _tracking(settings)
    (demo_run,) = [r for r in runs.values() if r.data.tags["shopflow.kind"] == "demo"]
    kinds = [r.data.tags["shopflow.kind"] for r in runs.values()]
    assert kinds.count("train") == 1 and kinds.count("retrain") >= 1 and kinds.count("loop") == 1

    def parent(run):
        return runs[run.data.tags["mlflow.parentRunId"]]

    # The report links each stage to its run, nested under the demo's.
    for stage in record["stages"]:
        assert parent(runs[stage["run_id"]]) is demo_run and runs[stage["run_id"]].info.run_name == stage["name"]
    (train,) = [r for r in runs.values() if r.data.tags["shopflow.kind"] == "train"]
    assert parent(train).info.run_name == "train propensity; the gate decides what serves"
    (loop_run,) = [r for r in runs.values() if r.data.tags["shopflow.kind"] == "loop"]
    retrain = next(
        r
        for r in runs.values()
        if r.data.tags.get("mlflow.parentRunId") == loop_run.info.run_id and r.data.tags["shopflow.kind"] == "retrain"
    )
    assert {
        runs[r].info.run_name for r in runs if runs[r].data.tags.get("mlflow.parentRunId") == loop_run.info.run_id
    } == {
        "loop fold",
        "loop features",
        "loop retrain",
        "loop maintain",
    }

    # The training run: task, seed, settings (secret masked), test metrics of the model and
    # each baseline, the Delta table it read and its version, the code, the version it made.
    params, metrics, tags = train.data.params, train.data.metrics, train.data.tags
    manifest = ModelRegistry(settings.models.registry_root).manifest(
        "propensity", int(tags["shopflow.registry.version"])
    )
    assert params["task"] == "propensity" and params["seed"] == "13"
    assert params["settings.pseudonymization_key"] == "**********"
    assert settings.pseudonymization_key.get_secret_value() not in str(params)
    assert metrics["metrics.roc_auc"] == pytest.approx(manifest.metrics["roc_auc"])
    for baseline, values in manifest.baseline_metrics.items():
        assert metrics[f"baseline_metrics.{baseline}.roc_auc"] == pytest.approx(values["roc_auc"], nan_ok=True)
    (table,) = manifest.training_data.values()
    (read,) = train.inputs.dataset_inputs
    assert read.dataset.name == "gold/train_propensity" and read.dataset.source_type == "delta_table"
    assert json.loads(read.dataset.source) == {"path": table.path, "delta_table_version": table.delta_version}
    assert tags["mlflow.source.git.commit"] == manifest.extra["reproduce"]["code"]["commit"]
    assert tags["shopflow.registry.path"] == str(
        ModelRegistry(settings.models.registry_root).path("propensity", manifest.version)
    )
    promoted = any(p["outcome"] == "promoted" for p in manifest.extra.get("promotions", []))
    assert tags["promoted"] == str(promoted).lower() and client.list_artifacts(train.info.run_id) == []
    assert tags["gate.verdict"] == manifest.extra["gate"]["verdict"]

    # The loop's retrain: both models' intervals on the same slice and the decision.
    evaluation = record["evaluation"]
    assert retrain.data.metrics["comparison.difference.low"] == pytest.approx(evaluation["difference"]["ci_low"])
    challenger = ModelRegistry(settings.models.registry_root).manifest(
        "propensity", int(evaluation["challenger"]["version"])
    )
    decided = challenger.extra["evaluation"]["decision"]
    assert retrain.data.tags["decision.promote"] == str(decided["promote"]).lower()
    assert retrain.data.tags["decision.reason"] == decided["reason"]
    assert retrain.data.tags["gate.verdict"] == challenger.extra["gate"]["verdict"]
    assert retrain.data.tags["shopflow.registry.version"] == evaluation["challenger"]["version"]

    # Each registry version is an MLflow model version linked to its run; the aliases agree.
    versions = client.search_model_versions(f"name='{settings.tracking.model_prefix}propensity'")
    linked = {int(v.tags["shopflow.registry_version"]): v.run_id for v in versions}
    assert linked[manifest.version] == train.info.run_id
    assert linked[int(evaluation["challenger"]["version"])] == retrain.info.run_id
    assert _mirrored_aliases(client, settings) == ModelRegistry(settings.models.registry_root).aliases("propensity")


def test_a_tracking_store_that_is_down_costs_little_and_the_aliases_catch_up(demo, monkeypatch, caplog, capsys) -> None:
    from jobs import runs as runs_cli
    from shared.promotion import promote
    from shared.tracking import overhead_seconds, track_run

    settings: Settings = demo["settings"]
    registry = ModelRegistry(settings.models.registry_root)
    champion = registry.resolve("propensity")
    previous = min(registry.versions("propensity"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    try:
        before, started = overhead_seconds(), time.perf_counter()
        with caplog.at_level(logging.WARNING, logger="shared.tracking"):
            promote(settings, "propensity", previous, reason="rolled back by the test, store down", force=True)
        added = overhead_seconds() - before
        print(f"\npromotion with the store down: {time.perf_counter() - started:.2f} s, tracking {added:.3f} s")
        assert registry.resolve("propensity") == previous  # the promotion went on
        assert [r.levelname for r in caplog.records if r.name == "shared.tracking"] == ["WARNING"]
        assert added < 5.0
        monkeypatch.delenv("MLFLOW_TRACKING_URI")
        client, _ = _tracking(settings)
        assert _mirrored_aliases(client, settings)["champion"] == champion  # behind, for now
        with track_run(settings, "check", task="propensity"):  # the store is back: a run starts
            pass
        assert _mirrored_aliases(client, settings) == registry.aliases("propensity") == {"champion": previous}
    finally:
        promote(settings, "propensity", champion, reason="restored by the test", force=True)
    assert _mirrored_aliases(client, settings)["champion"] == champion

    # `shopflow runs` shows them (the demo's store, through its settings).
    for name, value in demo["env"].items():
        monkeypatch.setenv(name, value)
    from shared.settings import get_settings

    get_settings.cache_clear()
    try:
        assert runs_cli.main(["--task", "propensity", "--limit", "50"]) == 0
    finally:
        get_settings.cache_clear()
    out = capsys.readouterr().out
    assert "train propensity" in out and "loop retrain" in out
