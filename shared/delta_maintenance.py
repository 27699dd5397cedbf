"""Keep a Delta table small: compact its small files, vacuum removed ones, expire its log,
without losing the versions a protected model was trained on.

    report = maintain_table(path, protect={12, 40}, target_file_mb=128,
                            deleted_file_retention_hours=168, log_retention_hours=720)

Each fold adds a small file per table (about 100 commits a day at a 15-minute loop), so
reads slow down with the file count until `optimize.compact` rewrites them as few large
ones. The files it replaced (and those a MERGE or overwrite replaced) stay on disk for
readers of older versions until `vacuum` deletes those removed longer ago than
`delta.deletedFileRetentionDuration`. The log's entries stay `delta.logRetentionDuration`,
after which delta-rs deletes those before its newest checkpoint (here and in the commit
hooks of every writer).

Protected versions (the `training_data` of the registry's protected models, see
`shared.retention`) stay readable by time travel:
- data files: vacuum gets them as `keep_versions`, so no file they read is deleted,
  however old;
- the log: reading version v needs the newest checkpoint at or before v and every commit
  from there to v. The log retention set on the table covers the oldest of those files
  of the oldest protected version, rounded up to whole days plus one day, so the commit
  hooks of writers between two maintenance runs cannot delete them either.
"""

from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deltalake import CommitProperties
from deltalake.exceptions import DeltaError

from shared.delta import open_table
from shared.errors import TableError

log = logging.getLogger(__name__)

LOG_RETENTION = "delta.logRetentionDuration"
DELETED_FILE_RETENTION = "delta.deletedFileRetentionDuration"
_LOG_FILE = re.compile(r"^(\d{20})\.(json|checkpoint(?:\.\d+\.\d+)?\.parquet)$")
_DAY_HOURS = 24


@dataclass
class TableMaintenance:
    """What maintaining one table did."""

    path: str
    version: int  # the table's version before maintenance
    files_before: int
    files_after: int = 0
    files_compacted: int = 0  # small files rewritten by optimize.compact
    files_vacuumed: int = 0  # removed files deleted from storage
    protected_versions: list[int] = field(default_factory=list)
    log_retention_hours: int = 0
    properties_set: dict[str, str] = field(default_factory=dict)
    unreadable_protected: list[int] = field(default_factory=list)  # lost before this run

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def interval(hours: float) -> str:
    """A Delta table-property duration of whole hours (rounded up)."""
    return f"interval {math.ceil(hours)} hours"


def log_files(path: Path) -> dict[int, list[Path]]:
    """Version -> its files in the table's `_delta_log` (the commit, any checkpoint parts)."""
    out: dict[int, list[Path]] = {}
    for file in (path / "_delta_log").iterdir():
        match = _LOG_FILE.match(file.name)
        if match:
            out.setdefault(int(match[1]), []).append(file)
    return out


def files_needed(path: Path, version: int) -> list[Path] | None:
    """The log files time travel to `version` reads: the newest checkpoint at or before it
    and the commits after that up to `version`. None when some are gone already."""
    files = log_files(path)
    checkpoints = [v for v, fs in files.items() if v <= version and any("checkpoint" in f.name for f in fs)]
    base = max(checkpoints, default=-1)
    needed = [f for f in files.get(base, []) if "checkpoint" in f.name]
    for v in range(base + 1, version + 1):
        commit = [f for f in files.get(v, []) if f.name.endswith(".json")]
        if not commit:
            return None
        needed += commit
    return needed


def log_retention_for(path: Path, protect: set[int], minimum_hours: float, now: float | None = None) -> int:
    """The log retention (whole hours) that keeps every version of `protect` readable:
    at least `minimum_hours`, more where their oldest needed log file is older."""
    now = time.time() if now is None else now
    hours = math.ceil(minimum_hours)
    for version in protect:
        needed = files_needed(path, version)
        if not needed:
            continue
        age_hours = (now - min(f.stat().st_mtime for f in needed)) / 3600
        # Whole days plus one: the property changes at most daily, and stays ahead of the
        # age for a day of writers' log clean-ups before the next maintenance run.
        hours = max(hours, (math.ceil(age_hours / _DAY_HOURS) + 1) * _DAY_HOURS)
    return hours


def maintain_table(
    path: Path,
    *,
    protect: set[int],
    target_file_mb: int,
    deleted_file_retention_hours: float,
    log_retention_hours: float,
    job: str = "jobs.maintain",
) -> TableMaintenance:
    """Compact, vacuum and expire the log of the table at `path`, keeping `protect` readable."""
    table = open_table(path)
    version = table.version()
    report = TableMaintenance(str(path), version, files_before=len(table.file_uris()))
    report.protected_versions = sorted(v for v in protect if v <= version)
    report.unreadable_protected = [v for v in report.protected_versions if files_needed(path, v) is None]
    if report.unreadable_protected:
        log.warning("%s: protected versions %s are no longer readable", path, report.unreadable_protected)
    keep = [v for v in report.protected_versions if v not in report.unreadable_protected]
    report.log_retention_hours = log_retention_for(path, set(keep), log_retention_hours)
    props = CommitProperties(custom_metadata={"job": job})
    try:
        wanted = {
            DELETED_FILE_RETENTION: interval(deleted_file_retention_hours),
            LOG_RETENTION: interval(report.log_retention_hours),
        }
        configured = table.metadata().configuration
        report.properties_set = {k: v for k, v in wanted.items() if configured.get(k) != v}
        if report.properties_set:
            table.alter.set_table_properties(report.properties_set, raise_if_not_exists=False)
        compacted = table.optimize.compact(target_size=target_file_mb * 1024 * 1024, commit_properties=props)
        report.files_compacted = int(compacted.get("numFilesRemoved", 0))
        table = open_table(path)
        deleted = table.vacuum(
            retention_hours=math.ceil(deleted_file_retention_hours),
            dry_run=False,
            enforce_retention_duration=False,  # the table's property is this setting (set above)
            keep_versions=keep or None,
            commit_properties=props,
        )
        report.files_vacuumed = len(deleted)
        table = open_table(path)
        # A checkpoint of the compacted state: readers (every fold's commit) load it instead
        # of replaying the small files' commits, and the log before it may now expire.
        table.create_checkpoint()
        table.cleanup_metadata()  # honours the log retention set above
    except DeltaError as exc:
        raise TableError(f"maintenance of {path} failed: {exc}") from exc
    report.files_after = len(open_table(path).file_uris())
    return report


def delta_tables(root: Path, layers: tuple[str, ...]) -> list[Path]:
    """The Delta tables directly under each layer folder of the lake."""
    out = []
    for layer in layers:
        folder = root / layer
        if folder.is_dir():
            out += sorted(p for p in folder.iterdir() if (p / "_delta_log").is_dir())
    return out
