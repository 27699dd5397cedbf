"""Gold training sets: their table names, schemas and split rules, defined once.

`batch.features` writes these tables; the trainer and the evaluators read them. Every
row carries `split` in {"train", "valid", "test"}; the split is decided by time (and,
for propensity, also by user), so evaluation never sees the future.

    from shared.datasets import SENTIMENT_TRAINING_SET, SPLITS
    SENTIMENT_TRAINING_SET.table    # -> "train_sentiment" under the gold layer
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.features import ITEM_FEATURES, SESSION_FEATURES
from shared.schemas import CLICK_EVENT, FieldSpec, RecordSchema

SPLITS = ("train", "valid", "test")
SENTIMENT_LABELS = ("negative", "neutral", "positive")
# Reviews have no date: the upstream row id is the only order, so it stands in for time.
SENTIMENT_SPLIT_QUANTILES = (0.8, 0.9)  # review-id quantiles ending train and valid
# Propensity: every view is an example (the viewed item is the candidate); it is positive
# when the same user adds any item to the cart or buys strictly after the view and within
# the horizon (`features.propensity_horizon_minutes`; this is its default). Each split ends
# one horizon before the next begins, so no label peeks past a cutoff.
PROPENSITY_HORIZON_SECONDS = 10 * 60
# How often a new item snapshot reaches the worker: the loop's interval (`loop.interval`;
# this is its default). History rows take the item counts of the snapshot this cadence
# would have served them (every event before the start of their period).
ITEM_SNAPSHOT_SECONDS = 15 * 60
PROPENSITY_SPLIT_QUANTILES = (0.7, 0.85)  # fractions of the labelled time span ending train and valid
TEST_USER_BUCKETS = 5  # users whose hash bucket is 0 are held out of train entirely
# Columns of train_propensity a model must never take as input: the event's own type is
# constant (view), the user counts exist offline only, and ids/timestamps/split do not generalize.
PROPENSITY_NON_INPUTS = (
    "event_id",
    "user_id",
    "session_id",
    "event_type",
    "ts",
    "query",
    "session_key",
    "user_prior_views",
    "user_prior_positives",
    "label",
    "split",
)


@dataclass(frozen=True)
class TrainingSet:
    table: str
    schema: RecordSchema
    label_column: str
    # Columns that name each row once: the trainer reads rows in this order, not in the
    # order the table's files happen to hold them (see batch.training.data).
    row_key: tuple[str, ...]


SENTIMENT_TRAINING_SET = TrainingSet(
    table="train_sentiment",
    label_column="label",
    row_key=("review_id",),
    schema=RecordSchema(
        "train_sentiment",
        (
            FieldSpec("review_id", "int64"),
            FieldSpec("clothing_id", "int64"),
            FieldSpec("text", "string", doc="Title + '. ' + Review Text"),
            FieldSpec("rating", "int64"),
            FieldSpec("recommended", "int64", doc="Recommended IND (0/1)"),
            FieldSpec("label", "int64", doc="0 negative (1-2*), 1 neutral (3*), 2 positive (4-5*)"),
            FieldSpec("split", "string", allowed=SPLITS),
        ),
    ),
)

PROPENSITY_TRAINING_SET = TrainingSet(
    table="train_propensity",
    label_column="label",
    row_key=("event_id",),
    schema=RecordSchema(
        "train_propensity",
        CLICK_EVENT.fields
        + SESSION_FEATURES.fields
        + ITEM_FEATURES.fields
        + (
            # The user's counts over all their strictly earlier events (any session): the
            # `user_prior_rate` baseline's input, not a model input (the stream has no such state).
            FieldSpec("user_prior_views", "int64"),
            FieldSpec("user_prior_positives", "int64", doc="earlier add-to-carts + purchases"),
            FieldSpec("label", "int64", doc="1 if the user carts or buys any item within the horizon"),
            FieldSpec("split", "string", allowed=SPLITS),
        ),
    ),
)

# The item snapshot the stream worker enriches with: counts over all silver clicks.
ITEM_CLICK_STATS = RecordSchema(
    "item_click_stats",
    (
        FieldSpec("item_id", "string"),
        FieldSpec("views", "int64"),
        FieldSpec("carts", "int64"),
        FieldSpec("favorites", "int64"),
        FieldSpec("purchases", "int64"),
    )
    + ITEM_FEATURES.fields,
)
