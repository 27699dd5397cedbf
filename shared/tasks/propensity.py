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
import operator
import threading
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    """Raw numeric features, transformed (log1p where configured), not yet standardized.

    A missing value (None) is 0; anything else goes through float(), as one object array.
    """
    names = config.numeric_features
    raw = _plain_numbers(records, names)
    if raw is None:
        values = np.array([[r.get(name) for name in names] for r in records], dtype=object)
        values = values.reshape(len(records), len(names))
        values[np.equal(values, None)] = 0.0
        raw = values.astype(np.float64)
    for j, transform in enumerate(config.numeric_transforms):
        if transform == "log1p":
            raw[:, j] = np.sign(raw[:, j]) * np.log1p(np.abs(raw[:, j]))
    return raw


def _plain_numbers(records: Sequence[Record], names: Sequence[str]) -> np.ndarray | None:
    """The records' `names` as a float matrix, converted by numpy in one call, when that
    gives what the general path gives: every record has every name, and no value is
    None (numpy reads None as NaN, the general path as 0). None otherwise, and the
    general path decides."""
    if not records or not names:
        return None
    row = operator.itemgetter(*names)
    try:
        rows = [row(r) for r in records]
        matrix = np.array(rows, dtype=np.float64).reshape(len(records), len(names))
    except (KeyError, TypeError, ValueError):
        return None
    if np.isnan(matrix).any():  # a None, or a NaN the general path keeps as it is
        return None
    return matrix


class _IdCodes:
    """Each id value seen -> a small code, with the code's hash bucket and text identity
    kept in arrays, so a batch's ids are bucketed and compared with numpy, not one by one.

    Bounded: cleared when it holds `max_size` values (the next batch refills it).
    """

    def __init__(self, buckets: int, max_size: int = 1 << 20) -> None:
        self._buckets = buckets
        self._max_size = max_size
        self._clear()

    def _clear(self) -> None:
        self._codes: dict[Any, int] = {}
        self._texts: dict[str, int] = {}
        self._n = 0
        # Grown by doubling, so a batch's new ids cost an item write each, not a copy.
        self._bucket = np.zeros(1024, dtype=np.int64)
        self._text = np.zeros(1024, dtype=np.int64)  # values with the same str() share this
        self._is_none = np.zeros(1024, dtype=bool)

    def make_room(self, values: int) -> None:
        """Before a batch's `codes` calls: codes stay valid until the next make_room."""
        if len(self._codes) + values > self._max_size:
            self._clear()

    def codes(self, values: list[Any]) -> list[int]:
        known, out = self._codes, []
        for value in values:
            code = known.get(value)
            if code is None:
                code = known[value] = self._n
                if code == len(self._bucket):
                    self._bucket, self._text, self._is_none = (
                        np.concatenate([a, np.zeros_like(a)]) for a in (self._bucket, self._text, self._is_none)
                    )
                self._bucket[code] = bucket(value, self._buckets)
                self._text[code] = self._texts.setdefault(str(value), len(self._texts))
                self._is_none[code] = value is None
                self._n += 1
            out.append(code)
        return out

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(bucket, text identity, is None) by code, for every code handed out so far."""
        n = self._n
        return self._bucket[:n], self._text[:n], self._is_none[:n]


class PropensityEncoder:
    """Records -> right-aligned id sequences + standardized numeric features.

    Per record, the sequence is the session's last `history_length` events, then the
    candidate (the viewed item), padded with 0 on the left. The three history lists of a
    record come from one fold and have the same length.
    """

    def __init__(self, config: PropensityConfig) -> None:
        self.config = config
        self.type_index = {t: i + 3 for i, t in enumerate(config.event_types)}
        self.mean = np.asarray(config.numeric_mean, dtype=np.float64)
        self.std = np.asarray(config.numeric_std, dtype=np.float64)
        self._ids = _IdCodes(config.id_buckets)
        self._lock = threading.Lock()

    def encode(self, records: Sequence[Record]) -> dict[str, torch.Tensor]:
        with self._lock:  # the id codes are shared state
            return self._encode(records)

    def _encode(self, records: Sequence[Record]) -> dict[str, torch.Tensor]:
        cfg = self.config
        keep = cfg.history_length
        length = keep + 1
        n = len(records)
        type_index = self.type_index
        # Flat positions (row * length + column) of every filled slot, and what fills it.
        slots: list[int] = []
        type_slots: list[int] = []
        type_ids: list[int] = []
        seq_items: list[Any] = []
        seq_cats: list[Any] = []
        candidates: list[Any] = []  # item, category of each record, in turn
        for i, r in enumerate(records):
            item, category = r.get("item_id"), r.get("category_id")
            end = i * length + length
            hist_items = r.get("history_item_ids")
            if hist_items is not None and len(hist_items):
                hist_types = _as_list(r.get("history_event_types"))[-keep:]
                hist_items = _as_list(hist_items)[-keep:]
                hist_cats = _as_list(r.get("history_category_ids"))[-keep:]
                if not len(hist_types) == len(hist_items) == len(hist_cats):
                    raise ValueError(
                        f"record {i}: history lists of different lengths "
                        f"({len(hist_types)}, {len(hist_items)}, {len(hist_cats)})"
                    )
                first = end - 1 - len(hist_items)
                slots.extend(range(first, end))
                type_slots.extend(range(first, end - 1))
                # The record's own event_type is never an input (PROPENSITY_NON_INPUTS):
                # the candidate slot gets a fixed token.
                type_ids.extend([type_index.get(str(t), UNKNOWN_TYPE_TOKEN) for t in hist_types])
                seq_items.extend(hist_items)
                seq_cats.extend(hist_cats)
            else:  # no history (a session's first event): the candidate alone
                if len(_as_list(r.get("history_event_types"))) or len(_as_list(r.get("history_category_ids"))):
                    raise ValueError(f"record {i}: history lists of different lengths")
                slots.append(end - 1)
            seq_items.append(item)
            seq_cats.append(category)
            candidates.append(item)
            candidates.append(category)
        ids = self._ids
        ids.make_room(len(seq_items) + len(seq_cats) + len(candidates))
        item_codes = np.asarray(ids.codes(seq_items), dtype=np.int64)
        cat_codes = np.asarray(ids.codes(seq_cats), dtype=np.int64)
        candidate_codes = np.asarray(ids.codes(candidates), dtype=np.int64).reshape(n, 2)
        buckets, texts, is_none = ids.arrays()
        slot_index = np.asarray(slots, dtype=np.int64)
        rows = slot_index // length  # the record each slot belongs to

        types = np.zeros(n * length, dtype=np.int64)
        types[length - 1 :: length] = CANDIDATE_TOKEN
        types[np.asarray(type_slots, dtype=np.int64)] = type_ids
        items = np.zeros(n * length, dtype=np.int64)
        items[slot_index] = buckets[item_codes]
        cats = np.zeros(n * length, dtype=np.int64)
        cats[slot_index] = buckets[cat_codes]
        # Match on the ids' text, as str() sees them; a missing category never matches.
        item_match = np.zeros(n * length, dtype=np.int64)
        item_match[slot_index] = np.where(texts[item_codes] == texts[candidate_codes[rows, 0]], 2, 1)
        cat_match = np.zeros(n * length, dtype=np.int64)
        cat_match[slot_index] = np.where(
            ~is_none[cat_codes] & (texts[cat_codes] == texts[candidate_codes[rows, 1]]), 2, 1
        )
        numeric = (numeric_matrix(records, cfg) - self.mean) / self.std
        shape = (n, length)
        return {
            "event_type_ids": torch.from_numpy(types.reshape(shape)),
            "item_ids": torch.from_numpy(items.reshape(shape)),
            "category_ids": torch.from_numpy(cats.reshape(shape)),
            "item_match": torch.from_numpy(item_match.reshape(shape)),
            "category_match": torch.from_numpy(cat_match.reshape(shape)),
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
