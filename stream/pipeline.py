"""The scoring pipeline's runtime: runs the steps of `stream.steps` on Faust micro-batches.

The agent hands `process` each micro-batch of events (`stream.take_events`). Per batch:
parse, validate, pseudonymize and enrich every event (the session table read once and
written once per user), score the views with the model serving this batch (a new
champion is swapped in only here, between batches), then produce the scored events and
the changed session entries with one produce request per partition. Records that fail
any step go to the dead-letter topic. Faust acks the batch's offsets only after
`process` returns, and it returns only after the broker has acknowledged every scored,
dead-lettered and changelog record of the batch: at least once, and a replayed event
gets the features it had the first time (see `stream.sessions`).

    pipeline = Pipeline(settings, outbox=..., dlq_topic=..., sessions=..., holder=..., metrics=...)
    async for events in stream.take_events(n, within=t): await pipeline.process(events)
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, NamedTuple, NoReturn

import numpy as np

from shared.click_rules import excerpt
from shared.contract.dead_letter import dlq_entry, minimal_dlq_entry
from shared.errors import ModelError
from shared.settings import Settings
from stream import steps
from stream.items import ItemSnapshot
from stream.metrics import WorkerMetrics, observe_many
from stream.outbox import Outbox
from stream.scoring import ModelHolder

log = logging.getLogger(__name__)

# Exit status of a worker whose agent died. Nonzero so a supervisor (systemd, k8s,
# the tests) sees the failure and restarts it.
EXIT_AGENT_DIED = 70
# Scored events serialized and handed to the producer at a time (see Pipeline._finish).
SEND_SLICE_EVENTS = 256
# Probe records a new model scores once, to time it (see Pipeline._calibrate).
CALIBRATION_RECORDS = 32


def die(where: str, exc: BaseException) -> NoReturn:
    """Take the process down at once, without Faust's graceful stop.

    A graceful stop commits the offsets Faust has acked so far, which can include the
    batch that just failed; exiting here means the restart reads that batch again.
    """
    log.critical("agent step %s died; exiting with status %d", where, EXIT_AGENT_DIED, exc_info=exc)
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()
    os._exit(EXIT_AGENT_DIED)


class Origin(NamedTuple):
    """Where a record came from: for dead-letter entries, lag and latency (a tuple: one
    is made per event)."""

    topic: str
    partition: int
    offset: int
    timestamp: float  # Kafka record timestamp (seconds), set by the producer


class _ScoringTime:
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


@dataclass
class _Part:
    """A slice of a micro-batch on its way through the steps."""

    start: int  # position of its first record in the batch
    records: list[Any]  # scoring records, or steps.Failed
    good: list[int] = field(default_factory=list)  # positions (in the part) that reach scoring
    to_score: list[int] = field(default_factory=list)  # indexes into `good` of the views
    scoring: asyncio.Future[Any] | None = None  # the model's answer for `to_score`


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        *,
        outbox: Outbox,
        scored_topic: str,
        changelog_topic: str,
        changelog_record: Callable[[str, Any], tuple[bytes, bytes]],
        dlq_topic: Any,
        sessions: Any,
        holder: ModelHolder,
        metrics: WorkerMetrics,
    ) -> None:
        self._settings = settings
        self._outbox = outbox
        self._scored = scored_topic
        self._changelog = changelog_topic
        self._changelog_record = changelog_record
        self._part_size = max(1, settings.stream.score_part_events)
        self._timing = _ScoringTime(settings.stream.inline_score_max_ms / 1000)
        self._dlq = dlq_topic
        self._sessions = sessions
        self._holder = holder
        self._metrics = metrics
        self._pseudonym = steps.Pseudonyms(settings.pseudonymization_key.get_secret_value().encode("utf-8"))
        self._items: ItemSnapshot | None = None
        self._ready = asyncio.Event()
        # Scoring runs in its own thread so the event loop keeps fetching and heartbeating.
        self._score_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="score")
        self.last_offsets: dict[int, int] = {}

    def load(self) -> None:
        """Load the item snapshot and the first champion; blocking, before the worker starts.

        Done before any event is fetched: a stream processor that waits for seconds on
        start-up stalls Faust's partition flow after a restart with a backlog.
        """
        self._items = ItemSnapshot.load(self._settings)
        self._holder.load_now()
        scorer = self._holder.swap()  # no batch has started yet: swapping now is safe
        if scorer is not None:
            self._metrics.serving(scorer.model_name, scorer.version)
        self._ready.set()

    @property
    def metrics(self) -> WorkerMetrics:
        return self._metrics

    async def start(self) -> None:
        """`load` off the event loop, for an app started without `load` (tests, bench)."""
        if not self._ready.is_set():
            await asyncio.get_running_loop().run_in_executor(None, self.load)

    async def wait_ready(self) -> None:
        await self._ready.wait()

    # ------------------------------------------------------------------ dead letters

    async def _deliver_dlq(
        self,
        raw: bytes | None,
        reasons: list[str],
        code: str,
        step: str,
        topic: str,
        partition: int,
        offset: int,
        failed_at: datetime,
    ) -> None:
        """Send the bounded entry; if the producer refuses it, the minimal one.

        Only a failure to send the minimal entry (a few hundred bytes) propagates: that is
        the broker, not the record, and ends the process (status 70) when awaited.
        """
        where = {"step": step, "topic": topic, "partition": partition, "offset": offset, "failed_at": failed_at}
        stream = self._settings.stream
        try:
            entry = dlq_entry(
                raw,
                reasons,
                reason_code=code,
                max_raw_bytes=stream.dlq_max_raw_bytes,
                max_reason_chars=stream.dlq_max_reason_chars,
                **where,
            )
            await (await self._dlq.send(value=entry, partition=partition))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any refusal of this entry: fall back
            log.warning(
                "dead-letter entry for %s[%d]@%d refused (%s); sending the minimal entry",
                topic,
                partition,
                offset,
                excerpt(f"{type(exc).__name__}: {exc}"),
            )
            minimal = minimal_dlq_entry(raw, reason_code=code, **where)
            await (await self._dlq.send(value=minimal, partition=partition))

    def _dead_letter(
        self, raw: bytes | None, step: str, exc: BaseException, origin: Origin, failed_at: datetime
    ) -> Awaitable[Any]:
        """Count and log the failure; returns the entry's delivery (awaited with the batch)."""
        code, reasons = steps.failure_reason(step, exc)
        self._metrics.dlq.labels(step=step).inc()
        self._metrics.dlq_reasons.labels(reason_code=code).inc()
        log.info(
            "dead-lettered %s[%d]@%d at %s (%s, %d bytes): %s",
            origin.topic,
            origin.partition,
            origin.offset,
            step,
            code,
            -1 if raw is None else len(raw),
            excerpt("; ".join(reasons)),
        )
        return asyncio.ensure_future(
            self._deliver_dlq(raw, reasons, code, step, origin.topic, origin.partition, origin.offset, failed_at)
        )

    # ------------------------------------------------------------------ per batch

    async def _serving_scorer(self, scorer: Any = None):
        """The batch's model (`scorer`, swapped in at the batch's start), or the first
        champion to arrive when there is none yet; timed once when it starts serving."""
        waited = 0.0
        while scorer is None:
            if waited % 30 == 0:
                log.warning(
                    "no champion for task %r yet: holding the batch until one is promoted",
                    self._settings.stream.model_task,
                )
            await asyncio.sleep(1.0)
            waited += 1.0
            await self._holder.refresh()
            scorer = self._holder.swap()
        if not self._timing.known(scorer):
            await self._calibrate(scorer)
        return scorer

    async def _calibrate(self, scorer: Any) -> None:
        """Time the model on probe records in its thread, the loop waiting: where its
        parts are scored follows from that (see `_start_scoring`)."""
        probes = [steps.probe_record(self._items)] * CALIBRATION_RECORDS
        try:
            await asyncio.get_running_loop().run_in_executor(self._score_pool, self._timing.timed, scorer, probes)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the first batch finds out what is wrong
            log.warning(
                "timing model %s v%s on probe records failed: %s",
                scorer.model_name,
                scorer.version,
                excerpt(f"{type(exc).__name__}: {exc}"),
            )

    async def process(self, events: Sequence[Any]) -> None:
        """One micro-batch of Faust events; returns once the broker has all its outputs."""
        await self.process_values(
            [e.value for e in events],
            [Origin(e.message.topic, e.message.partition, e.message.offset, e.message.timestamp) for e in events],
        )

    async def process_values(self, values: list[bytes | None], origins: list[Origin]) -> None:
        """`process` for Kafka values and where each came from (any consumer loop)."""
        try:
            await self._process(values, origins)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            die("score_batch", exc)

    async def _score(
        self, scorer: Any, records: list[dict[str, Any]], first_try: asyncio.Future[Any] | None = None
    ) -> list[Any]:
        """A score per record; if the batch fails, record by record, a failing record's
        score being its exception. `first_try`: the batch's scoring, already submitted."""
        loop = asyncio.get_running_loop()
        try:
            scores = await (first_try or loop.run_in_executor(self._score_pool, scorer.score, records))
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
        # A model that cannot score a plain first view is broken: that is no record's
        # fault, so it ends the process (status 70) and the batch is read again on restart.
        try:
            await loop.run_in_executor(self._score_pool, scorer.score, [steps.probe_record(self._items)])
        except asyncio.CancelledError:
            raise
        except Exception as probe_error:
            raise ModelError(
                f"model {scorer.model_name} v{scorer.version} cannot score a known-good "
                f"record: {excerpt(f'{type(probe_error).__name__}: {probe_error}')}"
            ) from batch_error
        log.warning(
            "scoring a batch of %d failed (%s); scoring its records one by one",
            len(records),
            excerpt(f"{type(batch_error).__name__}: {batch_error}"),
        )
        out: list[Any] = []
        for record in records:
            try:
                one = await loop.run_in_executor(self._score_pool, scorer.score, [record])
                if len(one) != 1:
                    raise ModelError(f"model returned {len(one)} scores for 1 record")
                out.append(one[0])
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - this record's fault
                out.append(exc)
        return out

    async def _process(self, values: list[bytes | None], origins: list[Origin]) -> None:
        await self._ready.wait()
        received_at = datetime.now(timezone.utc)
        self._metrics.events_in.inc(len(values))
        receipts: list[Awaitable[Any]] = []
        outputs: list[Origin] = []
        entries: dict[str, Any] = {}  # each user's entry, read once for the whole batch
        changed: dict[str, int] = {}  # user -> position of the user's last new event
        # The swap happens here, between batches: the whole batch sees one model. (None:
        # no champion yet; the first part with a record to score waits for one.)
        scorer = self._holder.swap()
        parts: list[_Part] = []
        in_flight: _Part | None = None
        serving = False  # the batch's scorer is ready (waited for, timed)
        # The batch goes through in parts: while the model scores one part in its thread,
        # the event loop prepares the next and sends the one before (the model releases
        # the interpreter lock while it computes). Parts finish in order. A model fast
        # enough to score the whole batch on the event loop gets it as one part: one
        # encoding and one forward pass cost less per event than four.
        part_size = self._part_size
        if scorer is not None and self._timing.inline(scorer, len(values)):
            part_size = max(part_size, len(values))
        for start in range(0, len(values), part_size):
            started = time.perf_counter()
            prepared = steps.prepare_batch(
                values[start : start + part_size],
                entry_of=self._sessions.get,
                pseudonym=self._pseudonym,
                items=self._items,
                now=received_at,
                entries=entries,
            )
            self._metrics.step_seconds.labels(step=steps.STEP_ENRICH).observe(time.perf_counter() - started)
            self._metrics.replayed.inc(prepared.replayed)
            changed.update((user, start + i) for user, i in prepared.changed.items())
            part = _Part(start=start, records=prepared.records)
            parts.append(part)
            for i, record in enumerate(prepared.records):
                if isinstance(record, steps.Failed):
                    receipts.append(
                        self._dead_letter(values[start + i], record.step, record.error, origins[start + i], received_at)
                    )
                else:
                    part.good.append(i)
            if start + part_size >= len(values):
                # Every entry is final once the last part is prepared: the changelog goes
                # out now, so the broker stores it while the model scores.
                receipts += await self._send_changelog(changed, entries, origins)
            if part.good and not serving:
                scorer = await self._serving_scorer(scorer)
                self._metrics.serving(scorer.model_name, scorer.version)
                serving = True
            if part.good:
                self._start_scoring(scorer, part)
            if in_flight is not None:
                await self._finish(in_flight, scorer, values, origins, received_at, receipts, outputs)
            in_flight = part
        if in_flight is not None:
            await self._finish(in_flight, scorer, values, origins, received_at, receipts, outputs)

        # Wait for the broker to acknowledge every record before Faust acks the offsets.
        started = time.perf_counter()
        if receipts:
            await asyncio.gather(*receipts)
        done = time.time()
        self._metrics.step_seconds.labels(step=steps.STEP_PRODUCE).observe(time.perf_counter() - started)
        observe_many(self._metrics.latency, [max(0.0, done - origin.timestamp) for origin in outputs])
        self._metrics.scored.inc(len(outputs))
        reached_scoring = sum(len(part.good) for part in parts)
        if reached_scoring:
            self._metrics.batch_size.observe(reached_scoring)
        for origin in origins:
            if origin.offset > self.last_offsets.get(origin.partition, -1):
                self.last_offsets[origin.partition] = origin.offset

    async def _send_changelog(
        self, changed: dict[str, int], entries: dict[str, Any], origins: list[Origin]
    ) -> list[Awaitable[Any]]:
        """Each changed entry once: into the table, and to its changelog on the partition
        of the user's input (the table is co-partitioned with clicks). Returns the acks.

        Sent before the batch's scored events is safe: an event read again after a crash
        finds itself in its user's entry and gets the features it had the first time.
        """
        changelog = []
        for user, position in changed.items():
            entry = entries[user]
            self._sessions.data[user] = entry
            changelog.append((origins[position].partition, *self._changelog_record(user, entry)))
        return await self._outbox.send(self._changelog, changelog)

    def _start_scoring(self, scorer: Any, part: _Part) -> None:
        """Score the part's views on the event loop when the model is fast enough, else
        submit them to the model thread now (it runs while the loop works).

        A thread only pays when the model is slow: CPython hands the interpreter lock to
        a waiting thread every 5 ms, and a forward pass releases and retakes it at every
        operation, so next to a busy event loop the same forward pass took 25x longer
        (bench note in README). A fast model blocks the loop for a few ms per part.
        """
        records = [part.records[i] for i in part.good]
        part.to_score = [k for k, record in enumerate(records) if steps.is_scored(record)]
        if not part.to_score:
            return
        views = [records[k] for k in part.to_score]
        loop = asyncio.get_running_loop()
        if self._timing.inline(scorer, len(views)):
            part.scoring = loop.create_future()
            try:
                part.scoring.set_result(self._score_views(scorer, views))
            except Exception as exc:  # noqa: BLE001 - handled where the scores are awaited
                part.scoring.set_exception(exc)
        else:
            part.scoring = loop.run_in_executor(self._score_pool, self._score_views, scorer, views)

    def _score_views(self, scorer: Any, views: list[dict[str, Any]]) -> Any:
        """The model's call, timed for `_ScoringTime` and the score step's metric."""
        started = time.perf_counter()
        try:
            return self._timing.timed(scorer, views)
        finally:
            self._metrics.step_seconds.labels(step=steps.STEP_SCORE).observe(time.perf_counter() - started)

    async def _part_scores(self, scorer: Any, part: _Part) -> list[Any]:
        """Scores of the part's good records: None for events that are not scored."""
        scores: list[Any] = [None] * len(part.good)
        if part.to_score:
            records = [part.records[part.good[k]] for k in part.to_score]
            for k, score in zip(part.to_score, await self._score(scorer, records, part.scoring)):
                scores[k] = score
        return scores

    async def _finish(
        self,
        part: _Part,
        scorer: Any,
        values: list[bytes | None],
        origins: list[Origin],
        received_at: datetime,
        receipts: list[Awaitable[Any]],
        outputs: list[Origin],
    ) -> None:
        """Serialize a scored part and hand its records to the producer (acks awaited later)."""
        if not part.good:
            return
        scores = await self._part_scores(scorer, part)
        scored_at = datetime.now(timezone.utc)
        kept: list[int] = []
        for k, score in enumerate(scores):
            position = part.start + part.good[k]
            if isinstance(score, BaseException):
                receipts.append(
                    self._dead_letter(values[position], steps.STEP_SCORE, score, origins[position], scored_at)
                )
            else:
                kept.append(k)
        # Sent in slices: the broker stores one while the next is serialized.
        for first in range(0, len(kept), SEND_SLICE_EVENTS):
            sliced = kept[first : first + SEND_SLICE_EVENTS]
            records = [part.records[part.good[k]] for k in sliced]
            wire = steps.scored_values(
                records,
                [scores[k] for k in sliced],
                model_name=scorer.model_name,
                model_version=scorer.version,
                received_at=received_at,
                scored_at=scored_at,
            )
            batch = []
            for k, record, value in zip(sliced, records, wire):
                position = part.start + part.good[k]
                if isinstance(value, steps.Failed):
                    receipts.append(
                        self._dead_letter(values[position], value.step, value.error, origins[position], scored_at)
                    )
                else:
                    batch.append((None, record["user_id"].encode("utf-8"), value))
                    outputs.append(origins[position])
            receipts += await self._outbox.send(self._scored, batch)

    def close(self) -> None:
        self._score_pool.shutdown(wait=False, cancel_futures=True)
        self._holder.close()
