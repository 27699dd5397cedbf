"""Model selection on the valid split: the evaluation schedule, the best state kept, early
stopping, and a resumed run that ends with the same best weights (a tiny real model)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from batch.training.trainer import TrainerConfig, fit
from batch.training.validation import ValidationTracker, evaluation_steps, valid_metrics
from shared.tasks import get_task
from shared.tasks.propensity_encoder import PropensityEncoder
from shared.tasks.propensity_model import PropensityConfig, PropensityModel


def test_evaluations_come_at_each_epochs_end_and_evenly_in_a_time_boxed_run() -> None:
    assert evaluation_steps(10, 4) == [4, 8, 10]
    assert evaluation_steps(8, 4) == [4, 8]
    assert evaluation_steps(6, 100, points=3) == [2, 4, 6]  # cut short of an epoch
    assert evaluation_steps(0, 4) == []
    assert evaluation_steps(16, 8, per_epoch=2) == [4, 8, 12, 16]
    assert evaluation_steps(10, 8, per_epoch=2) == [4, 8, 10]


def test_the_tracker_keeps_the_best_and_stops_after_patience_evaluations_without_it() -> None:
    tracker = ValidationTracker("roc_auc", patience=2)
    seen = [
        tracker.observe(step, {"roc_auc": auc}, train_loss=0.5, epoch=step / 10)
        for step, auc in ((10, 0.6), (20, 0.7), (30, float("nan")))
    ]
    assert seen == [True, True, False] and tracker.best_step == 20 and not tracker.should_stop
    assert not tracker.observe(40, {"roc_auc": 0.7}, train_loss=0.4, epoch=4.0)  # equal is not better
    assert not tracker.should_stop  # the undefined one (one class in the slice) did not count
    assert not tracker.observe(50, {"roc_auc": 0.65}, train_loss=0.4, epoch=5.0)
    assert tracker.should_stop and tracker.best_value == 0.7
    assert [h["step"] for h in tracker.history] == [10, 20, 30, 40, 50] and tracker.history[2]["valid"][
        "roc_auc"
    ] is None
    again = ValidationTracker("roc_auc", patience=2)
    again.restore(tracker.to_state())
    assert again == tracker


def _rows(n: int, seed: int, inverted: bool) -> list[dict]:
    """Rows whose label follows one numeric feature; in `inverted` rows it is the opposite,
    so the better the model fits the train rows, the worse it does on these."""
    rng = np.random.default_rng(seed)
    carts = rng.integers(0, 6, n)
    return [
        {"item_id": f"i{i % 7}", "category_id": "c", "prior_carts": int(c), "label": int((c > 2) != inverted)}
        for i, c in enumerate(carts)
    ]


def _tiny(seed: int) -> tuple[PropensityModel, PropensityEncoder]:
    torch.manual_seed(seed)
    config = PropensityConfig(id_buckets=16, embed_dim=4, hidden_dim=8)
    return PropensityModel(config), PropensityEncoder(config)


CFG = TrainerConfig(epochs=12, batch_size=16, lr=2e-2, seed=3, progress=False, patience=2, evaluations_per_epoch=1)


def test_the_best_state_on_valid_is_kept_and_training_stops_when_valid_stops_improving() -> None:
    task = get_task("propensity")
    train, valid = _rows(96, 1, inverted=False), _rows(48, 2, inverted=True)
    model, encoder = _tiny(0)
    result = fit(task, model, encoder, train, task.labels(train), CFG, torch.device("cpu"), valid=valid)

    aucs = [h["valid"]["roc_auc"] for h in result.history]
    best = int(np.argmax(aucs))
    assert result.stopped_early and result.completed
    assert result.steps < CFG.epochs * 6 and len(result.history) == best + 1 + CFG.patience
    assert result.best_step == result.history[best]["step"] and result.history[best]["best"]
    assert all(h["train_loss"] > 0 and h["valid"]["loss"] > 0 for h in result.history)
    # The model holds the best evaluation's weights, not the last step's.
    kept = valid_metrics(task, model, encoder, valid, task.labels(valid), torch.device("cpu"))
    assert kept["roc_auc"] == pytest.approx(aucs[best], abs=1e-6) and kept["roc_auc"] > aucs[-1]


def test_a_run_resumed_after_an_evaluation_ends_with_the_same_best_weights(tmp_path: Path) -> None:
    task = get_task("propensity")
    train, valid = _rows(96, 1, inverted=False), _rows(48, 2, inverted=True)
    labels = task.labels(train)
    cpu = torch.device("cpu")
    model, encoder = _tiny(0)
    whole = fit(task, model, encoder, train, labels, CFG, cpu, valid=valid)

    stopped_cfg = dataclasses.replace(CFG, output_dir=tmp_path, save_steps=9, stop_after_steps=9)
    first, first_encoder = _tiny(0)
    stopped = fit(task, first, first_encoder, train, labels, stopped_cfg, cpu, valid=valid)
    assert not stopped.completed and len(stopped.history) == 1  # evaluated once (step 6), then saved at 9
    resumed_model, resumed_encoder = task.load(tmp_path / "checkpoint-9")
    resumed = fit(
        task,
        resumed_model,
        resumed_encoder,
        train,
        labels,
        CFG,
        cpu,
        resume_from=tmp_path / "checkpoint-9",
        valid=valid,
    )
    assert resumed.history == whole.history and resumed.best_step == whole.best_step
    a, b = model.state_dict(), resumed_model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_time_boxed_run_evaluates_on_the_way_and_keeps_the_best_state_not_the_last() -> None:
    task = get_task("propensity")
    # 600 steps an epoch, 30,000 planned: far more than any machine runs in the budget.
    train, valid = _rows(9600, 1, inverted=False), _rows(48, 2, inverted=True)
    model, encoder = _tiny(0)
    boxed = dataclasses.replace(CFG, epochs=50, patience=0, time_budget_seconds=2.0)
    result = fit(task, model, encoder, train, task.labels(train), boxed, torch.device("cpu"), valid=valid)

    assert result.completed and result.steps < 50 * 600  # cut to the budget
    # Evenly spaced evaluations over the steps that fit (how many depends on the machine),
    # from the step at which the budget was known on.
    planned = evaluation_steps(result.steps, 600, boxed.budget_evaluations, per_epoch=1)
    assert [h["step"] for h in result.history] == [s for s in planned if s >= 3]
    aucs = [h["valid"]["roc_auc"] for h in result.history]
    assert result.best_step == result.history[int(np.argmax(aucs))]["step"]
    kept = valid_metrics(task, model, encoder, valid, task.labels(valid), torch.device("cpu"))
    assert kept["roc_auc"] == pytest.approx(max(aucs), abs=1e-6)
