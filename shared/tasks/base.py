"""What a task is: a gold training set, a label mapping, a model builder, an encoder,
metrics and a baseline. The trainer, predictor and bulk scorer only speak to this.

A new task is one module that builds a `Task` (or subclass) and one line in
`shared.tasks.TASKS`; nothing in the trainer changes.

    from shared.tasks import get_task
    task = get_task("sentiment")
    model, encoder = task.build(base_model, train_records)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from sklearn.metrics import accuracy_score, average_precision_score, f1_score, roc_auc_score

from shared.datasets import TrainingSet

Record = dict[str, Any]


class Encoder(Protocol):
    """Turns records into the keyword tensors the model's forward() takes."""

    def encode(self, records: Sequence[Record]) -> dict[str, torch.Tensor]: ...

    def save(self, folder: Path) -> None: ...


@dataclass(frozen=True)
class Task(ABC):
    """One prediction problem. Subclasses say how to build, load and encode the model."""

    name: str
    training_set: TrainingSet
    label_column: str
    label_names: tuple[str, ...]
    primary_metric: str
    description: str = ""
    # Inverse-frequency class weights in the loss: for skewed labels scored by macro-F1.
    class_weighted_loss: bool = False
    # Training defaults (the trainer's options override them).
    default_lr: float = 5e-5
    # Learning rate for LoRA adapters; None: the task does not support LoRA.
    lora_lr: float | None = 5e-4
    default_epochs: int = 1
    default_batch_size: int = 16
    # Valid-split evaluations per epoch, each a candidate for the weights kept (a small
    # data set that overfits within an epoch needs more than the epoch's end).
    evaluations_per_epoch: int = 1
    # Column naming a row of the training set, and the one grouping rows that are not
    # independent (one shopper's events), for paired per-row comparisons; "" = none.
    row_key: str = ""
    group_key: str = ""
    # The baseline a stream worker can serve when no trained version passes the baseline
    # gate (its name among `baselines`; see `build_fallback`), or "" when there is none.
    fallback_baseline: str = ""

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def score_index(self) -> int:
        # Binary tasks score P(label 1); multi-class ones the last label, e.g. P(positive).
        return self.num_labels - 1

    @property
    def supports_lora(self) -> bool:
        return self.lora_lr is not None

    @property
    def model_name(self) -> str:
        return f"shopflow-{self.name}"

    # ---------------------------------------------------------------- model I/O

    @abstractmethod
    def build(
        self, base_model: str, train_records: Sequence[Record], **options: Any
    ) -> tuple[torch.nn.Module, Encoder]:
        """A fresh model (from `base_model` where it applies) and its fitted encoder."""

    @abstractmethod
    def load(self, folder: Path) -> tuple[torch.nn.Module, Encoder]:
        """Model and encoder from a save_pretrained folder (verified by the caller)."""

    def save(self, model: torch.nn.Module, encoder: Encoder, folder: Path) -> None:
        """Write safetensors weights, config and the encoder's files to `folder`."""
        folder.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(folder, safe_serialization=True)
        encoder.save(folder)

    def default_base_model(self, configured: str = "") -> str:
        """What `--base-model` defaults to, given settings.models.base_model ("" means:
        build the model from scratch)."""
        return ""

    def base_model_name(self, base_model: str) -> str:
        """What the manifest records as the base model."""
        return base_model

    # ----------------------------------------------------------- labels, metrics

    def labels(self, records: Sequence[Record]) -> np.ndarray:
        return np.asarray([int(r[self.label_column]) for r in records], dtype=np.int64)

    def metrics(self, y_true: np.ndarray, proba: np.ndarray) -> dict[str, float]:
        return classification_metrics(y_true, proba, self.num_labels)

    def build_fallback(self, train_records: Sequence[Record], seed: int) -> tuple[torch.nn.Module, Encoder]:
        """The `fallback_baseline` fitted on `train_records`, as a model this task's `load`
        reads back and the Predictor runs; it scores what that baseline scores."""
        raise NotImplementedError(f"task {self.name!r} has no fallback baseline")

    @abstractmethod
    def baselines(
        self, train_records: Sequence[Record], test_records: Sequence[Record], seed: int
    ) -> dict[str, np.ndarray]:
        """Each baseline's probabilities on the test records, fitted on the train ones."""


def classification_metrics(y_true: np.ndarray, proba: np.ndarray, num_labels: int) -> dict[str, float]:
    """Accuracy and macro-F1 always; ROC-AUC and PR-AUC of label 1 for binary tasks."""
    y_true = np.asarray(y_true)
    predicted = np.asarray(proba).argmax(axis=1)
    out = {
        "n": float(len(y_true)),
        "accuracy": float(accuracy_score(y_true, predicted)),
        "macro_f1": float(
            f1_score(y_true, predicted, average="macro", labels=list(range(num_labels)), zero_division=0)
        ),
    }
    if num_labels == 2:
        positive = np.asarray(proba)[:, 1]
        both_classes = len(np.unique(y_true)) == 2
        # AUCs are undefined on a one-class slice; NaN says so instead of a made-up number.
        out["roc_auc"] = float(roc_auc_score(y_true, positive)) if both_classes else float("nan")
        out["pr_auc"] = float(average_precision_score(y_true, positive)) if both_classes else float("nan")
        out["positive_rate"] = float(y_true.mean()) if len(y_true) else float("nan")
    else:
        per_class = f1_score(y_true, predicted, average=None, labels=list(range(num_labels)), zero_division=0)
        out.update({f"f1_label_{i}": float(v) for i, v in enumerate(per_class)})
    return out


def is_better(candidate: dict[str, float], incumbent: dict[str, float], metric: str) -> bool:
    """True when the candidate beats the incumbent on `metric` (NaN never wins)."""
    new, old = candidate.get(metric, float("nan")), incumbent.get(metric, float("nan"))
    if np.isnan(new):
        return False
    return bool(np.isnan(old) or new > old)
