"""shared.gate: the baseline gate's decision (pure), and promote() enforcing it on every
version, the first included, against a real registry folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shared.errors import GateRefusedError, ShopflowError, UserError
from shared.evidence import row_scores, weighted_macro_f1
from shared.gate import FALLBACK, TRAINED, baseline_gate, gate_allows, judge
from shared.manifest import Manifest
from shared.registry import ModelRegistry
from shared.settings import Settings
from tests.unit.checkpoints import tiny_checkpoint


@pytest.fixture
def slice_():
    rng = np.random.default_rng(0)
    n = 2000
    y = (rng.random(n) < 0.2).astype(int)
    users = rng.integers(0, 500, n)
    good = y * 1.0 + rng.normal(0, 1.0, n)  # ROC-AUC ~0.76
    fair = y * 0.5 + rng.normal(0, 1.0, n)  # ~0.64
    noise = rng.normal(0, 1.0, n)  # ~0.5
    return y, users, good, fair, noise


def _proba(score: np.ndarray) -> np.ndarray:
    p = 1 / (1 + np.exp(-score))
    return np.stack([1 - p, p], axis=1)


def _gate(y, users, model, baselines, tolerance=0.01):
    return baseline_gate(
        y,
        _proba(model),
        {name: _proba(s) for name, s in baselines.items()},
        users,
        metric="roc_auc",
        score_index=1,
        num_labels=2,
        tolerance=tolerance,
        resamples=200,
    )


def test_a_model_worse_than_its_strongest_baseline_is_refused(slice_):
    y, users, good, fair, noise = slice_
    verdict = _gate(y, users, fair, {"weak": noise, "strong": good})
    assert not verdict.passed and verdict.strongest == "strong"
    figures = verdict.baselines["strong"]
    assert figures.difference.value < -0.01 and figures.difference.high < 0
    assert figures.rows == 2000 and figures.groups == len(set(users))
    assert "strong" in verdict.reason and "refused" in verdict.to_dict()["verdict"]
    # Every baseline has its figures, the weaker one beaten by the model.
    assert verdict.baselines["weak"].difference.low > 0


def test_a_model_at_least_as_good_as_every_baseline_passes(slice_):
    y, users, good, fair, noise = slice_
    verdict = _gate(y, users, good, {"weak": noise, "fair": fair})
    assert verdict.passed and verdict.strongest == "fair"
    doc = verdict.to_dict()
    assert doc["verdict"] == "passed" and doc["strongest_baseline"] == "fair"
    assert set(doc["baselines"]["fair"]) >= {"metric", "model", "baseline", "difference", "rows", "groups"}


def test_the_same_scores_as_the_baseline_pass_within_the_tolerance(slice_):
    y, users, good, _, _ = slice_
    assert _gate(y, users, good, {"twin": good.copy()}).passed


def test_judge_the_two_rules():
    # point estimate below -tolerance
    ok, why = judge(value=-0.02, high=0.01, tolerance=0.01)
    assert not ok and "below" in why
    # upper bound below 0 (a small, but certain, loss)
    ok, why = judge(value=-0.005, high=-0.001, tolerance=0.01)
    assert not ok and "upper bound" in why
    assert judge(value=-0.005, high=0.002, tolerance=0.01)[0]
    assert not judge(value=float("nan"), high=float("nan"), tolerance=0.01)[0]


def test_rows_are_resampled_when_there_are_no_users(slice_):
    y, _, good, fair, _ = slice_
    verdict = _gate(y, list(range(len(y))), fair, {"strong": good})
    assert not verdict.passed and verdict.baselines["strong"].groups == len(y)


def test_macro_f1_bootstrap_equals_sklearn():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 500)
    proba = rng.random((500, 3))
    pred = row_scores(proba, "macro_f1", score_index=2)
    expected = f1_score(y, proba.argmax(axis=1), average="macro", labels=[0, 1, 2], zero_division=0)
    assert weighted_macro_f1(y, pred, np.ones(500), num_labels=3) == pytest.approx(expected)
    w = rng.integers(0, 3, 500)
    expected_w = f1_score(y, proba.argmax(axis=1), average="macro", labels=[0, 1, 2], sample_weight=w, zero_division=0)
    assert weighted_macro_f1(y, pred, w, num_labels=3) == pytest.approx(expected_w)


def test_gate_allows_reads_the_manifest():
    assert not gate_allows(Manifest(), tolerance=0.01)[0]
    assert "no baseline-gate evidence" in gate_allows(Manifest(), tolerance=0.01)[1]
    assert gate_allows(Manifest().with_fields(kind=FALLBACK), tolerance=0.01)[0]
    refused = {"strongest_baseline": "lr", "baselines": {"lr": {"difference": {"value": -0.05, "high": -0.01}}}}
    assert not gate_allows(Manifest().with_fields(kind=TRAINED, gate=refused), tolerance=0.01)[0]
    # The stored figures are judged with the tolerance in force when promoting.
    assert gate_allows(Manifest().with_fields(kind=TRAINED, gate=refused), tolerance=0.1)[0] is False  # CI rule
    close = {"strongest_baseline": "lr", "baselines": {"lr": {"difference": {"value": -0.02, "high": 0.01}}}}
    assert not gate_allows(Manifest().with_fields(kind=TRAINED, gate=close), tolerance=0.01)[0]
    assert gate_allows(Manifest().with_fields(kind=TRAINED, gate=close), tolerance=0.05)[0]


# ------------------------------------------------------------------ promote() enforces it

TASK = "gate-demo"  # a name of its own


def _settings(tmp_path: Path) -> Settings:
    return Settings(
        models={"registry_root": tmp_path / "registry"},
        kafka={"bootstrap_servers": "127.0.0.1:1"},  # nothing listens: not announced
    )


def _register(registry: ModelRegistry, tmp_path: Path, name: str, **fields) -> int:
    return registry.register(TASK, tiny_checkpoint(tmp_path / name), Manifest().with_fields(**fields))


REFUSED = {
    "verdict": "refused",
    "reason": "worse than lr",
    "strongest_baseline": "lr",
    "baselines": {"lr": {"difference": {"value": -0.1, "low": -0.2, "high": -0.05}}},
}
PASSED = {
    "verdict": "passed",
    "reason": "not worse than lr",
    "strongest_baseline": "lr",
    "baselines": {"lr": {"difference": {"value": 0.02, "low": -0.01, "high": 0.05}}},
}


def test_promote_refuses_a_first_version_below_the_gate_and_records_it(tmp_path: Path) -> None:
    from shared.promotion import promote

    settings = _settings(tmp_path)
    registry = ModelRegistry(settings.models.registry_root)
    bad = _register(registry, tmp_path, "bad", kind=TRAINED, gate=REFUSED)
    with pytest.raises(GateRefusedError, match="baseline gate") as caught:
        promote(settings, TASK, bad, reason="first version")
    assert isinstance(caught.value, ShopflowError) and isinstance(caught.value, UserError)
    assert registry.resolve(TASK) is None  # the alias is untouched
    (attempt,) = registry.manifest(TASK, bad).extra["promotions"]
    assert attempt["outcome"] == "refused" and "lr" in attempt["gate"] and attempt["at"]
    registry.verify(TASK, bad)  # rewriting the manifest keeps the version valid

    forced = promote(settings, TASK, bad, reason="looked at it by hand", force=True)
    assert forced.version == bad and registry.resolve(TASK) == bad
    last = registry.manifest(TASK, bad).extra["promotions"][-1]
    assert last["outcome"] == "forced" and last["reason"] == "looked at it by hand" and last["by"]


def test_promote_takes_a_passing_version_and_a_fallback_and_refuses_one_without_evidence(tmp_path: Path) -> None:
    from shared.promotion import promote

    settings = _settings(tmp_path)
    registry = ModelRegistry(settings.models.registry_root)
    fallback = _register(registry, tmp_path, "fallback", kind=FALLBACK, gate={"verdict": "exempt"})
    assert promote(settings, TASK, fallback, reason="nothing passes").version == fallback
    good = _register(registry, tmp_path, "good", kind=TRAINED, gate=PASSED)
    assert promote(settings, TASK, good, reason="passes").previous == fallback
    old = _register(registry, tmp_path, "old")  # an older release's manifest: no evidence
    with pytest.raises(GateRefusedError, match="no baseline-gate evidence"):
        promote(settings, TASK, old, reason="by hand")
    assert registry.resolve(TASK) == good
