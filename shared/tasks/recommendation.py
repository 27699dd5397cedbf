"""Recommendation prediction: review text -> did the reviewer recommend the product?

The whole task is this definition: the same gold reviews table, another label column,
another primary metric. The trainer, registry, predictor and scorer are unchanged.
"""

from __future__ import annotations

from shared.datasets import SENTIMENT_TRAINING_SET
from shared.tasks.text import TextClassificationTask

RECOMMENDATION = TextClassificationTask(
    name="recommendation",
    training_set=SENTIMENT_TRAINING_SET,
    label_column="recommended",
    label_names=("not_recommended", "recommended"),
    primary_metric="macro_f1",
    description="review text -> Recommended IND",
    class_weighted_loss=True,
    row_key="review_id",
)
