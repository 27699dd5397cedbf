"""Test hooks of jobs.fold: kill -9 the fold at a named point of its n-th batch.

    SHOPFLOW_FOLD__CRASH_AT=before_commit SHOPFLOW_FOLD__CRASH_BATCH=2 python -m jobs.fold

Points: before_commit (rows prepared, nothing written), between_tables (the dead
letters committed, the events not), during_write (a data file of the events' MERGE
appeared: delta-rs is between writing it and committing it, or just past), after_commit
(both tables committed, the group offsets not). Only tests set them; SIGKILL leaves no
chance to clean up, exactly like a kill -9 from outside.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from shared.settings import FoldSettings

log = logging.getLogger("jobs.fold")


def crash_point(fold: FoldSettings, point: str, batch: int) -> None:
    if fold.crash_at == point and batch == fold.crash_batch:
        log.warning("test hook: kill -9 at %s of batch %d", point, batch)
        logging.shutdown()
        os.kill(os.getpid(), signal.SIGKILL)


class FileWatch:
    """While armed and entered, SIGKILL the process as soon as a new data file appears under `root`."""

    def __init__(self, root: Path, armed: bool) -> None:
        self.root, self.armed = root, armed
        self._done = threading.Event()

    def _watch(self, before: set[str]) -> None:
        while not self._done.is_set():
            if {p.name for p in self.root.glob("*.parquet")} - before:
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(0.0005)

    def __enter__(self) -> FileWatch:
        if self.armed:
            before = {p.name for p in self.root.glob("*.parquet")}
            threading.Thread(target=self._watch, args=(before,), daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._done.set()
