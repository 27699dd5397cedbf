"""The propensity task's fallback baseline as a servable model: logistic regression on the
numeric features, a one-layer torch network that takes the same encoder's inputs
(`PropensityEncoder`) and so runs through the same Predictor, hot reload and bench as
the GRU. It is the `logreg_numeric` baseline itself: the weights are copied from the
fitted scikit-learn pipeline (its scaler becomes the encoder's standardization), so it
scores what the baseline scores, within float32 rounding.

    model = linear_from_logistic_regression(scaler, logreg, PropensityConfig(...))
    model.save_pretrained(folder)           # config.json (model_type below) + model.safetensors
    PropensityLinearModel.from_pretrained(folder)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from shared.tasks.propensity_model import PropensityConfig


class PropensityLinearConfig(PropensityConfig):
    model_type = "shopflow-propensity-linear"


class PropensityLinearModel(PreTrainedModel):
    """logits = W · standardized numeric features + b; the sequence inputs are ignored."""

    config_class = PropensityLinearConfig
    base_model_prefix = "propensity_linear"
    main_input_name = "numeric"

    def __init__(self, config: PropensityLinearConfig) -> None:
        super().__init__(config)
        self.linear = nn.Linear(len(config.numeric_features), config.num_labels)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.zeros_(module.weight)
            nn.init.zeros_(module.bias)

    def forward(self, numeric: torch.Tensor, labels: torch.Tensor | None = None, **_: Any) -> SequenceClassifierOutput:
        logits = self.linear(numeric)
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


def linear_from_logistic_regression(scaler: Any, logreg: Any, config: PropensityConfig) -> PropensityLinearModel:
    """The fitted StandardScaler + binary LogisticRegression as a PropensityLinearModel.

    A two-class softmax over logits (0, w·x + b) is the sigmoid of w·x + b: the
    logistic regression's P(label 1) exactly."""
    linear_config = PropensityLinearConfig(**config.to_dict())
    linear_config.numeric_mean = [float(v) for v in scaler.mean_]
    linear_config.numeric_std = [float(v) for v in scaler.scale_]  # 1 where a column is constant
    model = PropensityLinearModel(linear_config)
    coef = np.asarray(logreg.coef_, dtype=np.float64).reshape(-1)
    with torch.no_grad():
        model.linear.weight.zero_()
        model.linear.bias.zero_()
        model.linear.weight[1] = torch.from_numpy(coef.astype(np.float32))
        model.linear.bias[1] = float(np.asarray(logreg.intercept_).reshape(-1)[0])
    return model.eval()
