"""The metrics JSON every job writes: row counts, Delta versions read and written, seconds.

    with JobRun("clean", settings.metrics_dir) as run:
        run.read("silver/orders", 3)
        run.count("rows_in", 1000)
    # -> <metrics_dir>/clean-<UTC timestamp>.json, and run.path points at it
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class JobRun:
    job: str
    # None only while batch/ingest, clean and features still build JobRun(job) without
    # it (issue 11 moves them to run(settings, options)); then make it required.
    metrics_dir: Path | None = None
    counts: dict[str, int] = field(default_factory=dict)
    tables_read: dict[str, int | None] = field(default_factory=dict)
    tables_written: dict[str, dict[str, Any]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    status: str = "running"
    path: Path | None = None
    _started: float = field(default_factory=time.monotonic)
    _started_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())

    def read(self, table: str, version: int | None) -> None:
        self.tables_read[table] = version

    def wrote(self, table: str, version: int, rows: int, skipped: bool = False) -> None:
        self.tables_written[table] = {"version": version, "rows": rows, "skipped": skipped}

    def count(self, name: str, value: int) -> None:
        self.counts[name] = self.counts.get(name, 0) + int(value)

    def as_dict(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "status": self.status,
            "started_at": self._started_at,
            "seconds": round(time.monotonic() - self._started, 3),
            "counts": self.counts,
            "tables_read": self.tables_read,
            "tables_written": self.tables_written,
            **self.extra,
        }

    def __enter__(self) -> "JobRun":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.status = "failed" if exc_type else "succeeded"
        if exc is not None:
            self.extra["error"] = f"{exc_type.__name__}: {exc}"
        if self.metrics_dir is None:
            from shared.settings import get_settings

            self.metrics_dir = get_settings().metrics_dir
        self.path = write_metrics(self.metrics_dir, self.job, self.as_dict())


def write_metrics(directory: Path, job: str, payload: dict[str, Any]) -> Path:
    """`payload` as <directory>/<job>-<UTC timestamp>.json; returns the path."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    path = directory / f"{job}-{stamp}.json"
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    log.info("%s %s in %.1fs; metrics: %s", job, payload.get("status"), payload.get("seconds", 0), path)
    return path
