"""The latest tracked runs, newest first, as a table: what trained, on which data, what
was decided.

usage: shopflow runs [--task propensity] [--limit 20]
       python -m jobs.runs ...

Runs are read from the tracking store (settings.tracking: a SQLite file under var/tracking
by default; MLFLOW_TRACKING_URI selects another). For everything a run holds, open it
through the MLflow client (the README shows how).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from shared.errors import ConfigError
from shared.options import option, start_job
from shared.settings import Settings
from shared.tracking import KIND_TAG, REGISTRY_VERSION_TAG, TASK_TAG, store_for, tracking_uri
from shared.tracking_data import mask_url


@dataclass(frozen=True)
class RunsOptions:
    task: str | None = option(None, help="only runs of this task")
    limit: int = option(20, help="how many runs", ge=1)


COLUMNS = ("started (UTC)", "run", "kind", "task", "status", "version", "metric", "decision", "run id")


def _metric(run: Any) -> str:
    """The run's headline figure: the primary metric of the model (or its comparison)."""
    metrics = run.data.metrics
    primary = run.data.tags.get("manifest.primary_metric")
    for key in (f"metrics.{primary}", "comparison.challenger.value", "metrics.roc_auc", "metrics.macro_f1"):
        if key in metrics:
            name = primary or key.rsplit(".", 1)[-1]
            return f"{name} {metrics[key]:.4f}"
    return ""


def _decision(run: Any) -> str:
    tags = run.data.tags
    if "decision.promote" in tags:
        verdict = "promoted" if tags.get("promoted") == "true" else "not promoted"
        return f"{verdict}: {tags.get('decision.reason', '')}"
    if "promoted" in tags:
        return "promoted" if tags["promoted"] == "true" else "not promoted"
    return ""


def rows_of(runs: list[Any]) -> list[tuple[str, ...]]:
    out = []
    for run in runs:
        tags = run.data.tags
        started = datetime.fromtimestamp(run.info.start_time / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        parent = tags.get("mlflow.parentRunId")
        name = ("  " if parent else "") + (run.info.run_name or "")
        out.append(
            (
                started,
                name,
                tags.get(KIND_TAG, ""),
                tags.get(TASK_TAG, ""),
                run.info.status,
                tags.get(REGISTRY_VERSION_TAG, ""),
                _metric(run),
                _decision(run)[:60],
                run.info.run_id,
            )
        )
    return out


def format_table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(COLUMNS, *rows)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in [COLUMNS, *rows]]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def latest_runs(settings: Settings, task: str | None, limit: int) -> list[Any]:
    """The newest `limit` runs of the experiment (of `task` only, if given)."""
    store = store_for(settings)
    if store is None:
        raise ConfigError("experiment tracking is off (SHOPFLOW_TRACKING__ENABLED=false)")
    if not store.connect():
        raise ConfigError(f"the tracking store at {mask_url(tracking_uri(settings))} does not answer")
    where = f"tags.`{TASK_TAG}` = '{task}'" if task else ""
    runs = store.call(
        "searching runs",
        store.client.search_runs,
        [store.experiment_id],
        filter_string=where,
        max_results=limit,
        order_by=["attributes.start_time DESC"],
    )
    return list(runs or [])


def main(argv: list[str] | None = None) -> int:
    options, settings = start_job(RunsOptions, argv, prog="shopflow runs", doc=__doc__)
    runs = latest_runs(settings, options.task, options.limit)
    print(f"tracking store: {mask_url(tracking_uri(settings))}, experiment {settings.tracking.experiment!r}")
    if not runs:
        print("no runs yet: `shopflow train --task propensity` makes one")
        return 0
    print(format_table(rows_of(runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
