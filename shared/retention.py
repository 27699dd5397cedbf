"""What the registry and the per-run files keep: the registry retention and the rotation of metrics files.

    plans = plan_registry(registry, keep_last=5)
    for plan in plans:
        for version in plan.reclaim:
            reclaim_weights(registry, plan.task, version)   # manifest kept, weights gone
    protected_table_versions(registry, plans)   # {table path: {delta versions}}: vacuum keeps them
    rotate_run_files(settings.metrics_dir, keep_last=200, max_age_days=14)

Protected versions keep their weights: the versions an alias points at (champion,
challenger, any other), the newest `keep_last` of the task, and fallback baselines
(manifest `kind: fallback_baseline`). Every other version loses its weights and keeps
its manifest, which records when they were reclaimed; `ModelRegistry.verify` then
refuses it with one line (`WeightsReclaimedError`). The Delta versions a protected model
was trained on (`training_data`) are what the lake's vacuum and log retention keep
readable (`shared.delta_maintenance`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from shared.errors import ModelError
from shared.manifest import Manifest
from shared.registry import MANIFEST, WEIGHTS_RECLAIMED, ModelRegistry, _write_text_durably

FALLBACK_BASELINE = "fallback_baseline"
# <job>-<UTC timestamp>.json, as shared.run_metrics.write_metrics names a run's file.
_RUN_FILE = re.compile(r"^(?P<kind>.+)-\d{8}T\d{6}\d*Z\.json$")


@dataclass(frozen=True)
class TaskRetention:
    """One task's versions: which are protected (and why), which lose their weights now."""

    task: str
    protected: dict[int, tuple[str, ...]] = field(default_factory=dict)  # version -> reasons
    reclaim: tuple[int, ...] = ()  # unprotected, weights still there
    reclaimed: tuple[int, ...] = ()  # unprotected, weights already gone


def is_reclaimed(manifest: Manifest) -> bool:
    return bool(manifest.extra.get(WEIGHTS_RECLAIMED))


def plan_task(registry: ModelRegistry, task: str, keep_last: int) -> TaskRetention:
    """Which of `task`'s versions keep their weights; see the module docstring."""
    versions = registry.versions(task)
    reasons: dict[int, list[str]] = {}
    for alias, version in registry.aliases(task).items():
        reasons.setdefault(version, []).append(alias)
    for version in versions[-keep_last:]:
        reasons.setdefault(version, []).append(f"last {keep_last}")
    reclaim, reclaimed = [], []
    for version in versions:
        manifest = _manifest_or_none(registry, task, version)
        if manifest is not None and manifest.extra.get("kind") == FALLBACK_BASELINE:
            reasons.setdefault(version, []).append(FALLBACK_BASELINE)
        if version in reasons or manifest is None:  # an unreadable manifest: left for a person to look at
            continue
        if is_reclaimed(manifest) and not _weight_files(registry, task, version):
            reclaimed.append(version)
        else:
            reclaim.append(version)
    return TaskRetention(
        task,
        {v: tuple(r) for v, r in sorted(reasons.items()) if v in versions},
        tuple(reclaim),
        tuple(reclaimed),
    )


def plan_registry(registry: ModelRegistry, keep_last: int) -> list[TaskRetention]:
    return [plan_task(registry, task, keep_last) for task in registry.tasks()]


def reclaim_weights(registry: ModelRegistry, task: str, version: int, reason: str = "registry retention") -> int:
    """Remove every file of `version` but its manifest, which records the reclaim; returns bytes freed.

    The manifest is marked first (atomically), so a crash in between leaves a version
    that is refused as reclaimed and whose leftover files the next run removes.
    """
    folder = registry.path(task, version)
    manifest = registry.manifest(task, version)
    if not is_reclaimed(manifest):
        mark = {"at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "reason": reason}
        _write_text_durably(folder / MANIFEST, manifest.with_fields(**{WEIGHTS_RECLAIMED: mark}).to_json())
    freed = 0
    for file in _weight_files(registry, task, version):
        freed += file.stat().st_size
        file.unlink()
    for sub in sorted((p for p in folder.rglob("*") if p.is_dir()), reverse=True):
        if not any(sub.iterdir()):
            sub.rmdir()
    return freed


def protected_table_versions(registry: ModelRegistry, plans: Iterable[TaskRetention]) -> dict[Path, set[int]]:
    """Resolved table path -> the Delta versions protected models were trained on."""
    out: dict[Path, set[int]] = {}
    for plan in plans:
        for version in plan.protected:
            manifest = _manifest_or_none(registry, plan.task, version)
            for table in (manifest.training_data if manifest else {}).values():
                out.setdefault(Path(table.path).resolve(), set()).add(table.delta_version)
    return out


def rotate_run_files(directory: Path, keep_last: int, max_age_days: float, now: float | None = None) -> list[Path]:
    """Delete per-run files (<kind>-<UTC timestamp>.json) beyond the newest `keep_last` of
    their kind or older than `max_age_days`; the newest of each kind always stays. Files
    named otherwise (train-<task>-v<N>.json) are left alone. Returns the files deleted."""
    if not directory.is_dir():
        return []
    now = time.time() if now is None else now
    kinds: dict[str, list[Path]] = {}
    for file in directory.iterdir():
        match = _RUN_FILE.match(file.name)
        if match and file.is_file():
            kinds.setdefault(match["kind"], []).append(file)
    deleted = []
    for files in kinds.values():
        files.sort(key=lambda p: p.name, reverse=True)  # the timestamp sorts as text
        for rank, file in enumerate(files):
            too_old = now - file.stat().st_mtime > max_age_days * 86400
            if rank > 0 and (rank >= keep_last or too_old):
                file.unlink(missing_ok=True)
                deleted.append(file)
    return deleted


def _manifest_or_none(registry: ModelRegistry, task: str, version: int) -> Manifest | None:
    try:
        return registry.manifest(task, version)
    except ModelError:  # half-written or unreadable: it protects nothing
        return None


def _weight_files(registry: ModelRegistry, task: str, version: int) -> list[Path]:
    folder = registry.path(task, version)
    return [p for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST]
