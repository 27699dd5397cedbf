"""Stage lines with counts and elapsed time: what a person watching the demo sees.

progress = Progress(total=8)
counts = progress.run("batch: files -> bronze -> silver -> gold", lambda: {"rows_in": 42})
progress.stages    # list[record.Stage], in the order they ran: the report's timeline
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from demo.record import Stage


class Progress:
    """Runs each stage, prints a line before and after it, and keeps what it counted."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.stages: list[Stage] = []
        self.started = time.monotonic()

    def run(self, name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        number = len(self.stages) + 1
        print(f"[{number}/{self.total}] {name} ...", flush=True)
        started_at = datetime.now(timezone.utc)
        began = time.monotonic()
        counts = fn() or {}
        stage = Stage(name, started_at, round(time.monotonic() - began, 2), counts)
        self.stages.append(stage)
        shown = ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in counts.items())
        print(
            f"[{number}/{self.total}] {name}: {shown} ({stage.seconds:.1f} s; "
            f"{time.monotonic() - self.started:.0f} s in)",
            flush=True,
        )
        return counts
