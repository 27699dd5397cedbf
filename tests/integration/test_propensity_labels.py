"""The propensity training set on tiny hand-made click logs, in real Spark: which events are
examples, where the horizon ends, which views go unlabelled, and that no feature of a view
depends on anything after it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from batch.featurize.sessions import sessionize
from batch.featurize.training_sets import propensity_training_set
from shared.datasets import PROPENSITY_TRAINING_SET
from shared.schemas import CLICK_EVENT

pytestmark = pytest.mark.integration

H = 600  # the horizon these tests build with, seconds
T0 = datetime(2017, 11, 26, 1, 0, tzinfo=timezone.utc)
# Pseudonymized ids are hex; these fall in user buckets 1, 2, 3, 4 (bucket 0 is held out
# of train and valid, so it would hide rows from the early splits).
U1, U2, U3, U4 = "00000001", "00000002", "00000003", "00000004"
LABEL_AND_SPLIT = ("label", "split")


def _click(eid: str, user: str, item: str, kind: str, second: int) -> dict:
    return {
        "event_id": eid,
        "user_id": user,
        "session_id": None,
        "item_id": item,
        "event_type": kind,
        "ts": T0 + timedelta(seconds=second),
        "query": None,
        "category_id": "c1",
        "source": "taobao",
    }


# first = T0, last = T0 + 10000 s: train ends at T0 + 5740 s, test starts at T0 + 8170 s.
BASE = [
    _click("a00", U4, "z", "view", 0),
    # u1: a view whose horizon ends exactly at a cart of another item -> positive
    _click("a01", U1, "p", "view", 1000),
    _click("a02", U1, "q", "add_to_cart", 1000 + H),
    # u1: a purchase one second past the horizon -> negative
    _click("a03", U1, "p", "view", 2000),
    _click("a04", U1, "r", "purchase", 2000 + H + 1),
    # u1: a cart at the very same second as the view is not "after" it -> negative
    _click("a05", U1, "s", "view", 3000),
    _click("a06", U1, "s", "add_to_cart", 3000),
    # item x: earlier view + cart, then one view at the same second as u2's view of x
    _click("a07", U3, "x", "view", 500),
    _click("a08", U3, "x", "add_to_cart", 700),
    _click("a09", U2, "x", "view", 4000),
    _click("a10", U4, "x", "view", 4000),
    # the data's end: u2's views at last - H (labelled) and last - H + 1 (not labelled)
    _click("a11", U2, "y", "view", 10000 - H),
    _click("a12", U2, "y", "view", 10000 - H + 1),
    _click("a13", U3, "z", "view", 10000),
    # item v, in 900-second snapshot periods (the default cadence; T0 starts one): a view
    # in period 4 (3600..4499 s), another later in the same period, one as period 5 opens
    _click("a14", U4, "v", "view", 3700),
    _click("a15", U4, "v", "view", 4499),
    _click("a16", U4, "v", "view", 4500),
]


def _training_rows(spark, clicks: list[dict]) -> dict[str, dict]:
    schema = CLICK_EVENT.spark_schema().add("source", "string")
    frame = spark.createDataFrame([tuple(c[n] for n in schema.names) for c in clicks], schema)
    rows = propensity_training_set(sessionize(frame, partitions=2), horizon_seconds=H).collect()
    return {r["event_id"]: r.asDict() for r in rows}


@pytest.fixture(scope="module")
def base_rows(spark) -> dict[str, dict]:
    return _training_rows(spark, BASE)


def test_only_views_are_examples_and_columns_follow_the_schema(base_rows) -> None:
    kinds = {c["event_id"]: c["event_type"] for c in BASE}
    assert base_rows and all(kinds[eid] == "view" for eid in base_rows)
    assert set(next(iter(base_rows.values()))) == set(PROPENSITY_TRAINING_SET.schema.names)


def test_label_is_any_cart_or_purchase_strictly_after_and_within_the_horizon(base_rows) -> None:
    assert base_rows["a01"]["label"] == 1  # another item, at exactly ts + horizon
    assert base_rows["a03"]["label"] == 0  # one second too late
    assert base_rows["a05"]["label"] == 0  # same second: not after the view
    assert {base_rows[e]["split"] for e in ("a01", "a03", "a05")} == {"train"}


def test_views_whose_horizon_passes_the_data_end_are_not_labelled(base_rows) -> None:
    assert base_rows["a11"]["split"] == "test" and base_rows["a11"]["label"] == 0
    assert "a12" not in base_rows and "a13" not in base_rows


def test_item_counts_are_those_of_the_snapshot_the_cadence_served(base_rows) -> None:
    x = base_rows["a09"]
    assert (x["item_views"], x["item_carts"]) == (1.0, 1.0)  # a10 is at the same second: not earlier
    # The snapshot serving period 4 was written as it opened: a14 is not in it yet.
    assert [base_rows[e]["item_views"] for e in ("a14", "a15", "a16")] == [0.0, 0.0, 2.0]


def test_user_counts_come_from_strictly_earlier_events(base_rows) -> None:
    u1 = base_rows["a05"]
    assert (u1["user_prior_views"], u1["user_prior_positives"]) == (2, 2)  # a06 (same second) not counted


def test_no_feature_of_a_view_depends_on_later_events(spark, base_rows) -> None:
    """Events added after 4000 s change labels, never a feature of an earlier view."""
    later = [
        _click("b01", U2, "x", "add_to_cart", 4001),
        _click("b02", U2, "w", "view", 4002),
        _click("b03", U3, "x", "purchase", 4003),
        _click("b04", U1, "p", "view", 4100),
    ]
    with_future = _training_rows(spark, BASE + later)
    assert base_rows["a09"]["label"] == 0 and with_future["a09"]["label"] == 1
    cutoff = base_rows["a09"]["ts"]
    for eid, row in base_rows.items():
        if row["ts"] <= cutoff:
            other = with_future[eid]
            changed = {k for k in row if k not in LABEL_AND_SPLIT and row[k] != other[k]}
            assert not changed, (eid, changed)
