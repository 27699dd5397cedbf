"""Small gold training tables built from rows of the real data sets, in the exact schemas
of shared.datasets, for the trainer's tests until the batch layer's `gold_lake` fixture
is available on this branch.

The rules follow shared.datasets: sentiment labels from stars and a split by review-id
quantile; propensity rows are views, labelled by a cart/purchase of the same item by the
same user within the horizon, split by time with one user bucket held out of train.

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


def propensity_frame(data_root: Path) -> pd.DataFrame:
    raw = pd.read_csv(
        data_root / TAOBAO, header=None, names=["user_id", "item_id", "category_id", "behavior", "ts"], dtype=str
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
    positives = events[events["event_type"].isin(["add_to_cart", "purchase"])][["user_id", "item_id", "ts"]]
    views = frame[frame["event_type"] == "view"].copy()
    joined = views[["event_id", "user_id", "item_id", "ts"]].merge(
        positives, on=["user_id", "item_id"], suffixes=("", "_pos")
    )
    horizon = pd.Timedelta(seconds=PROPENSITY_HORIZON_SECONDS)
    hit = joined[(joined["ts_pos"] > joined["ts"]) & (joined["ts_pos"] <= joined["ts"] + horizon)]
    views["label"] = views["event_id"].isin(set(hit["event_id"])).astype("int64")

    t_train, t_valid = views["ts"].quantile(list(PROPENSITY_SPLIT_QUANTILES))
    views["split"] = np.select([views["ts"] <= t_train, views["ts"] <= t_valid], ["train", "valid"], "test")
    held_out = views["user_id"].map(_user_bucket) == 0
    late_train = (views["split"] == "train") & (views["ts"] > t_train - horizon)
    views = views[~((views["split"] == "train") & (held_out | late_train))]
    return views.reset_index(drop=True)


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
    seed: int = 7,
) -> dict[str, str]:
    """Write gold/train_sentiment and gold/train_propensity; returns their paths."""
    sentiment = _sample(sentiment_frame(data_root), sentiment_rows, seed)
    propensity = _sample(propensity_frame(data_root), propensity_rows, seed)
    gold = lake_root / "gold"
    return {
        "gold/train_sentiment": _write(
            sentiment, SENTIMENT_TRAINING_SET.schema.arrow_schema(), gold / SENTIMENT_TRAINING_SET.table
        ),
        "gold/train_propensity": _write(
            propensity, PROPENSITY_TRAINING_SET.schema.arrow_schema(), gold / PROPENSITY_TRAINING_SET.table
        ),
    }
