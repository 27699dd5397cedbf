"""Who the champion is, how to load it, and a stamp of its files, through the registry.

The worker only sees these functions (as `ModelHolder`'s resolve/load/fingerprint), so
the scoring plumbing does not depend on how checkpoints are stored.

    resolve, load, fingerprint = champion_functions(get_settings())
    scorer = load(resolve())
"""

from __future__ import annotations

from collections.abc import Callable

from shared.errors import ModelError
from shared.predictor import load_predictor
from shared.registry import ModelRegistry
from shared.settings import Settings
from stream.scoring import Scorer

ChampionFunctions = tuple[Callable[[], "int | None"], Callable[[int], Scorer], Callable[[int], str]]


def champion_functions(settings: Settings) -> ChampionFunctions:
    """(resolve champion version, load + verify a version, stamp a version) for the task."""
    task = settings.stream.model_task
    registry = ModelRegistry(settings.models.registry_root)

    def resolve() -> int | None:
        return registry.resolve(task, alias="champion")

    def load(version: int) -> Scorer:
        # load_predictor verifies every checksum first: a half-written or tampered
        # checkpoint raises CorruptCheckpointError (a ModelError) before any weight is read.
        # One forward pass per scored part of a batch (see stream.pipeline), and a part
        # is the whole batch when the model is fast.
        return load_predictor(
            task,
            version=version,
            registry=registry,
            batch_size=max(settings.stream.score_part_events, settings.stream.batch_max_events),
        )

    def fingerprint(version: int) -> str:
        """Size and mtime of every file of the version and of the champion alias file
        (<task>/aliases/champion.json, rewritten by every promotion): a refused version
        whose stamp changed was repaired, replaced or promoted again."""
        try:
            folder = registry.path(task, version)
        except ModelError as exc:
            return f"missing: {exc}"
        alias = folder.parent.parent / "aliases" / "champion.json"
        files = sorted(p for p in folder.rglob("*") if p.is_file()) + [alias]
        stamps = []
        for path in files:
            try:
                st = path.stat()
                stamps.append(f"{path.name}:{st.st_size}:{st.st_mtime_ns}")
            except OSError:
                stamps.append(f"{path.name}:missing")
        return "|".join(stamps)

    return resolve, load, fingerprint
