"""Stage lines with counts and elapsed time: what a person watching the demo sees.

progress = Progress(total=8, settings=settings)   # settings: each stage a tracked run
counts = progress.run("batch: files -> bronze -> silver -> gold", lambda: {"rows_in": 42})
progress.stages    # list[record.Stage], in the order they ran: the report's timeline
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from datetime import datetime, timezone
from typing import Any

from demo.record import Stage
from shared.settings import Settings
from shared.tracking import TrackedRun, track_run


class Progress:
    """Runs each stage, prints a line before and after it, and keeps what it counted."""

    def __init__(self, total: int, settings: Settings | None = None) -> None:
        self.total = total
        self.settings = settings
        self.stages: list[Stage] = []
        self.started = time.monotonic()

    def run(self, name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        number = len(self.stages) + 1
        print(f"[{number}/{self.total}] {name} ...", flush=True)
        started_at = datetime.now(timezone.utc)
        began = time.monotonic()
        with track_run(self.settings, "demo stage", name=name) if self.settings else nullcontext() as tracked:
            counts = fn() or {}
            if isinstance(tracked, TrackedRun):
                tracked.log_document(counts)
        run_id = tracked.run_id if isinstance(tracked, TrackedRun) else None
        stage = Stage(name, started_at, round(time.monotonic() - began, 2), counts, run_id)
        self.stages.append(stage)
        shown = ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in counts.items())
        print(
            f"[{number}/{self.total}] {name}: {shown} ({stage.seconds:.1f} s; "
            f"{time.monotonic() - self.started:.0f} s in)",
            flush=True,
        )
        return counts
