"""The propensity model's inputs: records -> right-aligned id sequences + standardized
numeric features, as the tensors `PropensityModel` takes. Batch training, bulk scoring
and the stream worker all encode through `PropensityEncoder`.

    encoder = PropensityEncoder(config)             # config: a fitted PropensityConfig
    batch = encoder.encode(records)                  # -> {"item_ids": tensor, ...}
"""

from __future__ import annotations

import operator
import threading
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shared.tasks.base import Record
from shared.tasks.propensity_model import PropensityConfig

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
        # An object array compares elementwise with None; numpy's stubs do not list None.
        values[np.equal(values, None)] = 0.0  # type: ignore[call-overload]
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
