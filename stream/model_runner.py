"""Calls the serving model on a batch's views: on the event loop or in its own thread, timed.

A model that scores a part within the inline budget (`inline_score_max_ms`) is called
on the event loop; a slower one in the model thread, so the loop keeps fetching,
heartbeating and producing while it computes (`submit`). Every call is timed per record
(`ScoringTime`), and a model is timed on probe records before its first batch
(`calibrate`). When a call fails, `scores` finds out whose fault it is: a model that
cannot score a probe record is broken (`ModelError`: the process exits 70 and the
batch is read again), otherwise the records are scored one by one and a record the
model cannot score gets its exception as its score (it is dead-lettered).

    runner = ModelRunner(0.025, probe=lambda: steps.probe_record(items), on_call=histogram.observe)
    await runner.calibrate(scorer)
    scores = await runner.scores(scorer, views, runner.submit(scorer, views))
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from shared.click_rules import excerpt
from shared.errors import ModelError

log = logging.getLogger(__name__)

# Probe records a new model scores once, to time it (see ModelRunner.calibrate).
CALIBRATION_RECORDS = 32


class ScoringTime:
    """Seconds per record of the serving model, from its calls; decides where to score."""

    def __init__(self, inline_max_seconds: float) -> None:
        self._inline_max = inline_max_seconds
        self._per_record: dict[tuple[str, str], float] = {}  # (model, version) -> seconds per record

    def timed(self, scorer: Any, records: list[dict[str, Any]]) -> Any:
        started = time.perf_counter()
        scores = scorer.score(records)
        seconds = (time.perf_counter() - started) / max(1, len(records))
        key = (scorer.model_name, scorer.version)
        known = self._per_record.get(key)
        if len(self._per_record) > 8:  # older models are gone
            self._per_record.clear()
        self._per_record[key] = seconds if known is None else min(seconds, 0.8 * known + 0.2 * seconds)
        return scores

    def known(self, scorer: Any) -> bool:
        return (scorer.model_name, scorer.version) in self._per_record

    def inline(self, scorer: Any, n: int) -> bool:
        """True once the model scored `n` records in under the inline budget (its fastest
        calls count most: a call slowed by the event loop beside it says little)."""
        known = self._per_record.get((scorer.model_name, scorer.version))
        return known is not None and known * n <= self._inline_max


class ModelRunner:
    """The model thread and the timing that decides when to use it.

    `probe()` returns a scoring record every working model scores; `on_call(seconds)`
    is told how long each scoring call of a batch's views took.
    """

    def __init__(
        self,
        inline_max_seconds: float,
        *,
        probe: Callable[[], dict[str, Any]],
        on_call: Callable[[float], None],
    ) -> None:
        self._timing = ScoringTime(inline_max_seconds)
        self._probe = probe
        self._on_call = on_call
        # Scoring runs in its own thread so the event loop keeps fetching and heartbeating.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="score")

    def known(self, scorer: Any) -> bool:
        """Whether `scorer` was timed already (else `calibrate` it before its first batch)."""
        return self._timing.known(scorer)

    def inline(self, scorer: Any, n: int) -> bool:
        """Whether `n` records are scored on the event loop (see `ScoringTime.inline`)."""
        return self._timing.inline(scorer, n)

    async def calibrate(self, scorer: Any) -> None:
        """Time the model on probe records in its thread, the loop waiting: where its
        parts are scored follows from that (see `submit`)."""
        probes = [self._probe()] * CALIBRATION_RECORDS
        try:
            await asyncio.get_running_loop().run_in_executor(self._pool, self._timing.timed, scorer, probes)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the first batch finds out what is wrong
            log.warning(
                "timing model %s v%s on probe records failed: %s",
                scorer.model_name,
                scorer.version,
                excerpt(f"{type(exc).__name__}: {exc}"),
            )

    def submit(self, scorer: Any, views: list[dict[str, Any]]) -> asyncio.Future[Any]:
        """Score `views` on the event loop now when the model is fast enough, else in the
        model thread (it runs while the loop works); the answer goes to `scores`.

        A thread only pays when the model is slow: CPython hands the interpreter lock to
        a waiting thread every 5 ms, and a forward pass releases and retakes it at every
        operation, so next to a busy event loop the same forward pass took 25x longer
        (bench note in README). A fast model blocks the loop for a few ms per part.
        """
        loop = asyncio.get_running_loop()
        if not self._timing.inline(scorer, len(views)):
            return loop.run_in_executor(self._pool, self._timed_call, scorer, views)
        answer = loop.create_future()
        try:
            answer.set_result(self._timed_call(scorer, views))
        except Exception as exc:  # noqa: BLE001 - handled where the scores are awaited
            answer.set_exception(exc)
        return answer

    def _timed_call(self, scorer: Any, views: list[dict[str, Any]]) -> Any:
        """The model's call, timed for `ScoringTime` and `on_call`."""
        started = time.perf_counter()
        try:
            return self._timing.timed(scorer, views)
        finally:
            self._on_call(time.perf_counter() - started)

    async def scores(self, scorer: Any, records: list[dict[str, Any]], submitted: asyncio.Future[Any]) -> list[Any]:
        """A score per record from the `submitted` call; if that failed, record by record,
        a failing record's score being its exception. Raises `ModelError` when the model
        cannot score a probe record either (it is broken, not the records)."""
        try:
            scores = await submitted
            if len(scores) != len(records):
                raise ModelError(
                    f"model {scorer.model_name} v{scorer.version} returned "
                    f"{len(scores)} scores for {len(records)} records"
                )
            # Python floats: each is checked and written out one by one, and numpy's
            # scalars are slower at both.
            return scores.tolist() if isinstance(scores, np.ndarray) else list(scores)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - find out whether the model or records cause it
            batch_error = exc
        await self._check_probe(scorer, batch_error)
        log.warning(
            "scoring a batch of %d failed (%s); scoring its records one by one",
            len(records),
            excerpt(f"{type(batch_error).__name__}: {batch_error}"),
        )
        return await self._one_by_one(scorer, records)

    async def _check_probe(self, scorer: Any, batch_error: BaseException) -> None:
        """A model that cannot score a plain first view is broken: that is no record's
        fault, so it ends the process (status 70) and the batch is read again on restart."""
        try:
            await asyncio.get_running_loop().run_in_executor(self._pool, scorer.score, [self._probe()])
        except asyncio.CancelledError:
            raise
        except Exception as probe_error:
            raise ModelError(
                f"model {scorer.model_name} v{scorer.version} cannot score a known-good "
                f"record: {excerpt(f'{type(probe_error).__name__}: {probe_error}')}"
            ) from batch_error

    async def _one_by_one(self, scorer: Any, records: list[dict[str, Any]]) -> list[Any]:
        loop = asyncio.get_running_loop()
        out: list[Any] = []
        for record in records:
            try:
                one = await loop.run_in_executor(self._pool, scorer.score, [record])
                if len(one) != 1:
                    raise ModelError(f"model returned {len(one)} scores for 1 record")
                out.append(one[0])
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - this record's fault
                out.append(exc)
        return out

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
