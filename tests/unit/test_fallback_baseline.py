"""The propensity fallback baseline is the logistic regression baseline it claims to be:
saved, loaded by the task and run through the Predictor, it scores what the baseline scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shared.predictor import Predictor
from shared.tasks import get_task
from shared.tasks.propensity_baselines import fit_baselines
from shared.tasks.propensity_linear import PropensityLinearModel
from shared.tasks.propensity_model import NUMERIC_FEATURES


def _records(n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        row = {name: float(rng.poisson(3)) for name, _ in NUMERIC_FEATURES}
        row["item_cart_rate"] = float(rng.random())
        row["item_purchase_rate"] = 0.0  # a constant column: the scaler leaves it unscaled
        row["hour_of_day"] = float(rng.integers(0, 24))
        signal = 0.4 * row["prior_carts"] + 2.0 * row["item_cart_rate"] + rng.normal(0, 1)
        out.append(
            {
                **row,
                "event_id": f"e{seed}-{i}",
                "user_id": f"u{i % 50}",
                "item_id": f"i{i % 97}",
                "category_id": "c1",
                "label": int(signal > 3.0),
            }
        )
    return out


def test_the_fallback_scores_what_the_logistic_regression_baseline_scores(tmp_path: Path) -> None:
    task = get_task("propensity")
    train, test = _records(600, 1), _records(300, 2)
    model, encoder = task.build_fallback(train, seed=13)
    task.save(model, encoder, tmp_path / "fallback")
    loaded, loaded_encoder = task.load(tmp_path / "fallback")
    assert isinstance(loaded, PropensityLinearModel)
    served = Predictor(task, loaded, loaded_encoder, version="1").predict_proba(test)
    baseline = fit_baselines(train, test, task.labels(train), seed=13)["logreg_numeric"]
    assert served.shape == baseline.shape == (300, 2)
    assert np.allclose(served, baseline, atol=1e-5)
