"""Load a registered model and score records with it: the one serving path for the
trainer's evaluation, the bulk scorer and the stream worker.

Loading verifies every file's sha256 against the manifest first, so a truncated or
corrupt checkpoint raises CorruptCheckpointError instead of serving garbage.

    registry = ModelRegistry(settings.models.registry_root)
    predictor = load_predictor("propensity", registry=registry, device=settings.models.device)  # the champion
    predictor.score([row_of_train_propensity, ...])     # -> np.ndarray (n,)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from shared.errors import ModelNotFoundError
from shared.registry import ModelRegistry
from shared.tasks import Task, get_task

Record = dict[str, Any]


def resolve_device(preference: str = "auto") -> torch.device:
    """CUDA when present (or asked for), CPU otherwise (`preference`: settings.models.device)."""
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


class Predictor:
    """A loaded model + encoder; thread-compatible for reads (no state between calls)."""

    def __init__(
        self,
        task: Task,
        model: torch.nn.Module,
        encoder: Any,
        *,
        version: str,
        device: torch.device | None = None,
        batch_size: int = 64,
    ) -> None:
        self.task_def = task
        self.task: str = task.name
        self.model_name: str = task.model_name
        self.version: str = str(version)
        self.device = device or torch.device("cpu")
        self.model = model.to(self.device).eval()
        self.encoder = encoder
        self.batch_size = batch_size

    @property
    def n_labels(self) -> int:
        return self.task_def.num_labels

    @torch.inference_mode()
    def predict_proba(self, records: Sequence[Record]) -> np.ndarray:
        """Class probabilities, shape (n, n_labels)."""
        if len(records) == 0:
            return np.zeros((0, self.n_labels), dtype=np.float32)
        out = []
        for start in range(0, len(records), self.batch_size):
            batch = self.encoder.encode(records[start : start + self.batch_size])
            batch = {k: v.to(self.device) for k, v in batch.items()}
            logits = self.model(**batch).logits
            out.append(torch.softmax(logits.float(), dim=-1).cpu().numpy())
        return np.concatenate(out, axis=0)

    def score(self, records: Sequence[Record]) -> np.ndarray:
        """One number per record: P(label 1) for binary tasks, P(last label) otherwise."""
        return self.predict_proba(records)[:, self.task_def.score_index]


def load_predictor(
    task: str,
    *,
    version: int | None = None,
    alias: str = "champion",
    registry: ModelRegistry,
    device: torch.device | str | None = None,
    batch_size: int = 64,
) -> Predictor:
    """The predictor of `version`, or of the version `alias` points at; verified first.
    `device`: a torch device, or a preference ("auto", "cpu", "cuda"; default "auto")."""
    if version is None:
        version = registry.resolve(task, alias)
        if version is None:
            raise ModelNotFoundError(
                f"task {task!r} has no {alias!r} in {registry.root}: train one with "
                f"`shopflow train --task {task} --promote` or `shopflow models promote {task} N`"
            )
    registry.verify(task, version)
    task_def = get_task(task)
    model, encoder = task_def.load(registry.path(task, version))
    resolved = device if isinstance(device, torch.device) else resolve_device(device or "auto")
    return Predictor(task_def, model, encoder, version=str(version), device=resolved, batch_size=batch_size)


def quantize_int8(predictor: Predictor) -> Predictor:
    """A CPU copy of `predictor` with int8 dynamic quantization of its Linear/GRU layers.

    Worth it for the text models on CPU; measure the accuracy cost (bench/train.py) before
    serving it.
    """
    import copy
    import warnings

    from torch.ao.quantization import quantize_dynamic

    model = copy.deepcopy(predictor.model).cpu().eval()
    with warnings.catch_warnings():
        # Eager-mode quantization is deprecated in favour of torchao, which is not in the lock.
        warnings.simplefilter("ignore")
        quantized = quantize_dynamic(model, {torch.nn.Linear, torch.nn.GRU}, dtype=torch.qint8)
    return Predictor(
        predictor.task_def,
        quantized,
        predictor.encoder,
        version=f"{predictor.version}-int8",
        device=torch.device("cpu"),
        batch_size=predictor.batch_size,
    )
