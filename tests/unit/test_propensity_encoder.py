"""The propensity encoder, batched with numpy, gives the tensors of the plain per-record
loop it replaced (kept here as the reference), on the inputs batch and stream hand it."""

from __future__ import annotations

import random
import zlib

import numpy as np
import pytest
import torch

from shared.tasks.propensity_encoder import (
    CANDIDATE_TOKEN,
    UNKNOWN_TYPE_TOKEN,
    PropensityEncoder,
    _IdCodes,
    numeric_matrix,
)
from shared.tasks.propensity_model import PropensityConfig


def _bucket(value, buckets):
    if value is None or value == "":
        return 0
    return zlib.crc32(str(value).encode("utf-8")) % buckets + 1


def _reference_encode(encoder: PropensityEncoder, records):
    cfg = encoder.config
    length = cfg.history_length + 1
    n = len(records)
    types, items, cats, item_match, cat_match = (np.zeros((n, length), dtype=np.int64) for _ in range(5))
    for i, r in enumerate(records):
        as_list = lambda v: [] if v is None else list(v)  # noqa: E731
        hist_types = as_list(r.get("history_event_types"))[-cfg.history_length :]
        hist_items = as_list(r.get("history_item_ids"))[-cfg.history_length :]
        hist_cats = as_list(r.get("history_category_ids"))[-cfg.history_length :]
        seq_items = hist_items + [r.get("item_id")]
        seq_cats = hist_cats + [r.get("category_id")]
        start = length - len(seq_items)
        cand_item, cand_cat = str(r.get("item_id")), r.get("category_id")
        types[i, length - 1] = CANDIDATE_TOKEN
        for k, t in enumerate(hist_types):
            types[i, start + k] = encoder.type_index.get(str(t), UNKNOWN_TYPE_TOKEN)
        for k, (it, c) in enumerate(zip(seq_items, seq_cats)):
            items[i, start + k] = _bucket(it, cfg.id_buckets)
            cats[i, start + k] = _bucket(c, cfg.id_buckets)
            item_match[i, start + k] = 2 if str(it) == cand_item else 1
            cat_match[i, start + k] = 2 if c is not None and str(c) == str(cand_cat) else 1
    raw = np.array(
        [[float(r.get(name) if r.get(name) is not None else 0.0) for name in cfg.numeric_features] for r in records],
        dtype=np.float64,
    ).reshape(n, len(cfg.numeric_features))
    for j, transform in enumerate(cfg.numeric_transforms):
        if transform == "log1p":
            raw[:, j] = np.sign(raw[:, j]) * np.log1p(np.abs(raw[:, j]))
    numeric = (raw - encoder.mean) / encoder.std
    return {
        "event_type_ids": types,
        "item_ids": items,
        "category_ids": cats,
        "item_match": item_match,
        "category_match": cat_match,
        "numeric": numeric.astype(np.float32),
    }


def _records(n: int, seed: int, arrays: bool = False) -> list[dict]:
    rng = random.Random(seed)
    config = PropensityConfig()
    ids = [f"{rng.randint(0, 40)}" for _ in range(30)] + ["", "None"]
    out = []
    for _ in range(n):
        h = rng.randint(0, 12)  # longer than history_length sometimes
        hist = {
            "history_event_types": [rng.choice(config.event_types + ["teleport"]) for _ in range(h)],
            "history_item_ids": [rng.choice(ids) for _ in range(h)],
            "history_category_ids": [rng.choice(ids + [""]) for _ in range(h)],
        }
        if arrays:  # rows read from Arrow/pandas carry numpy arrays
            hist = {k: np.array(v, dtype=object) for k, v in hist.items()}
        record = {"item_id": rng.choice(ids), "category_id": rng.choice(ids + [None]), **hist}
        for name in config.numeric_features:
            record[name] = rng.choice([None, 0, 1, 3.5, -2.0, rng.random() * 1e4])
        out.append(record)
    return out


@pytest.mark.parametrize("arrays", [False, True])
def test_batched_encoding_equals_the_per_record_loop(arrays):
    config = PropensityConfig(id_buckets=64)
    config.numeric_mean = [0.5] * len(config.numeric_features)
    config.numeric_std = [2.0] * len(config.numeric_features)
    encoder = PropensityEncoder(config)
    for seed in range(5):
        records = _records(200, seed, arrays)
        got = encoder.encode(records)
        expected = _reference_encode(encoder, records)
        assert set(got) == set(expected)
        for name, tensor in got.items():
            assert isinstance(tensor, torch.Tensor)
            np.testing.assert_array_equal(tensor.numpy(), expected[name], err_msg=name)
    assert encoder.encode([])["item_ids"].shape == (0, config.history_length + 1)


def test_codes_stay_valid_within_a_batch_when_the_cache_is_full():
    config = PropensityConfig(id_buckets=64)
    encoder = PropensityEncoder(config)
    encoder._ids = _IdCodes(64, max_size=50)
    records = _records(40, 1)
    for _ in range(3):
        got = encoder.encode(records)
        np.testing.assert_array_equal(got["item_match"].numpy(), _reference_encode(encoder, records)["item_match"])


def test_history_lists_of_different_lengths_are_refused():
    encoder = PropensityEncoder(PropensityConfig())
    with pytest.raises(ValueError):
        encoder.encode(
            [{"item_id": "1", "history_item_ids": ["1"], "history_event_types": [], "history_category_ids": []}]
        )


def test_numeric_matrix_reads_missing_values_as_zero():
    config = PropensityConfig()
    matrix = numeric_matrix([{}, {config.numeric_features[0]: 2}], config)
    assert matrix.shape == (2, len(config.numeric_features)) and matrix[0].sum() == 0


def test_many_distinct_ids_grow_the_code_arrays():
    config = PropensityConfig(id_buckets=8192)
    encoder = PropensityEncoder(config)
    records = [
        {
            "item_id": f"item-{i}",
            "category_id": f"cat-{i % 700}",
            "history_event_types": ["view"],
            "history_item_ids": [f"item-{i + 1}"],
            "history_category_ids": [f"cat-{i}"],
        }
        for i in range(3000)
    ]
    got = encoder.encode(records)
    expected = _reference_encode(encoder, records)
    for name in ("item_ids", "category_ids", "item_match", "category_match"):
        np.testing.assert_array_equal(got[name].numpy(), expected[name], err_msg=name)


@pytest.mark.parametrize(
    "values",
    [
        [0, 1, 3.5, -2.0, 1e4],  # the stream's records: plain numbers, numpy's one-call path
        [np.int64(3), np.float32(0.5), True, "2.5", 7],  # numpy scalars, bools, numeric text
        [1.0, float("nan"), 2],  # a NaN stays NaN, as in the general path
        [1.0, None, 2],  # None is 0
    ],
)
def test_numeric_matrix_equals_the_per_value_conversion(values):
    config = PropensityConfig()
    rng = random.Random(len(values))
    records = [{name: rng.choice(values) for name in config.numeric_features} for _ in range(50)]
    raw = np.array([[0.0 if r[name] is None else float(r[name]) for name in config.numeric_features] for r in records])
    for j, transform in enumerate(config.numeric_transforms):
        if transform == "log1p":
            raw[:, j] = np.sign(raw[:, j]) * np.log1p(np.abs(raw[:, j]))
    np.testing.assert_array_equal(numeric_matrix(records, config), raw)
