"""The model the worker serves, and how a new champion replaces it without a restart.

`Scorer` is all the worker needs of a model. `ModelHolder` owns the serving scorer:
`refresh()` asks who the champion is and, when it changed, loads and verifies it in a
background thread (never on the event loop that feeds the batches); the result waits
in `pending` until the batch loop calls `swap()` between two batches, so every batch is
scored by exactly one model. A version that fails to load or verify is refused: logged,
counted, and remembered with a fingerprint of its files and its promotion, so it is not
retried on every poll but is retried as soon as it is announced or promoted again or its
files change (a repaired checkpoint is served without a restart). While the serving
version differs from the registry's champion, `mismatch_seconds()` says for how long.

    holder = ModelHolder(resolve=champion_version, load=load_version, fingerprint=files_stamp)
    await holder.refresh()
    scorer = holder.swap()          # between batches
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, runtime_checkable

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
# A stamp of a version's files and of its promotion: a refused version whose stamp
# changed (repaired, re-registered, promoted again) is tried again.
Fingerprint = Callable[[int], str]
OnEvent = Callable[[str, str], None]  # (what happened, version)


class ModelHolder:
    """The serving scorer, a pending replacement, and the versions refused so far."""

    def __init__(
        self,
        resolve: Resolve,
        load: Load,
        on_event: OnEvent | None = None,
        fingerprint: Fingerprint | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._resolve = resolve
        self._load = load
        self._fingerprint = fingerprint or (lambda version: "")
        self._on_event = on_event or (lambda what, version: None)
        self._clock = clock
        self.current: Scorer | None = None
        self.pending: Scorer | None = None
        # Refused version -> its fingerprint when it was refused.
        self.refused: dict[str, str] = {}
        self.champion: str | None = None  # the registry's answer at the last resolve
        self._mismatch_since: float | None = None
        self._loading: str | None = None
        # One loader thread: two loads never race, and a slow load never blocks scoring.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-load")
        self._lock = asyncio.Lock()

    def _serving_versions(self) -> set[str]:
        return {s.version for s in (self.current, self.pending) if s is not None}

    def _resolved(self, version: int | None) -> None:
        self.champion = None if version is None else str(version)
        self._update_mismatch()

    def _update_mismatch(self) -> None:
        serving = self.current.version if self.current is not None else None
        if self.champion is None or self.champion == serving:
            self._mismatch_since = None
        elif self._mismatch_since is None:
            self._mismatch_since = self._clock()

    def mismatch_seconds(self) -> float:
        """Seconds the serving version has differed from the registry's champion (0: equal)."""
        return 0.0 if self._mismatch_since is None else self._clock() - self._mismatch_since

    def _wanted(self, version: int | None, retry: int | None) -> str | None:
        """The version to load now, or None. Blocking (fingerprints read files)."""
        if version is None:
            return None
        wanted = str(version)
        if wanted in self._serving_versions():
            return None
        if wanted in self.refused:
            if retry is not None and str(retry) == wanted:
                log.info("model version %s was refused before; announced again: retrying it", wanted)
            elif self._fingerprint(version) != self.refused[wanted]:
                log.info("model version %s was refused before; its files or its promotion changed: retrying it", wanted)
            else:
                return None
            del self.refused[wanted]
        return wanted

    def _refuse(self, wanted: str, stamp: str) -> None:
        self.refused[wanted] = stamp
        self._on_event("refused", wanted)

    def _stamp(self, wanted: str) -> str:
        try:
            return self._fingerprint(int(wanted))
        except Exception as exc:  # noqa: BLE001 - an unreadable folder still gets refused
            return f"unreadable: {exc}"

    async def refresh(self, retry: int | None = None) -> bool:
        """Load the champion if it changed; True when a new scorer is now pending.

        `retry`: a version just announced; if it was refused before, it is tried again.
        """
        async with self._lock:
            loop = asyncio.get_running_loop()
            try:
                version = await loop.run_in_executor(self._executor, self._resolve)
            except ShopflowError as exc:
                log.warning("cannot resolve the champion (keeping the current model): %s", exc)
                return False
            self._resolved(version)
            wanted = await loop.run_in_executor(self._executor, self._wanted, version, retry)
            if wanted is None:
                return False
            self._loading = wanted
            try:
                # Stamped before loading: a repair during the load is seen at the next poll.
                stamp = await loop.run_in_executor(self._executor, self._stamp, wanted)
                scorer = await loop.run_in_executor(self._executor, self._load, int(wanted))
            except Exception as exc:  # noqa: BLE001 - any failure to load means: do not serve it
                self._refuse(wanted, stamp)
                log.error(
                    "refused model version %s, keeping %s: %s",
                    wanted,
                    self.current.version if self.current else "none",
                    exc,
                )
                return False
            finally:
                self._loading = None
            if not isinstance(scorer, Scorer):
                self._refuse(wanted, stamp)
                raise ModelError(f"loader returned {type(scorer).__name__}, not a Scorer")
            self.pending = scorer
            self._on_event("loaded", wanted)
            log.info("model %s version %s loaded; it serves from the next batch", scorer.model_name, scorer.version)
            return True

    def load_now(self) -> bool:
        """Blocking `refresh` for start-up, before the event loop serves anything."""
        try:
            version = self._resolve()
        except ShopflowError as exc:
            log.warning("cannot resolve the champion yet: %s", exc)
            return False
        self._resolved(version)
        wanted = self._wanted(version, None)
        if wanted is None:
            return False
        stamp = self._stamp(wanted)
        try:
            scorer = self._load(int(wanted))
        except Exception as exc:  # noqa: BLE001 - any failure to load means: do not serve it
            self._refuse(wanted, stamp)
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
            self._update_mismatch()
            self._on_event("serving", self.current.version)
            log.info("now serving %s version %s (was %s)", self.current.model_name, self.current.version, previous)
        return self.current

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
