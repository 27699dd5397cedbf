"""Task definitions: metrics, encoders and the propensity model's save/load round trip."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import torch

from shared.errors import ModelError
from shared.tasks import TASKS, classification_metrics, get_task, is_better
from shared.tasks.propensity_encoder import CANDIDATE_TOKEN, PropensityEncoder, bucket
from shared.tasks.propensity_model import PropensityConfig, PropensityModel


def click(**overrides: object) -> dict:
    record = {
        "event_id": "e1",
        "user_id": "u1",
        "session_id": None,
        "item_id": "i7",
        "event_type": "purchase",
        "ts": datetime(2017, 11, 26, 1, 5, tzinfo=timezone.utc),
        "query": None,
        "category_id": "c3",
        "session_key": "u1:0",
        "session_event_index": 2,
        "seconds_since_session_start": 40.0,
        "seconds_since_prev_event": 15.0,
        "prior_views": 2,
        "prior_carts": 0,
        "prior_favorites": 0,
        "prior_purchases": 0,
        "prior_searches": 0,
        "prior_item_interactions": 1,
        "prior_category_interactions": 2,
        "distinct_items_before": 2,
        "hour_of_day": 1,
        "history_event_types": ["view", "view"],
        "history_item_ids": ["i7", "i8"],
        "history_category_ids": ["c3", "c4"],
        "item_views": 12.0,
        "item_carts": 2.0,
        "item_purchases": 1.0,
        "item_cart_rate": 0.1,
        "item_purchase_rate": 0.04,
    }
    record.update(overrides)
    return record


def test_every_task_resolves_with_consistent_labels() -> None:
    for name in TASKS:
        task = get_task(name)
        assert task.name == name and task.num_labels == len(task.label_names) >= 2
        assert task.label_column in task.training_set.schema.names
    with pytest.raises(ModelError, match="unknown task"):
        get_task("nope")


def test_multiclass_metrics_match_hand_computed_values() -> None:
    y = np.array([0, 1, 2, 2])
    proba = np.array([[0.8, 0.1, 0.1], [0.2, 0.3, 0.5], [0.1, 0.1, 0.8], [0.1, 0.2, 0.7]])
    m = classification_metrics(y, proba, 3)
    assert m["accuracy"] == pytest.approx(0.75)
    # F1: label0 1.0, label1 0.0 (never predicted), label2 2*(2/3*1)/(2/3+1)=0.8
    assert m["macro_f1"] == pytest.approx((1.0 + 0.0 + 0.8) / 3)


def test_binary_metrics_have_aucs_and_nan_on_one_class() -> None:
    y = np.array([0, 0, 1, 1])
    proba = np.array([[0.9, 0.1], [0.6, 0.4], [0.65, 0.35], [0.2, 0.8]])
    m = classification_metrics(y, proba, 2)
    assert m["roc_auc"] == pytest.approx(0.75)
    assert 0 < m["pr_auc"] <= 1
    assert math.isnan(classification_metrics(np.array([0, 0]), proba[:2], 2)["roc_auc"])


def test_is_better_is_strict_and_nan_never_wins() -> None:
    assert is_better({"f": 0.6}, {"f": 0.5}, "f")
    assert not is_better({"f": 0.5}, {"f": 0.5}, "f")
    assert not is_better({"f": float("nan")}, {"f": 0.1}, "f")
    assert is_better({"f": 0.1}, {"f": float("nan")}, "f")


def test_propensity_encoder_right_aligns_and_hides_the_event_type() -> None:
    config = PropensityConfig(id_buckets=1024)
    encoder = PropensityEncoder(config)
    as_purchase = encoder.encode([click()])
    as_view = encoder.encode([click(event_type="view")])
    for key in as_purchase:  # the candidate's own type is the label's source: not an input
        assert torch.equal(as_purchase[key], as_view[key]), key
    types = as_purchase["event_type_ids"][0].tolist()
    assert types[-1] == CANDIDATE_TOKEN and types[:-3] == [0] * (config.history_length - 2)
    assert as_purchase["item_ids"][0, -1] == bucket("i7", 1024) == as_purchase["item_ids"][0, -3]
    assert as_purchase["item_match"][0, -3:].tolist() == [2, 1, 2]
    assert as_purchase["numeric"].shape == (1, len(config.numeric_features))
    empty_history = encoder.encode([click(history_event_types=[], history_item_ids=[], history_category_ids=[])])
    assert empty_history["event_type_ids"][0].tolist() == [0] * config.history_length + [CANDIDATE_TOKEN]


def test_propensity_model_round_trips_through_save_pretrained(tmp_path: Path) -> None:
    task = get_task("propensity")
    records = [click(prior_views=v, label=v % 2) for v in range(10)]
    model, encoder = task.build("", records)
    model.eval()
    task.save(model, encoder, tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    loaded, loaded_encoder = task.load(tmp_path / "m")
    assert isinstance(loaded, PropensityModel)
    assert loaded.config.numeric_mean == pytest.approx(model.config.numeric_mean)
    with torch.no_grad():
        expected = model(**encoder.encode(records)).logits
        actual = loaded.eval()(**loaded_encoder.encode(records)).logits
    assert torch.allclose(expected, actual)


def test_propensity_baselines_include_fitted_models_and_prior_rates() -> None:
    from shared.features import PRIOR_CART_RATE, PRIOR_PURCHASE_RATE
    from shared.tasks.propensity_baselines import user_prior_rate

    task = get_task("propensity")
    train = [
        click(event_type="view", prior_carts=v % 3, item_cart_rate=0.05 * (v % 4), label=int(v % 3 == 2))
        for v in range(60)
    ]
    test = [
        click(event_type="view", user_prior_views=0, user_prior_positives=0, item_cart_rate=0.2, label=0),
        click(event_type="view", user_prior_views=10, user_prior_positives=10, item_cart_rate=0.0, label=1),
    ]
    out = task.baselines(train, test, seed=13)
    assert set(out) == {"logreg_numeric", "gbt_numeric", "user_prior_rate", "item_prior_rate"}
    assert all(p.shape == (2, 2) and np.allclose(p.sum(axis=1), 1.0) for p in out.values())
    # An unseen user scores the platform prior; a user who carted after every view scores higher.
    assert out["user_prior_rate"][0, 1] == pytest.approx(PRIOR_CART_RATE + PRIOR_PURCHASE_RATE)
    assert out["user_prior_rate"][1, 1] > out["user_prior_rate"][0, 1]
    assert out["item_prior_rate"][:, 1].tolist() == [0.2, 0.0]
    assert user_prior_rate([{}]).tolist() == pytest.approx([PRIOR_CART_RATE + PRIOR_PURCHASE_RATE])


def test_propensity_splits_leave_one_horizon_between_them_and_stop_one_before_the_end() -> None:
    from batch.featurize.training_sets import split_bounds

    train_end, valid_from, valid_end, test_from = split_bounds(0, 7800, 600)
    assert (valid_from - train_end, test_from - valid_end) == (600, 600)
    # 7800 - 600 labelled seconds, less two gaps: 6000 cut 70/15/15.
    assert (train_end, valid_end - valid_from, 7800 - 600 - test_from) == (4200, 900, 900)
    assert split_bounds(0, 100, 600) == (0, 600, 600, 1200)  # too short: nothing is labelled in time
