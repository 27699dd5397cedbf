"""The model registry mirrored into MLflow's: each registry version an MLflow model
version tagged with it, each registry alias (champion, challenger) an MLflow alias.

The registry is the source of truth and the only thing the worker reads; MLflow gets a
copy so people comparing runs see which version serves. A mirror that fell behind (the
store was down during a promotion) is caught up by the next `sync_task`, which every
tracked run start and every promotion calls.

    sync_task(client, registry, "propensity", "shopflow-propensity", runs={3: run_id})
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.registry import ModelRegistry

REGISTRY_VERSION_TAG = "shopflow.registry_version"
TASK_TAG = "shopflow.task"


@dataclass
class SyncResult:
    created: dict[int, str] = field(default_factory=dict)  # registry version -> MLflow version
    aliases: dict[str, int] = field(default_factory=dict)  # alias -> registry version, as mirrored
    moved: list[str] = field(default_factory=list)  # aliases set or removed by this sync


def mirrored_versions(client: Any, model_name: str) -> dict[int, Any]:
    """Registry version -> the MLflow model version that mirrors it."""
    out: dict[int, Any] = {}
    for mv in client.search_model_versions(f"name='{model_name}'"):
        tag = (mv.tags or {}).get(REGISTRY_VERSION_TAG)
        if tag is not None and str(tag).isdigit():
            out.setdefault(int(tag), mv)
    return out


def mlflow_aliases(client: Any, model_name: str, versions: Mapping[int, Any]) -> dict[str, int]:
    """The MLflow aliases of `model_name`, as registry versions (None-free)."""
    by_mlflow = {str(mv.version): registry_version for registry_version, mv in versions.items()}
    model = client.get_registered_model(model_name)
    return {alias: by_mlflow[str(v)] for alias, v in (model.aliases or {}).items() if str(v) in by_mlflow}


def _ensure_model(client: Any, model_name: str, task: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(model_name)
    except MlflowException:
        try:
            client.create_registered_model(
                model_name,
                tags={TASK_TAG: task},
                description=f"Mirror of shopflow's model registry for task {task!r}: the registry is the truth.",
            )
        except MlflowException:
            client.get_registered_model(model_name)  # another process created it meanwhile


def sync_task(
    client: Any,
    registry: ModelRegistry,
    task: str,
    model_name: str,
    *,
    runs: Mapping[int, str] | None = None,
) -> SyncResult:
    """Create the MLflow model versions the registry has and MLflow lacks (linked to the
    run in `runs` that made them, where known), then point every MLflow alias where the
    registry's points and remove those the registry does not have."""
    result = SyncResult()
    versions = registry.versions(task)
    if not versions:
        return result
    _ensure_model(client, model_name, task)
    mirrored = mirrored_versions(client, model_name)
    for version in versions:
        if version in mirrored:
            continue
        manifest = registry.manifest(task, version)
        tags = {REGISTRY_VERSION_TAG: str(version), TASK_TAG: task}
        kind = manifest.extra.get("kind")
        if kind:
            tags["shopflow.kind"] = str(kind)
        mv = client.create_model_version(
            model_name,
            source=str(registry.path(task, version)),
            run_id=(runs or {}).get(version),
            tags=tags,
            description=f"registry version {version} of {task} ({manifest.created_at})",
        )
        mirrored[version] = mv
        result.created[version] = str(mv.version)
    wanted = {alias: v for alias, v in registry.aliases(task).items() if v in mirrored}
    current = client.get_registered_model(model_name).aliases or {}
    for alias, version in wanted.items():
        target = str(mirrored[version].version)
        if str(current.get(alias)) != target:
            client.set_registered_model_alias(model_name, alias, target)
            result.moved.append(alias)
    for alias in set(current) - set(wanted):
        client.delete_registered_model_alias(model_name, alias)
        result.moved.append(alias)
    result.aliases = wanted
    return result
