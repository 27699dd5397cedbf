"""Small gold training tables built from rows of the real data sets, in the exact schemas
of shared.datasets, for the trainer's tests until the batch layer's `gold_lake` fixture
is available on this branch.

The rules follow shared.datasets and batch.featurize.training_sets: sentiment labels
from stars and a split by review-id quantile; every click is a propensity example,
positive when it is (or is followed within the horizon by) a cart/purchase of the same
item by the same user, split by time with one user bucket kept out of train and valid.

    paths = build_gold(data_root, lake_root, sentiment_rows={"train": 200, "test": 100})
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from deltalake import write_deltalake

from shared.datasets import (
    PROPENSITY_HORIZON_SECONDS,
    PROPENSITY_SPLIT_QUANTILES,
    PROPENSITY_TRAINING_SET,
    SENTIMENT_SPLIT_QUANTILES,
    SENTIMENT_TRAINING_SET,
    TEST_USER_BUCKETS,
)
from shared.features import fold_user_events, item_rate_features

REVIEWS = "womens_clothing_reviews/womens_clothing_ecommerce_reviews.csv"
TAOBAO = "taobao_user_behavior/user_behavior_2017-11-26_0100-0310utc.csv"
_TAOBAO_TYPES = {"pv": "view", "cart": "add_to_cart", "fav": "favorite", "buy": "purchase"}


def sentiment_frame(data_root: Path) -> pd.DataFrame:
    raw = pd.read_csv(data_root / REVIEWS, keep_default_na=False, dtype=str)
    raw = raw.rename(columns={raw.columns[0]: "review_id"})
    title, body = raw["Title"].str.strip(), raw["Review Text"].str.strip()
    text = np.where((title != "") & (body != ""), title + ". " + body, title + body)
    rating = raw["Rating"].astype(int)
    frame = pd.DataFrame(
        {
            "review_id": raw["review_id"].astype("int64"),
            "clothing_id": raw["Clothing ID"].astype("int64"),
            "text": text,
            "rating": rating.astype("int64"),
            "recommended": raw["Recommended IND"].astype("int64"),
            "label": np.select([rating <= 2, rating == 3], [0, 1], 2).astype("int64"),
        }
    )
    frame = frame[frame["text"] != ""]
    q_train, q_valid = frame["review_id"].quantile(list(SENTIMENT_SPLIT_QUANTILES))
    frame["split"] = np.select(
        [frame["review_id"] <= q_train, frame["review_id"] <= q_valid], ["train", "valid"], "test"
    )
    return frame.reset_index(drop=True)


def _user_bucket(user: str) -> int:
    return int(hashlib.sha256(user.encode()).hexdigest(), 16) % TEST_USER_BUCKETS


def propensity_frame(data_root: Path, max_events: int | None = None) -> pd.DataFrame:
    """Gold propensity rows from the first `max_events` Taobao events (time-ordered)."""
    raw = pd.read_csv(
        data_root / TAOBAO, header=None, names=["user_id", "item_id", "category_id", "behavior", "ts"],
        dtype=str, nrows=max_events,
    )
    raw["event_type"] = raw["behavior"].map(_TAOBAO_TYPES)
    raw["ts"] = pd.to_datetime(raw["ts"].astype("int64"), unit="s", utc=True)
    raw["event_id"] = "tb-" + raw.index.astype(str)
    raw = raw.sort_values(["ts", "event_id"], kind="stable").reset_index(drop=True)

    events = raw[["event_id", "user_id", "item_id", "event_type", "ts", "category_id"]].copy()
    events["session_id"] = None
    events["query"] = None
    feats: dict[int, dict] = {}
    for _, group in events.groupby("user_id", sort=False):
        rows = group.to_dict("records")
        for index, f in zip(group.index, fold_user_events(rows)):
            feats[index] = f
    session = pd.DataFrame.from_dict(feats, orient="index").sort_index()

    # As-of item counts: events of the item strictly before this one, in time order.
    counts = {}
    for kind in ("view", "add_to_cart", "purchase"):
        is_kind = (events["event_type"] == kind).astype("int64")
        counts[kind] = is_kind.groupby(events["item_id"]).cumsum() - is_kind
    items = pd.DataFrame(item_rate_features(counts["view"], counts["add_to_cart"], counts["purchase"]))

    frame = pd.concat([events, session, items], axis=1)
    # Every click is an example: positive when it is a cart/purchase itself or the same
    # user carts/buys the same item within the horizon (shared.datasets' rule).
    positive_types = ["add_to_cart", "purchase"]
    positives = events[events["event_type"].isin(positive_types)][["user_id", "item_id", "ts"]]
    joined = events[["event_id", "user_id", "item_id", "ts"]].merge(
        positives, on=["user_id", "item_id"], suffixes=("", "_pos")
    )
    horizon = pd.Timedelta(seconds=PROPENSITY_HORIZON_SECONDS)
    hit = joined[(joined["ts_pos"] > joined["ts"]) & (joined["ts_pos"] <= joined["ts"] + horizon)]
    frame["label"] = (
        frame["event_type"].isin(positive_types) | frame["event_id"].isin(set(hit["event_id"]))
    ).astype("int64")

    seconds = frame["ts"].astype("int64") // 10**9
    valid_from, test_from = np.quantile(seconds, list(PROPENSITY_SPLIT_QUANTILES))
    last, h = seconds.max(), PROPENSITY_HORIZON_SECONDS
    held_out = frame["user_id"].map(_user_bucket) == 0
    frame["split"] = np.select(
        [
            (seconds >= test_from) & (seconds <= last - h),
            held_out,
            (seconds >= valid_from) & (seconds < test_from - h),
            seconds < valid_from - h,
        ],
        ["test", "", "valid", "train"],
        "",
    )
    return frame[frame["split"] != ""].reset_index(drop=True)


def _sample(frame: pd.DataFrame, rows: dict[str, int] | None, seed: int) -> pd.DataFrame:
    """`n` rows per split; up to a quarter of them positives, so a tiny slice of a rare
    label still has both classes to train and to compute an AUC on."""
    if rows is None:
        return frame
    parts = []
    for split, n in rows.items():
        part = frame[frame["split"] == split]
        positives = part[part["label"] > 0] if part["label"].nunique() == 2 and part["label"].mean() < 0.25 else part.iloc[:0]
        positives = positives.sample(n=min(n // 4, len(positives)), random_state=seed)
        rest = part.drop(positives.index)
        parts += [positives, rest.sample(n=min(n - len(positives), len(rest)), random_state=seed)]
    return pd.concat(parts).sort_index().reset_index(drop=True)


def _write(frame: pd.DataFrame, schema: pa.Schema, path: Path) -> str:
    table = pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)
    write_deltalake(str(path), table, mode="overwrite")
    return str(path)


def build_gold(
    data_root: Path,
    lake_root: Path,
    *,
    sentiment_rows: dict[str, int] | None = None,
    propensity_rows: dict[str, int] | None = None,
    max_events: int | None = None,
    seed: int = 7,
) -> dict[str, str]:
    """Write gold/train_sentiment and gold/train_propensity; returns their paths."""
    sentiment = _sample(sentiment_frame(data_root), sentiment_rows, seed)
    propensity = _sample(propensity_frame(data_root, max_events), propensity_rows, seed)
    gold = lake_root / "gold"
    return {
        "gold/train_sentiment": _write(
            sentiment, SENTIMENT_TRAINING_SET.schema.arrow_schema(), gold / SENTIMENT_TRAINING_SET.table
        ),
        "gold/train_propensity": _write(
            propensity, PROPENSITY_TRAINING_SET.schema.arrow_schema(), gold / PROPENSITY_TRAINING_SET.table
        ),
    }
