"""The metrics JSON every job writes, and the typed result a job's `run()` returns.

with JobRun("clean", settings.metrics_dir) as run:
    run.read("silver/orders", 3)
    run.count("rows_in", 1000)
result = run.result()   # JobResult: tables read/written, counts, the metrics file
# -> <metrics_dir>/batch.clean-<UTC timestamp>.json, and run.path points at it
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TableWrite:
    """One table a job wrote: the Delta version it left, rows committed, or skipped."""

    version: int
    rows: int
    skipped: bool = False


@dataclass(frozen=True)
class JobResult:
    """What a job did, for the job that called it (and the metrics file, for people)."""

    job: str
    status: str
    seconds: float
    tables_read: Mapping[str, int | None]
    tables_written: Mapping[str, TableWrite]
    counts: Mapping[str, int]
    metrics_file: Path | None

    def wrote_anything(self) -> bool:
        return any(not w.skipped for w in self.tables_written.values())

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["metrics_file"] = None if self.metrics_file is None else str(self.metrics_file)
        return out


R = TypeVar("R", bound=JobResult)


@dataclass
class JobRun:
    job: str
    metrics_dir: Path
    counts: dict[str, int] = field(default_factory=dict)
    tables_read: dict[str, int | None] = field(default_factory=dict)
    tables_written: dict[str, TableWrite] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    status: str = "running"
    path: Path | None = None
    _started: float = field(default_factory=time.monotonic)
    _started_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())
    _seconds: float | None = None

    def read(self, table: str, version: int | None) -> None:
        self.tables_read[table] = version

    def wrote(self, table: str, version: int, rows: int, skipped: bool = False) -> None:
        self.tables_written[table] = TableWrite(version, rows, skipped)

    def count(self, name: str, value: int) -> None:
        self.counts[name] = self.counts.get(name, 0) + int(value)

    @property
    def seconds(self) -> float:
        return self._seconds if self._seconds is not None else round(time.monotonic() - self._started, 3)

    def as_dict(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "status": self.status,
            "started_at": self._started_at,
            "seconds": self.seconds,
            "counts": self.counts,
            "tables_read": self.tables_read,
            "tables_written": {name: asdict(w) for name, w in self.tables_written.items()},
            **self.extra,
        }

    def result(self, cls: type[R] = JobResult, **more: Any) -> R:  # type: ignore[assignment]
        """The run as a JobResult (or a job's subclass of it, with its `more` fields)."""
        return cls(
            job=self.job,
            status=self.status,
            seconds=self.seconds,
            tables_read=dict(self.tables_read),
            tables_written=dict(self.tables_written),
            counts=dict(self.counts),
            metrics_file=self.path,
            **more,
        )

    def __enter__(self) -> JobRun:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.status = "failed" if exc_type else "succeeded"
        self._seconds = round(time.monotonic() - self._started, 3)
        if exc is not None:
            self.extra["error"] = f"{exc_type.__name__}: {exc}"
        self.path = write_metrics(self.metrics_dir, self.job, self.as_dict())


def write_metrics(directory: Path, job: str, payload: dict[str, Any], *, name: str | None = None) -> Path:
    """`payload` as <directory>/<job>-<UTC timestamp>.json, or as <directory>/<name>.json
    when the file has a name people look for (e.g. train-<task>-v<N>); returns the path."""
    directory.mkdir(parents=True, exist_ok=True)
    if name is None:
        name = f"{job}-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S%fZ')}"
    path = directory / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    if "status" in payload:
        log.info("%s %s in %.1fs; metrics: %s", job, payload["status"], payload.get("seconds", 0), path)
    else:
        log.info("%s metrics: %s", job, path)
    return path
