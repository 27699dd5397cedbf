"""Look inside the model registry and move the champion alias.

usage: shopflow models list [--task TASK]
       shopflow models show TASK [VERSION|ALIAS]      (default: champion)
       shopflow models promote TASK VERSION [--alias champion] [--reason TEXT] [--force]

A promotion goes through `shared.promotion.promote`, like `train --promote` and the
retrain job: verify, check the baseline gate, flip the alias, announce to running
workers. `--force` promotes a version the gate refuses; its manifest records who, when
and why. The listing says each version's kind (trained or fallback_baseline), its gate
verdict and aliases, and per task which kind of model serves and why.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.errors import CorruptCheckpointError, ModelNotFoundError, WeightsReclaimedError
from shared.gate import model_kind
from shared.manifest import Manifest
from shared.options import option, start_job
from shared.registry import ModelRegistry
from shared.settings import Settings


@dataclass(frozen=True)
class ListOptions:
    task: str | None = option(None, help="only this task")


@dataclass(frozen=True)
class ShowOptions:
    task: str = option(help="task name", positional=True)
    ref: str = option("champion", help="version number or alias", positional=True)


@dataclass(frozen=True)
class PromoteOptions:
    task: str = option(help="task name", positional=True)
    version: int = option(help="version to promote", positional=True, ge=1)
    alias: str = option("champion", help="alias to point at it")
    reason: str = option(
        "promoted by hand (shopflow models promote)", help="kept in the announcement, log and manifest"
    )
    force: bool = option(False, help="promote even if the baseline gate refuses it (recorded in the manifest)")


@dataclass(frozen=True)
class ModelRow:
    task: str
    version: int
    aliases: tuple[str, ...]
    created_at: str | None
    primary_metric: str
    value: float | None
    status: str  # "ok", "corrupt: <why>" or "reclaimed: <when>"
    kind: str = ""  # trained | fallback_baseline ("" when unreadable)
    gate: str = ""  # passed | refused | exempt | none (no evidence: an older release's)
    why: str = ""  # the reason of its last promotion, when it was promoted


def _last_promotion(manifest: Manifest) -> str:
    done = [p for p in manifest.extra.get("promotions", []) if p.get("outcome") in ("promoted", "forced")]
    if not done:
        return ""
    last = done[-1]
    forced = f"forced by {last.get('by', '?')}: " if last["outcome"] == "forced" else ""
    return f"{forced}{last.get('reason', '')} ({last.get('at', '')})"


def _row(registry: ModelRegistry, task: str, version: int, aliases: dict[str, int]) -> ModelRow:
    tags = tuple(name for name, v in aliases.items() if v == version)
    try:
        # Verified, not just read: a corrupt version must look corrupt in the listing too.
        manifest = registry.verify(task, version)
    except WeightsReclaimedError:
        # Kept for its record (metrics, training data, why it was refused), not servable.
        kept = registry.manifest(task, version)
        reclaimed = kept.extra.get("weights_reclaimed", {})
        return ModelRow(
            task,
            version,
            tags,
            kept.created_at or None,
            kept.primary_metric,
            kept.primary_value,
            f"reclaimed: not servable, weights removed by the registry retention on {reclaimed.get('at', '?')}",
            kind=model_kind(kept),
            gate=str(kept.extra["gate"].get("verdict", "none")) if isinstance(kept.extra.get("gate"), dict) else "none",
            why=_last_promotion(kept),
        )
    except CorruptCheckpointError as exc:
        return ModelRow(task, version, tags, None, "", None, f"corrupt: {exc}")
    gate = manifest.extra.get("gate")
    return ModelRow(
        task,
        version,
        tags,
        manifest.created_at or None,
        manifest.primary_metric,
        manifest.primary_value,
        "ok",
        kind=model_kind(manifest),
        gate=str(gate.get("verdict", "none")) if isinstance(gate, dict) else "none",
        why=_last_promotion(manifest),
    )


def serving(registry: ModelRegistry, task: str) -> dict[str, Any]:
    """Which model serves `task` (its champion) and why: version, kind, the reason of its
    promotion; version None when nothing serves."""
    version = registry.resolve(task)
    if version is None:
        return {"task": task, "version": None, "kind": None, "why": "no champion: no version passed the baseline gate"}
    row = _row(registry, task, version, {"champion": version})
    return {"task": task, "version": version, "kind": row.kind, "why": row.why or "no promotion on record"}


def list_models(registry: ModelRegistry, task: str | None = None) -> list[ModelRow]:
    rows = []
    for name in [task] if task else registry.tasks():
        aliases = registry.aliases(name)
        rows += [_row(registry, name, v, aliases) for v in registry.versions(name)]
    return rows


def _resolve(registry: ModelRegistry, task: str, ref: str) -> int:
    if ref.isdigit():
        return int(ref)
    version = registry.resolve(task, ref)
    if version is None:
        raise ModelNotFoundError(f"task {task!r} has no alias {ref!r}; see `shopflow models list`")
    return version


def run_list(settings: Settings, options: ListOptions) -> list[ModelRow]:
    return list_models(ModelRegistry(settings.models.registry_root), options.task)


def _print_list(settings: Settings, options: ListOptions) -> None:
    rows = run_list(settings, options)
    if not rows:
        print(f"no models in {settings.models.registry_root}")
    for r in rows:
        value = "" if r.value is None else f"{r.primary_metric}={r.value:.4f}"
        print(
            f"{r.task:<15} v{r.version:<4} {','.join(r.aliases):<10} {r.kind:<18} gate={r.gate:<8} "
            f"{value:<20} {r.created_at or ''} {r.status}"
        )
    for r in rows:
        if "champion" in r.aliases:
            print(
                f"{r.task}: serving v{r.version}, a {r.kind or 'unreadable'} model: {r.why or 'no promotion on record'}"
            )
    for task in sorted({r.task for r in rows} - {r.task for r in rows if "champion" in r.aliases}):
        print(f"{task}: no champion: nothing serves (no version passed the baseline gate, and no fallback)")


def _print_show(settings: Settings, options: ShowOptions) -> None:
    registry = ModelRegistry(settings.models.registry_root)
    version = _resolve(registry, options.task, options.ref)
    try:
        manifest = registry.verify(options.task, version)
    except WeightsReclaimedError as exc:  # the record stays readable; say it cannot be served
        print(f"shopflow models show: {exc}", file=sys.stderr)
        manifest = registry.manifest(options.task, version)
    print(manifest.to_json())


def _print_promote(settings: Settings, options: PromoteOptions) -> None:
    from shared.promotion import promote

    result = promote(
        settings, options.task, options.version, reason=options.reason, alias=options.alias, force=options.force
    )
    print(result.summary())


SUBCOMMANDS: dict[str, tuple[type, Callable[[Settings, Any], None], str]] = {
    "list": (ListOptions, _print_list, "every version of every task, verified"),
    "show": (ShowOptions, _print_show, "one version's manifest, verified"),
    "promote": (PromoteOptions, _print_promote, "verify a version, point an alias at it, announce it"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__.split("\n\n")[1])
        return 0
    command, rest = (argv[0], argv[1:]) if argv else ("", [])
    if command not in SUBCOMMANDS:
        print(
            f"shopflow models: error: {'unknown subcommand ' + repr(command) if command else 'a subcommand is needed'}; choose one of "
            f"{', '.join(SUBCOMMANDS)} (see `shopflow models --help`)",
            file=sys.stderr,
        )
        return 2
    options_cls, action, help_ = SUBCOMMANDS[command]
    options, settings = start_job(options_cls, rest, prog=f"shopflow models {command}", doc=help_)
    action(settings, options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
