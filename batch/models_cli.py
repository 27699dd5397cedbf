"""Look inside the model registry and move the champion alias.

usage: shopflow models list [--task TASK]
       shopflow models show TASK [VERSION|ALIAS]      (default: champion)
       shopflow models promote TASK VERSION [--alias champion]
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from shared.errors import CorruptCheckpointError, ModelNotFoundError
from shared.registry import ModelRegistry
from shared.settings import get_settings


def _row(registry: ModelRegistry, task: str, version: int, aliases: dict[str, int]) -> dict[str, Any]:
    tags = [name for name, v in aliases.items() if v == version]
    try:
        # Verified, not just read: a corrupt version must look corrupt in the listing too.
        manifest = registry.verify(task, version)
        primary = manifest.get("primary_metric", "")
        status = "ok"
    except CorruptCheckpointError as exc:
        manifest, primary, status = {}, "", f"corrupt: {exc}"
    return {
        "task": task,
        "version": version,
        "aliases": tags,
        "created_at": manifest.get("created_at"),
        "primary_metric": primary,
        "value": (manifest.get("metrics") or {}).get(primary),
        "status": status,
    }


def list_models(registry: ModelRegistry, task: str | None = None) -> list[dict[str, Any]]:
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shopflow models", description="inspect the model registry")
    sub = parser.add_subparsers(dest="command", required=True)
    p_list = sub.add_parser("list", help="every version of every task")
    p_list.add_argument("--task")
    p_show = sub.add_parser("show", help="one version's manifest, verified")
    p_show.add_argument("task")
    p_show.add_argument("ref", nargs="?", default="champion", help="version number or alias")
    p_promote = sub.add_parser("promote", help="verify a version and point an alias at it")
    p_promote.add_argument("task")
    p_promote.add_argument("version", type=int)
    p_promote.add_argument("--alias", default="champion")
    args = parser.parse_args(argv)
    registry = ModelRegistry()

    try:
        if args.command == "list":
            rows = list_models(registry, args.task)
            if not rows:
                print(f"no models in {registry.root}")
            for r in rows:
                value = "" if r["value"] is None else f"{r['primary_metric']}={r['value']:.4f}"
                tags = ",".join(r["aliases"])
                print(f"{r['task']:<15} v{r['version']:<4} {tags:<10} {value:<20} {r['created_at'] or ''} {r['status']}")
        elif args.command == "show":
            version = _resolve(registry, args.task, args.ref)
            manifest = registry.verify(args.task, version)
            print(json.dumps(manifest, indent=2, sort_keys=True))
        else:
            registry.promote(args.task, args.version, args.alias)
            print(f"{args.task}: {args.alias} -> v{args.version}")
            from stream.announce import announce_promotion  # running workers reload now

            settings = get_settings()
            if announce_promotion(settings, task=args.task, version=args.version, alias=args.alias):
                print(f"announced on {settings.kafka.models_topic}: running workers reload now")
            else:
                print("not announced (no broker answers): running workers reload at their next registry poll")
    except (ModelNotFoundError, CorruptCheckpointError) as exc:
        print(f"shopflow models: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
