"""Keep the lake and the registry small: compact and vacuum the Delta tables, expire their
logs, reclaim the weights of old unprotected model versions, rotate per-run files.

usage: python -m jobs.maintain                         # all of it, now
       python -m jobs.maintain --keep-last-versions 3
       shopflow maintain --print-config                # the resolved options and settings
       (the loop runs it as its last step, at most once per SHOPFLOW_MAINTENANCE__INTERVAL)

Order matters: the registry retention runs first and says which Delta versions its
protected models (champion, challenger, the newest N, fallback baselines) were trained
on; the tables' vacuum and log retention keep exactly those readable
(`shared.retention`, `shared.delta_maintenance`). The item snapshot versions that served
the stream events folded within the log retention stay readable too: the propensity
training set reads each event's item counts back from the version that served it (older
events fall back to the loop cadence's counts). Tables maintained: every Delta table
under the lake's `maintenance.layers` (silver and gold by default: what the fold and
the features job write).
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa

from shared.contract.folded import stream_table_path
from shared.contract.item_snapshot import item_snapshot_path
from shared.delta import arrow_schema, read_arrow, table_exists
from shared.delta_maintenance import delta_tables, maintain_table
from shared.errors import ShopflowError, TableError
from shared.options import option, resolve, start_job
from shared.registry import ModelRegistry
from shared.retention import plan_registry, protected_table_versions, reclaim_weights, rotate_run_files
from shared.run_metrics import JobRun
from shared.settings import Settings

log = logging.getLogger("jobs.maintain")
JOB = "jobs.maintain"


@dataclass(frozen=True)
class MaintainOptions:
    keep_last_versions: int | None = option(
        None,
        help="newest model versions per task that keep their weights",
        setting="maintenance.keep_last_versions",
        ge=1,
    )
    deleted_file_retention_hours: float | None = option(
        None,
        help="hours a removed data file stays for readers of older versions",
        setting="maintenance.deleted_file_retention_hours",
        ge=0,
    )
    skip_registry: bool = option(False, help="leave the model registry alone")


@dataclass
class MaintainResult:
    tables: list[dict[str, Any]] = field(default_factory=list)
    protected_models: dict[str, dict[int, tuple[str, ...]]] = field(default_factory=dict)
    weights_reclaimed: dict[str, list[int]] = field(default_factory=dict)
    bytes_reclaimed: int = 0
    run_files_deleted: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def stamp_path(settings: Settings) -> Path:
    """When maintenance last finished (the loop's schedule reads it)."""
    return settings.stream.run_dir / "maintain.last"


def due(settings: Settings, every_seconds: float, now: datetime | None = None) -> bool:
    """Whether the last maintenance finished at least `every_seconds` ago (or never ran)."""
    try:
        last = datetime.fromisoformat(stamp_path(settings).read_text().strip())
    except (OSError, ValueError):
        return True
    return ((now or datetime.now(timezone.utc)) - last).total_seconds() >= every_seconds


def served_snapshot_versions(settings: Settings, within_hours: float, now: datetime | None = None) -> set[int]:
    """The item snapshot versions named by stream events folded in the last `within_hours`."""
    path = stream_table_path(settings)
    if not table_exists(path):
        return set()
    import pyarrow.compute as pc

    if "item_snapshot_version" not in arrow_schema(path).names:  # folded before events named their snapshot
        return set()
    rows = read_arrow(path, columns=["item_snapshot_version", "_folded_at"])
    since = (now or datetime.now(timezone.utc)) - timedelta(hours=within_hours)
    recent = rows.filter(pc.greater_equal(rows["_folded_at"], pa.scalar(since, rows.schema.field("_folded_at").type)))
    return {int(v) for v in pc.unique(recent["item_snapshot_version"]).to_pylist() if v is not None}


def run(settings: Settings, options: MaintainOptions = MaintainOptions()) -> MaintainResult:
    """Registry retention, then the lake's tables, then the per-run files; see the module docstring."""
    options = resolve(options, settings)
    m = settings.maintenance
    result = MaintainResult()
    with JobRun(JOB, settings.metrics_dir) as metrics:
        registry = ModelRegistry(settings.models.registry_root)
        assert options.keep_last_versions is not None and options.deleted_file_retention_hours is not None
        plans = plan_registry(registry, options.keep_last_versions)
        for plan in plans:
            result.protected_models[plan.task] = plan.protected
            if options.skip_registry:
                continue
            for version in plan.reclaim:
                result.bytes_reclaimed += reclaim_weights(registry, plan.task, version)
                result.weights_reclaimed.setdefault(plan.task, []).append(version)
                log.info("%s v%d: weights reclaimed (not protected)", plan.task, version)
        protected = protected_table_versions(registry, plans)
        snapshot = item_snapshot_path(settings).resolve()
        protected.setdefault(snapshot, set()).update(served_snapshot_versions(settings, m.log_retention_hours))
        for path in delta_tables(settings.lake.root, m.layers):
            try:
                report = maintain_table(
                    path,
                    protect=protected.get(path.resolve(), set()),
                    target_file_mb=m.target_file_mb,
                    deleted_file_retention_hours=options.deleted_file_retention_hours,
                    log_retention_hours=m.log_retention_hours,
                    job=JOB,
                )
            except TableError as exc:  # a concurrent writer won a conflict: the next run tries again
                log.warning("%s", exc)
                result.tables.append({"path": str(path), "error": str(exc)})
                metrics.count("tables_failed", 1)
                continue
            result.tables.append(report.to_dict())
            metrics.count("files_compacted", report.files_compacted)
            metrics.count("files_vacuumed", report.files_vacuumed)
            log.info(
                "%s: %d -> %d files, %d vacuumed, protected versions %s",
                path,
                report.files_before,
                report.files_after,
                report.files_vacuumed,
                report.protected_versions or "-",
            )
        result.run_files_deleted = len(rotate_run_files(settings.metrics_dir, m.keep_last_runs, m.max_run_age_days))
        metrics.count("weights_reclaimed", sum(len(v) for v in result.weights_reclaimed.values()))
        metrics.count("run_files_deleted", result.run_files_deleted)
        metrics.extra["tables"] = result.tables
    result.seconds = metrics.seconds
    stamp = stamp_path(settings)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(datetime.now(timezone.utc).isoformat() + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    options, settings = start_job(MaintainOptions, argv, prog="shopflow maintain", doc=__doc__)
    try:
        result = run(settings, options)
    except ShopflowError as exc:
        print(f"shopflow maintain: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result.to_dict(), default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
