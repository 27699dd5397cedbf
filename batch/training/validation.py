"""Model selection on the valid split: when to evaluate, which state is best, when to stop.

The trainer evaluates on the valid rows at each epoch's end (and, in a time-boxed run,
at a few evenly spaced steps), keeps the best weights on the task's primary metric in
memory, and stops after `patience` evaluations in a row without a better one. The test
split is never read here: it is kept for the one evaluation the promotion gate uses.

    tracker = ValidationTracker(metric="roc_auc", patience=2)
    if tracker.observe(step, {"roc_auc": 0.61, ...}, train_loss=0.12): best = copy_state(model)
    tracker.should_stop  # True after `patience` evaluations without improvement
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from shared.tasks import Task

Record = dict[str, Any]
# Rows per forward pass when scoring the valid split (no gradients, so larger than a training batch).
_EVAL_BATCH = 256


def evaluation_steps(total: int, steps_per_epoch: int, points: int = 0, per_epoch: int = 1) -> list[int]:
    """The global steps after which the model is evaluated: `per_epoch` evenly spaced
    steps in each epoch (its end among them) and the last step, plus `points` evenly
    spaced steps over `total` (time-boxed runs, which may not reach an epoch's end)."""
    per_epoch, spe = max(1, per_epoch), max(1, steps_per_epoch)
    epochs = math.ceil(total / spe)
    steps = {e * spe + max(1, round(spe * k / per_epoch)) for e in range(epochs) for k in range(1, per_epoch + 1)}
    steps |= {max(1, round(total * k / points)) for k in range(1, points + 1)} if points > 0 else set()
    steps.add(total)
    return sorted(s for s in steps if 0 < s <= total)


@dataclass
class ValidationTracker:
    """The evaluations so far, the best one on `metric` (higher is better) and the count
    of evaluations since without a better one. NaN is neither better nor worse."""

    metric: str
    patience: int = 0  # 0: never stop early
    history: list[dict[str, Any]] = field(default_factory=list)
    best_step: int | None = None
    best_value: float | None = None
    since_best: int = 0

    def observe(self, step: int, metrics: dict[str, float], *, train_loss: float, epoch: float) -> bool:
        """Record one evaluation; True when it is the best so far (the caller keeps the weights)."""
        value = float(metrics.get(self.metric, float("nan")))
        improved = not math.isnan(value) and (self.best_value is None or value > self.best_value)
        if improved:
            self.best_step, self.best_value, self.since_best = step, value, 0
        elif not math.isnan(value):
            # An undefined metric (a valid slice with one class) says nothing either way:
            # it neither improves nor counts toward stopping.
            self.since_best += 1
        self.history.append(
            {
                "step": step,
                "epoch": round(epoch, 4),
                "train_loss": round(train_loss, 6),
                "valid": {k: _rounded(v) for k, v in metrics.items()},
                "best": improved,
            }
        )
        return improved

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.since_best >= self.patience

    def to_state(self) -> dict[str, Any]:
        """What a resumable checkpoint keeps (JSON)."""
        return {
            "history": self.history,
            "best_step": self.best_step,
            "best_value": self.best_value,
            "since_best": self.since_best,
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.history = list(state.get("history", []))
        self.best_step = state.get("best_step")
        self.best_value = state.get("best_value")
        self.since_best = int(state.get("since_best", 0))


def _rounded(value: float) -> float | None:
    value = float(value)
    return None if math.isnan(value) else round(value, 6)


def copy_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of the model's weights, kept in memory (CPU) as the best so far."""
    return {name: tensor.detach().to("cpu", copy=True) for name, tensor in model.state_dict().items()}


@torch.no_grad()
def valid_metrics(
    task: Task,
    model: torch.nn.Module,
    encoder: Any,
    records: Sequence[Record],
    labels: np.ndarray,
    device: torch.device,
) -> dict[str, float]:
    """The task's metrics and the mean cross-entropy on `records`, in eval mode (no dropout,
    no random numbers drawn: evaluating does not change the training run that follows)."""
    was_training = model.training
    model.eval()
    probabilities, losses = [], []
    for start in range(0, len(records), _EVAL_BATCH):
        batch = encoder.encode(list(records[start : start + _EVAL_BATCH]))
        logits = model(**{k: v.to(device) for k, v in batch.items()}).logits.float()
        target = torch.as_tensor(labels[start : start + _EVAL_BATCH], dtype=torch.long, device=device)
        losses.append(float(torch.nn.functional.cross_entropy(logits, target, reduction="sum")))
        probabilities.append(torch.softmax(logits, dim=-1).cpu().numpy())
    if was_training:
        model.train()
    metrics = task.metrics(labels, np.concatenate(probabilities))
    metrics["loss"] = sum(losses) / max(1, len(records))
    return metrics
