"""Real propensity models for the stream tests: built by the task, or trained by `batch.train`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from shared.pseudonymize import pseudonymize
from stream.steps import item_features_from_counts
from tests.reference_features import fold_user_events


def scoring_records(events: list[dict[str, Any]], key: bytes) -> list[dict[str, Any]]:
    """Events -> scoring records the batch way: pseudonymize, fold per user, prior item rates."""
    by_user: dict[str, list[dict[str, Any]]] = {}
    for event in sorted(events, key=lambda e: (e["ts"], e["event_id"])):
        pseudo = {**event, "user_id": pseudonymize(event["user_id"], "user", key=key)}
        by_user.setdefault(pseudo["user_id"], []).append(pseudo)
    out = []
    for user_events in by_user.values():
        for event, feats in zip(user_events, fold_user_events(user_events)):
            out.append({**event, **feats, **item_features_from_counts(0, 0, 0)})
    return out


def register_propensity_from_task(registry_root: Path, records: list[dict[str, Any]], work: Path) -> int:
    """Build a propensity model with the task's own builder, save it and register it.

    The model's encoder statistics are fitted on `records`; its weights are the GRU's
    initial ones. Used where the trainer is not needed (plumbing); the served-model tests
    use `train_propensity` below.
    """
    import torch

    from shared.registry import ModelRegistry
    from shared.tasks import get_task

    torch.manual_seed(0)
    task = get_task("propensity")
    model, encoder = task.build("", records)
    folder = work / f"propensity-{time.time_ns()}"
    task.save(model, encoder, folder)
    registry = ModelRegistry(registry_root)
    return registry.register(
        "propensity", folder, {"base_model": task.base_model_name(""), "metrics": {}, "note": "test build"}
    )


def train_propensity(table: Path, *, seed: int, promote: bool, samples: int = 400) -> int:
    """Smoke-train a propensity model with the project's trainer; returns its version."""
    import contextlib
    import io

    from batch.train import main as train_main

    out = io.StringIO()
    argv = [
        "--task",
        "propensity",
        "--table-path",
        str(table),
        "--max-train-samples",
        str(samples),
        "--seed",
        str(seed),
        "--device",
        "cpu",
        "--no-progress",
    ]
    with contextlib.redirect_stdout(out):
        train_main(argv + (["--promote"] if promote else []))
    return int(json.loads(out.getvalue().strip().splitlines()[-1])["version"])
