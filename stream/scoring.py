"""The model the worker serves, and how a new champion replaces it without a restart.

`Scorer` is all the worker needs of a model. `ModelHolder` owns the serving scorer:
`refresh()` asks who the champion is and, when it changed, loads and verifies it in a
background thread (never on the event loop that feeds the batches); the result waits
in `pending` until the batch loop calls `swap()` between two batches, so every batch is
scored by exactly one model. A version that fails to load or verify is refused: logged,
counted, remembered (not retried on every poll), and the old model keeps serving.

    holder = ModelHolder(resolve=champion_version, load=load_version)
    await holder.refresh()
    scorer = holder.swap()          # between batches
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np

from shared.errors import ModelError, ShopflowError

log = logging.getLogger(__name__)


@runtime_checkable
class Scorer(Protocol):
    """A loaded model: records with CLICK_EVENT + SESSION_FEATURES + ITEM_FEATURES fields."""

    task: str
    model_name: str
    version: str

    def score(self, records: list[dict[str, Any]]) -> np.ndarray: ...


Resolve = Callable[[], "int | None"]
Load = Callable[[int], Scorer]
OnEvent = Callable[[str, str], None]  # (what happened, version)


class ModelHolder:
    """The serving scorer, a pending replacement, and the versions refused so far."""

    def __init__(self, resolve: Resolve, load: Load, on_event: OnEvent | None = None) -> None:
        self._resolve = resolve
        self._load = load
        self._on_event = on_event or (lambda what, version: None)
        self.current: Scorer | None = None
        self.pending: Scorer | None = None
        self.refused: set[str] = set()
        self._loading: str | None = None
        # One loader thread: two loads never race, and a slow load never blocks scoring.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-load")
        self._lock = asyncio.Lock()

    def _wanted(self, version: int | None) -> str | None:
        if version is None:
            return None
        wanted = str(version)
        serving = {s.version for s in (self.current, self.pending) if s is not None}
        if wanted in serving or wanted in self.refused:
            return None
        return wanted

    async def refresh(self) -> bool:
        """Load the champion if it changed; True when a new scorer is now pending."""
        async with self._lock:
            loop = asyncio.get_running_loop()
            try:
                version = await loop.run_in_executor(self._executor, self._resolve)
            except ShopflowError as exc:
                log.warning("cannot resolve the champion (keeping the current model): %s", exc)
                return False
            wanted = self._wanted(version)
            if wanted is None:
                return False
            self._loading = wanted
            try:
                scorer = await loop.run_in_executor(self._executor, self._load, int(wanted))
            except Exception as exc:  # noqa: BLE001 - any failure to load means: do not serve it
                self.refused.add(wanted)
                self._on_event("refused", wanted)
                log.error("refused model version %s, keeping %s: %s", wanted,
                          self.current.version if self.current else "none", exc)
                return False
            finally:
                self._loading = None
            if not isinstance(scorer, Scorer):
                self.refused.add(wanted)
                self._on_event("refused", wanted)
                raise ModelError(f"loader returned {type(scorer).__name__}, not a Scorer")
            self.pending = scorer
            self._on_event("loaded", wanted)
            log.info("model %s version %s loaded; it serves from the next batch",
                     scorer.model_name, scorer.version)
            return True

    def load_now(self) -> bool:
        """Blocking `refresh` for start-up, before the event loop serves anything."""
        try:
            wanted = self._wanted(self._resolve())
        except ShopflowError as exc:
            log.warning("cannot resolve the champion yet: %s", exc)
            return False
        if wanted is None:
            return False
        try:
            scorer = self._load(int(wanted))
        except Exception as exc:  # noqa: BLE001 - any failure to load means: do not serve it
            self.refused.add(wanted)
            self._on_event("refused", wanted)
            log.error("refused model version %s at start-up: %s", wanted, exc)
            return False
        self.pending = scorer
        self._on_event("loaded", wanted)
        return True

    def swap(self) -> Scorer | None:
        """Between batches: make the pending scorer the serving one; returns the serving one."""
        if self.pending is not None:
            previous = self.current.version if self.current else "none"
            self.current, self.pending = self.pending, None
            self._on_event("serving", self.current.version)
            log.info("now serving %s version %s (was %s)", self.current.model_name,
                     self.current.version, previous)
        return self.current

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
