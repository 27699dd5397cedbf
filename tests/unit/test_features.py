"""The shared session fold and item rates (pure logic, used by batch and stream)."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timezone

import numpy as np

from shared.features import (
    HISTORY_LENGTH,
    PRIOR_CART_RATE,
    SESSION_FEATURES,
    SESSION_GAP_SECONDS,
    item_rate_features,
    session_step,
)
from tests.reference_features import fold_user_events


def _event(ts: int, item: str = "i1", kind: str = "view", category: str | None = "c1", **extra):
    return {"user_id": "u1", "item_id": item, "event_type": kind, "ts": ts * 1000, "category_id": category, **extra}


def test_features_use_only_earlier_events():
    feats = fold_user_events([_event(0), _event(10, kind="add_to_cart"), _event(20)])
    assert [f["session_event_index"] for f in feats] == [0, 1, 2]
    assert feats[0]["prior_views"] == 0 and feats[0]["seconds_since_prev_event"] == -1.0
    assert feats[2]["prior_carts"] == 1 and feats[2]["prior_item_interactions"] == 2
    assert feats[2]["history_event_types"] == ["view", "add_to_cart"]
    assert set(feats[0]) == set(SESSION_FEATURES.names)


def test_a_gap_starts_a_new_session():
    feats = fold_user_events([_event(0), _event(SESSION_GAP_SECONDS + 1)])
    assert feats[1]["session_event_index"] == 0
    assert feats[0]["session_key"] != feats[1]["session_key"]


def test_a_new_source_session_starts_a_new_session():
    feats = fold_user_events([_event(0, session_id="s1"), _event(5, session_id="s2")])
    assert feats[1]["session_event_index"] == 0


def test_history_is_bounded():
    feats = fold_user_events([_event(i, item=f"i{i}") for i in range(HISTORY_LENGTH + 5)])
    assert len(feats[-1]["history_item_ids"]) == HISTORY_LENGTH
    assert feats[-1]["history_item_ids"][-1] == f"i{HISTORY_LENGTH + 3}"


def test_state_survives_a_json_round_trip_like_a_faust_table():
    events = [_event(0), _event(10, item="i2"), _event(20)]
    state, _ = session_step(None, events[0])
    state, _ = session_step(json.loads(json.dumps(state)), events[1])
    _, third = session_step(json.loads(json.dumps(state)), events[2])
    assert third == fold_user_events(events)[2]


def test_step_updates_the_state_in_place_and_a_copy_keeps_the_old_one():
    state, _ = session_step(None, _event(0))
    kept = copy.deepcopy(state)
    same, _ = session_step(state, _event(5))
    assert same is state and state["events_in_session"] == 2
    assert kept["events_in_session"] == 1 and kept["history"] == [["view", "i1", "c1"]]
    new_session, _ = session_step(state, _event(5 + SESSION_GAP_SECONDS + 1))
    assert new_session is not state and new_session["events_in_session"] == 1


def test_hour_of_day_is_the_utc_hour():
    for ts in (0, 3599, 3600, 86_399, 1_511_658_000, 1_511_661_599):
        feats = fold_user_events([_event(ts)])
        assert feats[0]["hour_of_day"] == datetime.fromtimestamp(ts, tz=timezone.utc).hour


def test_item_rates_are_smoothed_and_vectorized():
    unseen = item_rate_features(0, 0, 0)
    assert float(unseen["item_cart_rate"]) == PRIOR_CART_RATE
    many = item_rate_features(np.array([1000, 0]), np.array([500, 0]), np.array([0, 0]))
    assert many["item_cart_rate"][0] > 0.45 and many["item_cart_rate"][1] == PRIOR_CART_RATE
