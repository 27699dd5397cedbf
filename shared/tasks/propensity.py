"""Purchase propensity: P(after this view, the user adds any item to the cart or buys
within the horizon).

The records are rows of the gold `train_propensity` table (a view event + its session
features + the item's rate features). Click data is ids and counts, not language, so
the model is a small GRU over the session's event sequence (`propensity_model`, fed by
`propensity_encoder`), not a text transformer; docs/models.md explains the choice. The
baselines (`propensity_baselines`) are logistic regression and gradient-boosted trees on
the same numeric features, and the user's and the item's prior rates as scores.

    task = get_task("propensity")
    model, encoder = task.build("", train_records)
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shared.datasets import PROPENSITY_TRAINING_SET
from shared.errors import ModelError
from shared.tasks.base import Encoder, Record, Task
from shared.tasks.propensity_encoder import PropensityEncoder, numeric_matrix
from shared.tasks.propensity_linear import (
    PropensityLinearConfig,
    PropensityLinearModel,
    linear_from_logistic_regression,
)
from shared.tasks.propensity_model import PropensityConfig, PropensityModel


@dataclass(frozen=True)
class PropensityTask(Task):
    def build(
        self, base_model: str, train_records: Sequence[Record], **options: Any
    ) -> tuple[torch.nn.Module, Encoder]:
        if base_model:
            # Continue from an earlier propensity checkpoint (e.g. the champion).
            model, encoder = self.load(Path(base_model))
            return model, encoder
        config = PropensityConfig(
            id2label=dict(enumerate(self.label_names)),
            label2id={n: i for i, n in enumerate(self.label_names)},
        )
        matrix = numeric_matrix(train_records, config)
        mean = matrix.mean(axis=0) if len(matrix) else np.zeros(matrix.shape[1])
        std = matrix.std(axis=0) if len(matrix) else np.ones(matrix.shape[1])
        config.numeric_mean = [float(v) for v in mean]
        # A constant column would divide by zero; leave it unscaled.
        config.numeric_std = [float(v) if v > 1e-9 and math.isfinite(v) else 1.0 for v in std]
        model = PropensityModel(config)
        return model, PropensityEncoder(config)

    def load(self, folder: Path) -> tuple[torch.nn.Module, Encoder]:
        try:
            # The fallback baseline (a linear model) and the GRU share the encoder.
            model_type = json.loads((folder / "config.json").read_text()).get("model_type")
            cls = PropensityLinearModel if model_type == PropensityLinearConfig.model_type else PropensityModel
            model = cls.from_pretrained(str(folder), use_safetensors=True)
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot load propensity model from {folder}: {exc}") from exc
        return model, PropensityEncoder(model.config)

    def build_fallback(self, train_records: Sequence[Record], seed: int) -> tuple[torch.nn.Module, Encoder]:
        """The `logreg_numeric` baseline, fitted as fit_baselines fits it, as a one-layer
        torch model on the encoder's numeric inputs."""
        from shared.tasks.propensity_baselines import fit_logreg

        config = PropensityConfig(
            id2label=dict(enumerate(self.label_names)),
            label2id={n: i for i, n in enumerate(self.label_names)},
        )
        labels = self.labels(train_records)
        if len(np.unique(labels)) != 2:
            raise ModelError("the fallback baseline needs both classes among the training rows")
        pipeline = fit_logreg(numeric_matrix(train_records, config), labels)
        scaler, logreg = pipeline[0], pipeline[-1]
        model = linear_from_logistic_regression(scaler, logreg, config)
        return model, PropensityEncoder(model.config)

    def base_model_name(self, base_model: str) -> str:
        return base_model or "from-scratch GRU (shopflow PropensityModel)"

    def baselines(
        self, train_records: Sequence[Record], test_records: Sequence[Record], seed: int
    ) -> dict[str, np.ndarray]:
        """Fitted on the same point-in-time features (logistic regression, boosted trees),
        and two scores that need no fitting: the user's and the item's prior rates."""
        from shared.tasks.propensity_baselines import fit_baselines

        return fit_baselines(train_records, test_records, self.labels(train_records), seed)


PROPENSITY = PropensityTask(
    name="propensity",
    training_set=PROPENSITY_TRAINING_SET,
    label_column="label",
    label_names=("no_cart", "cart_or_purchase"),
    primary_metric="roc_auc",
    description="session before a view + the viewed item -> P(any add_to_cart or purchase within the horizon)",
    # A small network trained from scratch on ~31k rows with 2 % positives: it fits the
    # train rows within an epoch and then loses on valid, so it is evaluated four times per
    # epoch and the best state kept. lr, batch size and epochs were chosen on the valid
    # split (valid ROC-AUC 0.555 at 5e-4/64/2 against 0.552 at 2e-3/64/2 and 0.544 at
    # 2e-3/16/2; wider, deeper or more regularized variants did no better: docs/models.md).
    default_lr=5e-4,
    default_epochs=2,
    default_batch_size=64,
    evaluations_per_epoch=4,
    lora_lr=None,  # small enough to train fully
    row_key="event_id",
    group_key="user_id",
    fallback_baseline="logreg_numeric",
)
