"""Who the champion is and how to load it, through the training side's registry.

The worker only sees these two functions (as `ModelHolder`'s resolve/load), so the
scoring plumbing does not depend on how checkpoints are stored.

    resolve, load = champion_functions(get_settings())
    scorer = load(resolve())
"""

from __future__ import annotations

from typing import Callable

from shared.predictor import load_predictor
from shared.registry import ModelRegistry
from shared.settings import Settings
from stream.scoring import Scorer


def champion_functions(settings: Settings) -> tuple[Callable[[], int | None], Callable[[int], Scorer]]:
    """(resolve champion version, load + verify a version) for the configured task."""
    task = settings.stream.model_task
    registry = ModelRegistry(settings.models.registry_root)

    def resolve() -> int | None:
        return registry.resolve(task, alias="champion")

    def load(version: int) -> Scorer:
        # load_predictor verifies every checksum first: a half-written or tampered
        # checkpoint raises CorruptCheckpointError (a ModelError) before any weight is read.
        return load_predictor(task, version=version, registry=registry)

    return resolve, load
