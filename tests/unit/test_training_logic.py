"""Pure pieces of the trainer: batch order, learning-rate schedule, class weights."""

from __future__ import annotations

import numpy as np
import pytest

from batch.training.trainer import batch_order, class_weights, lr_at


def test_batch_order_is_a_seeded_permutation_per_epoch() -> None:
    first = batch_order(10, 3, seed=5, epoch=0)
    assert [len(b) for b in first] == [3, 3, 3, 1]
    assert sorted(np.concatenate(first).tolist()) == list(range(10))
    assert all(np.array_equal(a, b) for a, b in zip(first, batch_order(10, 3, seed=5, epoch=0)))
    assert not np.array_equal(np.concatenate(first), np.concatenate(batch_order(10, 3, seed=5, epoch=1)))


def test_lr_warms_up_then_decays_to_zero() -> None:
    total, base = 100, 1e-3
    rates = [lr_at(step, total, base, 0.1) for step in range(total)]
    assert rates[0] == pytest.approx(base / 10) and rates[9] == pytest.approx(base)
    assert all(a >= b for a, b in zip(rates[9:], rates[10:])) and rates[-1] < base / 50


def test_class_weights_upweight_rare_labels() -> None:
    weights = class_weights(np.array([0, 0, 0, 1, 2, 2]), 4).tolist()
    assert weights[1] > weights[2] > weights[0]
    assert np.mean(weights) == pytest.approx(1.0)
