"""Report: a registered propensity version against every baseline, on the valid and the
test split of the table version it was trained on, with paired 95% bootstrap intervals
over users (ROC-AUC, PR-AUC). Prints ONE JSON line.

usage: python -m bench.propensity_report [--version N] [--splits valid,test] [--resamples 1000] [--seed 13]
       (default: the latest registered version; train one with `shopflow train --task propensity`)

The baselines are fitted on the version's train rows exactly as the trainer fits them;
each difference is model - baseline, resampling users with all of their rows, so a
positive lower bound means the model is better on that split beyond the users' noise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench.propensity_report", description=__doc__.split("\n\n")[0])
    p.add_argument("--version", type=int, help="registered version (default: the latest)")
    p.add_argument("--splits", default="valid,test", help="comma-separated splits to report")
    p.add_argument("--resamples", type=int, default=1000)
    p.add_argument("--seed", type=int, default=13)
    return p.parse_args(argv)


def compare_split(task: Any, predictor: Any, train: list[dict], rows: list[dict], args: argparse.Namespace) -> dict:
    """The model and each baseline on `rows`, with paired intervals of their differences."""
    from batch.training.compare import paired_bootstrap

    labels = task.labels(rows)
    users = [r[task.group_key] for r in rows]
    model = predictor.predict_proba(rows)[:, task.score_index]
    baselines = task.baselines(train, rows, args.seed)
    out: dict[str, Any] = {
        "rows": len(rows),
        "users": len(set(users)),
        "positives": int(labels.sum()),
        "model": {k: round(v, 4) for k, v in task.metrics(labels, predictor.predict_proba(rows)).items()},
        "vs": {},
    }
    for name, proba in baselines.items():
        out["vs"][name] = {
            metric: paired_bootstrap(
                labels,
                proba[:, task.score_index],
                model,
                users,
                metric=metric,
                resamples=args.resamples,
                seed=args.seed,
            ).to_dict()
            for metric in ("roc_auc", "pr_auc")
        }
    return out


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import logging

    logging.disable(logging.WARNING)
    from batch.training.data import load_training_data
    from shared.predictor import load_predictor
    from shared.registry import ModelRegistry
    from shared.settings import get_settings
    from shared.tasks import get_task

    args = parse_args(argv)
    started = time.perf_counter()
    task = get_task("propensity")
    registry = ModelRegistry(get_settings().models.registry_root)
    versions = registry.versions(task.name)
    if not versions:
        print("bench.propensity_report: no propensity version registered: run `shopflow train --task propensity`")
        return 2
    version = args.version if args.version is not None else max(versions)
    manifest = registry.verify(task.name, version)
    table = manifest.training_data[task.training_set.table]
    seed = int(manifest.training.get("seed", args.seed))
    max_train = manifest.training.get("max_train_samples")
    doc: dict[str, Any] = {
        "version": version,
        "table": table.path,
        "delta_version": table.delta_version,
        "train_seconds": manifest.training.get("seconds"),
        "best_step": manifest.training.get("best_step"),
        "steps": manifest.training.get("steps"),
        "confidence": 0.95,
        "resamples": args.resamples,
        "difference": "model - baseline",
    }
    predictor = load_predictor(task.name, version=version, registry=registry, device="cpu")
    for split in [s.strip() for s in args.splits.split(",") if s.strip()]:
        data = load_training_data(
            task,
            table.path,
            delta_version=table.delta_version,
            seed=seed,
            max_train_samples=max_train,
            eval_split=split,
        )
        doc[split] = compare_split(task, predictor, data.train, data.test, args)
    doc["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(doc))
    return 0


if __name__ == "__main__":
    if __package__ in (None, ""):
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main())
