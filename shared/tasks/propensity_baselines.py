"""The propensity task's baselines, scored on the same test rows as the model: logistic
regression and gradient-boosted trees on the same point-in-time numeric features, and
the user's and the item's prior rates (from strictly earlier events) as scores.

    scores = fit_baselines(train_records, test_records, labels, seed=13)  # name -> (n, 2) probabilities
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from shared.features import PRIOR_CART_RATE, PRIOR_PURCHASE_RATE, smoothed_rate
from shared.tasks.base import Record
from shared.tasks.propensity_encoder import numeric_matrix
from shared.tasks.propensity_model import PropensityConfig


def fit_baselines(
    train_records: Sequence[Record], test_records: Sequence[Record], labels: np.ndarray, seed: int
) -> dict[str, np.ndarray]:
    """Each baseline's class probabilities on `test_records`; `labels` are the train rows'.
    The fitted two need both classes among the labels and are left out otherwise."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    config = PropensityConfig()
    y = labels
    x_train = numeric_matrix(train_records, config)
    x_test = numeric_matrix(test_records, config)
    out: dict[str, np.ndarray] = {}
    if len(np.unique(y)) == 2:
        out["logreg_numeric"] = fit_logreg(x_train, y).predict_proba(x_test)
        # Shallow, slow and without early stopping: chosen on the valid split, where
        # sklearn's defaults overfit 2 % positives (valid ROC-AUC 0.51 vs 0.54).
        gbt = HistGradientBoostingClassifier(
            max_depth=3,
            learning_rate=0.05,
            max_iter=100,
            min_samples_leaf=200,
            early_stopping=False,
            random_state=seed,
        )
        out["gbt_numeric"] = gbt.fit(x_train, y).predict_proba(x_test)
    out["user_prior_rate"] = _as_proba(user_prior_rate(test_records))
    out["item_prior_rate"] = _as_proba([float(r.get("item_cart_rate") or 0.0) for r in test_records])
    return out


def fit_logreg(x_train: np.ndarray, labels: np.ndarray) -> Any:
    """The `logreg_numeric` baseline: standardize, then logistic regression (a fitted
    sklearn pipeline; the fallback model copies its weights, shared.tasks.propensity_linear)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x_train, labels)


def user_prior_rate(records: Sequence[Record]) -> np.ndarray:
    """The user's smoothed add-to-cart/purchase rate per view over their earlier events."""
    views = [int(r.get("user_prior_views") or 0) for r in records]
    positives = [int(r.get("user_prior_positives") or 0) for r in records]
    return np.asarray(smoothed_rate(positives, views, PRIOR_CART_RATE + PRIOR_PURCHASE_RATE), dtype=np.float64)


def _as_proba(rate: Sequence[float] | np.ndarray) -> np.ndarray:
    rate = np.clip(np.asarray(rate, dtype=np.float64), 0.0, 1.0)
    return np.stack([1.0 - rate, rate], axis=1)
