"""Purchase propensity: P(after this view, the user adds any item to the cart or buys
within the horizon).

The records are rows of the gold `train_propensity` table (a view event + its session
features + the item's rate features). Click data is ids and counts, not language, so
the model is a small GRU over the session's event sequence (`propensity_model`), not a
text transformer; docs/models.md explains the choice. The baselines are logistic
regression and gradient-boosted trees on the same numeric features, and the user's and
the item's prior rates (from strictly earlier events) as scores.

    task = get_task("propensity")
    model, encoder = task.build("", train_records)
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from shared.datasets import PROPENSITY_TRAINING_SET
from shared.errors import ModelError
from shared.features import PRIOR_CART_RATE, PRIOR_PURCHASE_RATE, smoothed_rate
from shared.tasks.base import Encoder, Record, Task
from shared.tasks.propensity_model import NUMERIC_FEATURES, PropensityConfig, PropensityModel

NUMERIC_NAMES = [name for name, _ in NUMERIC_FEATURES]
CANDIDATE_TOKEN = 1
UNKNOWN_TYPE_TOKEN = 2


def bucket(value: Any, buckets: int) -> int:
    """Stable hash bucket of an id in 1..buckets (0 is padding); same in every process."""
    if value is None or value == "":
        return 0
    return zlib.crc32(str(value).encode("utf-8")) % buckets + 1


def _as_list(value: Any) -> list[Any]:
    # Rows from Arrow/pandas carry numpy arrays; rows from the stream carry lists.
    if value is None:
        return []
    return list(value)


def numeric_matrix(records: Sequence[Record], config: PropensityConfig) -> np.ndarray:
    """Raw numeric features, transformed (log1p where configured), not yet standardized."""
    raw = np.array(
        [[float(r.get(name) if r.get(name) is not None else 0.0) for name in config.numeric_features] for r in records],
        dtype=np.float64,
    ).reshape(len(records), len(config.numeric_features))
    for j, transform in enumerate(config.numeric_transforms):
        if transform == "log1p":
            raw[:, j] = np.sign(raw[:, j]) * np.log1p(np.abs(raw[:, j]))
    return raw


class PropensityEncoder:
    """Records -> right-aligned id sequences + standardized numeric features."""

    def __init__(self, config: PropensityConfig) -> None:
        self.config = config
        self.type_index = {t: i + 3 for i, t in enumerate(config.event_types)}
        self.mean = np.asarray(config.numeric_mean, dtype=np.float64)
        self.std = np.asarray(config.numeric_std, dtype=np.float64)

    def encode(self, records: Sequence[Record]) -> dict[str, torch.Tensor]:
        cfg = self.config
        length = cfg.history_length + 1
        n = len(records)
        types = np.zeros((n, length), dtype=np.int64)
        items = np.zeros((n, length), dtype=np.int64)
        cats = np.zeros((n, length), dtype=np.int64)
        item_match = np.zeros((n, length), dtype=np.int64)
        cat_match = np.zeros((n, length), dtype=np.int64)
        for i, r in enumerate(records):
            hist_types = _as_list(r.get("history_event_types"))[-cfg.history_length :]
            hist_items = _as_list(r.get("history_item_ids"))[-cfg.history_length :]
            hist_cats = _as_list(r.get("history_category_ids"))[-cfg.history_length :]
            seq_items = hist_items + [r.get("item_id")]
            seq_cats = hist_cats + [r.get("category_id")]
            start = length - len(seq_items)
            cand_item, cand_cat = str(r.get("item_id")), r.get("category_id")
            # The record's own event_type is never an input (PROPENSITY_NON_INPUTS): the
            # candidate slot gets a fixed token.
            types[i, length - 1] = CANDIDATE_TOKEN
            for k, t in enumerate(hist_types):
                types[i, start + k] = self.type_index.get(str(t), UNKNOWN_TYPE_TOKEN)
            for k, (it, c) in enumerate(zip(seq_items, seq_cats)):
                items[i, start + k] = bucket(it, cfg.id_buckets)
                cats[i, start + k] = bucket(c, cfg.id_buckets)
                item_match[i, start + k] = 2 if str(it) == cand_item else 1
                cat_match[i, start + k] = 2 if c is not None and str(c) == str(cand_cat) else 1
        numeric = (numeric_matrix(records, cfg) - self.mean) / self.std
        return {
            "event_type_ids": torch.from_numpy(types),
            "item_ids": torch.from_numpy(items),
            "category_ids": torch.from_numpy(cats),
            "item_match": torch.from_numpy(item_match),
            "category_match": torch.from_numpy(cat_match),
            "numeric": torch.from_numpy(numeric.astype(np.float32)),
        }

    def save(self, folder: Path) -> None:
        # The fitted state lives in config.json, written by save_pretrained.
        return None


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
            model = PropensityModel.from_pretrained(str(folder), use_safetensors=True)
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot load propensity model from {folder}: {exc}") from exc
        return model, PropensityEncoder(model.config)

    def base_model_name(self, base_model: str) -> str:
        return base_model or "from-scratch GRU (shopflow PropensityModel)"

    def baselines(
        self, train_records: Sequence[Record], test_records: Sequence[Record], seed: int
    ) -> dict[str, np.ndarray]:
        """Fitted on the same point-in-time features (logistic regression, boosted trees),
        and two scores that need no fitting: the user's and the item's prior rates."""
        from sklearn.ensemble import HistGradientBoostingClassifier
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        config = PropensityConfig()
        y = self.labels(train_records)
        x_train = numeric_matrix(train_records, config)
        x_test = numeric_matrix(test_records, config)
        out: dict[str, np.ndarray] = {}
        if len(np.unique(y)) == 2:
            logreg = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
            out["logreg_numeric"] = logreg.fit(x_train, y).predict_proba(x_test)
            # Shallow, slow and without early stopping: chosen on the valid split, where
            # sklearn's defaults overfit 2 % positives (valid ROC-AUC 0.51 vs 0.54).
            gbt = HistGradientBoostingClassifier(
                max_depth=3, learning_rate=0.05, max_iter=100, min_samples_leaf=200,
                early_stopping=False, random_state=seed,
            )
            out["gbt_numeric"] = gbt.fit(x_train, y).predict_proba(x_test)
        out["user_prior_rate"] = _as_proba(user_prior_rate(test_records))
        out["item_prior_rate"] = _as_proba([float(r.get("item_cart_rate") or 0.0) for r in test_records])
        return out


def user_prior_rate(records: Sequence[Record]) -> np.ndarray:
    """The user's smoothed add-to-cart/purchase rate per view over their earlier events."""
    views = [int(r.get("user_prior_views") or 0) for r in records]
    positives = [int(r.get("user_prior_positives") or 0) for r in records]
    return np.asarray(smoothed_rate(positives, views, PRIOR_CART_RATE + PRIOR_PURCHASE_RATE), dtype=np.float64)


def _as_proba(rate: Sequence[float] | np.ndarray) -> np.ndarray:
    rate = np.clip(np.asarray(rate, dtype=np.float64), 0.0, 1.0)
    return np.stack([1.0 - rate, rate], axis=1)


PROPENSITY = PropensityTask(
    name="propensity",
    training_set=PROPENSITY_TRAINING_SET,
    label_column="label",
    label_names=("no_cart", "cart_or_purchase"),
    primary_metric="roc_auc",
    description="session before a view + the viewed item -> P(any add_to_cart or purchase within the horizon)",
    default_lr=2e-3,  # a small network trained from scratch
    lora_lr=None,  # small enough to train fully
    row_key="event_id",
    group_key="user_id",
)
