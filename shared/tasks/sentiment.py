"""Review sentiment: review text -> negative / neutral / positive (from the star rating)."""

from __future__ import annotations

from shared.datasets import SENTIMENT_LABELS, SENTIMENT_TRAINING_SET
from shared.tasks.text import TextClassificationTask

SENTIMENT = TextClassificationTask(
    name="sentiment",
    training_set=SENTIMENT_TRAINING_SET,
    label_column="label",
    label_names=SENTIMENT_LABELS,
    primary_metric="macro_f1",
    description="review text -> negative / neutral / positive",
    class_weighted_loss=True,
    row_key="review_id",
)
