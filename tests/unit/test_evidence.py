"""shared.evidence: weighted metrics and the paired bootstrap (pure logic)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from shared.evidence import decide, paired_bootstrap, weighted_average_precision, weighted_roc_auc


@pytest.fixture
def rows():
    rng = np.random.default_rng(0)
    n = 3000
    y = (rng.random(n) < 0.1).astype(int)
    users = rng.integers(0, 600, n)
    signal = y + rng.normal(0, 1.0, n)
    weak = y * 0.3 + rng.normal(0, 1.0, n)
    return y, weak, signal, users


def test_weighted_metrics_equal_sklearn_with_integer_weights(rows):
    y, weak, _, _ = rows
    w = np.random.default_rng(1).integers(0, 4, len(y))
    rounded = np.round(weak, 1)  # ties
    assert weighted_roc_auc(y, rounded, w) == pytest.approx(roc_auc_score(y, rounded, sample_weight=w))
    assert weighted_average_precision(y, weak, w) == pytest.approx(
        average_precision_score(y, weak, sample_weight=w), abs=1e-9
    )


def test_a_clearly_better_challenger_is_promoted(rows):
    y, weak, strong, users = rows
    cmp = paired_bootstrap(y, weak, strong, users, resamples=300)
    assert cmp.difference.low > 0.05
    assert cmp.challenger.low <= cmp.challenger.value <= cmp.challenger.high
    assert decide(cmp, margin=0.0).promote


def test_the_same_model_is_not_promoted(rows):
    y, weak, _, users = rows
    noisy = weak + np.random.default_rng(3).normal(0, 0.05, len(y))
    cmp = paired_bootstrap(y, weak, noisy, users, resamples=300)
    assert cmp.difference.low < 0 < cmp.difference.high
    decision = decide(cmp, margin=0.0)
    assert not decision.promote and "not proven better" in decision.reason


def test_a_worse_challenger_is_not_promoted(rows):
    y, weak, strong, users = rows
    assert not decide(paired_bootstrap(y, strong, weak, users, resamples=200), margin=0.0).promote


def test_too_small_a_slice_is_refused(rows):
    y, weak, strong, users = rows
    decision = decide(
        paired_bootstrap(y[:50], weak[:50], strong[:50], users[:50], resamples=50), margin=0.0, min_rows=200
    )
    assert not decision.promote and "too small" in decision.reason


def test_pairs_are_required():
    with pytest.raises(ValueError):
        paired_bootstrap([0, 1], [0.1, 0.2], [0.3], ["u", "v"])
