"""The scoring pipeline's runtime: runs the named steps of `stream.steps` on Faust events.

`prepare` runs per event as a stream processor (so the session table is written while
Faust knows the event's partition, which keeps the changelog co-partitioned with
`clicks`); `score_batch` runs per micro-batch in the agent. Offsets of a batch are acked
by Faust only after `score_batch` returns, and it returns only after every scored and
dead-lettered record of the batch is acknowledged by the broker: at-least-once, and a
replayed event gets the features it had the first time (see `steps.enrich`).

    pipeline = Pipeline(settings, topics, sessions, holder, metrics)
    stream.add_processor(pipeline.prepare)
    async for batch in stream.take(n, within=t): await pipeline.score_batch(batch)
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Awaitable, NoReturn

from faust.streams import current_event

from shared.click_rules import excerpt
from shared.errors import ModelError
from shared.settings import Settings
from stream import steps
from stream.items import ItemSnapshot
from stream.metrics import WorkerMetrics
from stream.scoring import ModelHolder

log = logging.getLogger(__name__)

# Exit status of a worker whose agent died. Nonzero so a supervisor (systemd, k8s,
# the tests) sees the failure and restarts it.
EXIT_AGENT_DIED = 70


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


@dataclass
class Prepared:
    """One event after the per-event steps: a scoring record or a dead-letter receipt."""

    record: dict[str, Any] | None
    produced_at: float  # Kafka record timestamp (seconds), set by the producer
    received_at: datetime
    partition: int
    offset: int
    dlq_receipt: Awaitable[Any] | None = None
    raw: bytes | None = None  # kept for a dead-letter entry if scoring fails later
    topic: str = ""


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        *,
        scored_topic: Any,
        dlq_topic: Any,
        sessions: Any,
        holder: ModelHolder,
        metrics: WorkerMetrics,
    ) -> None:
        self._settings = settings
        self._scored = scored_topic
        self._dlq = dlq_topic
        self._sessions = sessions
        self._holder = holder
        self._metrics = metrics
        self._key = settings.pseudonymization_key.get_secret_value().encode("utf-8")
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

    async def start(self) -> None:
        """`load` off the event loop, for an app started without `load` (tests, bench)."""
        if not self._ready.is_set():
            await asyncio.get_running_loop().run_in_executor(None, self.load)

    async def wait_ready(self) -> None:
        await self._ready.wait()

    # ------------------------------------------------------------------ per event

    async def _deliver_dlq(self, raw: bytes | None, reasons: list[str], code: str, step: str,
                           topic: str, partition: int, offset: int, failed_at: datetime) -> None:
        """Send the bounded entry; if the producer refuses it, the minimal one.

        Only a failure to send the minimal entry (a few hundred bytes) propagates: that is
        the broker, not the record, and ends the process (status 70) when awaited.
        """
        where = {"step": step, "topic": topic, "partition": partition, "offset": offset,
                 "failed_at": failed_at}
        stream = self._settings.stream
        try:
            entry = steps.dlq_entry(raw, reasons, reason_code=code, max_raw_bytes=stream.dlq_max_raw_bytes,
                                    max_reason_chars=stream.dlq_max_reason_chars, **where)
            await (await self._dlq.send(value=entry, partition=partition))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any refusal of this entry: fall back
            log.warning("dead-letter entry for %s[%d]@%d refused (%s); sending the minimal entry",
                        topic, partition, offset, excerpt(f"{type(exc).__name__}: {exc}"))
            minimal = steps.minimal_dlq_entry(raw, reason_code=code, **where)
            await (await self._dlq.send(value=minimal, partition=partition))

    async def _dead_letter(self, raw: bytes | None, step: str, exc: BaseException, msg: Any,
                           received_at: datetime) -> Prepared:
        code, reasons = steps.failure_reason(step, exc)
        receipt = asyncio.ensure_future(self._deliver_dlq(
            raw, reasons, code, step, msg.topic, msg.partition, msg.offset, received_at))
        self._metrics.dlq.labels(step=step).inc()
        self._metrics.dlq_reasons.labels(reason_code=code).inc()
        log.info("dead-lettered %s[%d]@%d at %s (%s, %d bytes): %s", msg.topic, msg.partition,
                 msg.offset, step, code, -1 if raw is None else len(raw), excerpt("; ".join(reasons)))
        return Prepared(None, msg.timestamp, received_at, msg.partition, msg.offset, receipt)

    async def prepare(self, raw: bytes | None) -> Prepared:
        """Stream processor: parse_validate -> pseudonymize -> enrich, or dead-letter.

        Whatever one record makes a step raise sends that record to the DLQ; only what
        is not about the record (no Faust event, the table write) ends the process.
        """
        try:
            if not self._ready.is_set():
                await self._ready.wait()
            event = current_event()
            if event is None:
                raise RuntimeError("prepare ran outside a Faust event")
            msg = event.message
            received_at = datetime.now(timezone.utc)
            self._metrics.events_in.inc()
            step = steps.STEP_PARSE
            try:
                record = steps.parse_validate(raw)
                step = steps.STEP_PSEUDONYMIZE
                record = steps.pseudonymize_user(record, key=self._key)
                user = record["user_id"]
                step = steps.STEP_ENRICH
                entry, scoring_record, replayed = steps.enrich(
                    record, self._sessions.get(user), self._items)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the record's fault: dead-letter it
                return await self._dead_letter(raw, step, exc, msg, received_at)
            if replayed:
                self._metrics.replayed.inc()
            else:
                self._sessions[user] = entry
            return Prepared(scoring_record, msg.timestamp, received_at, msg.partition, msg.offset,
                            raw=raw, topic=msg.topic)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # anything else is a bug: crash loudly, never stall
            die("prepare", exc)

    # ------------------------------------------------------------------ per batch

    async def _serving_scorer(self):
        scorer = self._holder.swap()
        waited = 0.0
        while scorer is None:
            if waited % 30 == 0:
                log.warning("no champion for task %r yet: holding the batch until one is promoted",
                            self._settings.stream.model_task)
            await asyncio.sleep(1.0)
            waited += 1.0
            await self._holder.refresh()
            scorer = self._holder.swap()
        return scorer

    async def score_batch(self, batch: list[Prepared]) -> None:
        """score -> produce for one micro-batch; returns once the broker has it all."""
        try:
            await self._score_batch(batch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            die("score_batch", exc)

    def _late_dead_letter(self, prepared: Prepared, step: str, exc: BaseException) -> Awaitable[Any]:
        """Dead-letter a record that failed after `prepare` (scoring, serialization)."""
        code, reasons = steps.failure_reason(step, exc)
        self._metrics.dlq.labels(step=step).inc()
        self._metrics.dlq_reasons.labels(reason_code=code).inc()
        log.info("dead-lettered %s[%d]@%d at %s (%s): %s", prepared.topic, prepared.partition,
                 prepared.offset, step, code, excerpt("; ".join(reasons)))
        return asyncio.ensure_future(self._deliver_dlq(
            prepared.raw, reasons, code, step, prepared.topic, prepared.partition, prepared.offset,
            datetime.now(timezone.utc)))

    async def _score(self, scorer: Any, good: list[Prepared]) -> list[tuple[Prepared, Any]]:
        """Scores for the batch; if the batch fails, record by record (the failing ones -> DLQ).

        Returns (record, score) pairs, score being the exception for a record that failed.
        """
        loop = asyncio.get_running_loop()
        try:
            scores = await loop.run_in_executor(self._score_pool, scorer.score, [p.record for p in good])
            if len(scores) != len(good):
                raise ModelError(f"model {scorer.model_name} v{scorer.version} returned "
                                 f"{len(scores)} scores for {len(good)} records")
            return list(zip(good, scores))
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
            raise ModelError(f"model {scorer.model_name} v{scorer.version} cannot score a known-good "
                             f"record: {excerpt(f'{type(probe_error).__name__}: {probe_error}')}") from batch_error
        log.warning("scoring a batch of %d failed (%s); scoring its records one by one", len(good),
                    excerpt(f"{type(batch_error).__name__}: {batch_error}"))
        out: list[tuple[Prepared, Any]] = []
        for prepared in good:
            try:
                one = await loop.run_in_executor(self._score_pool, scorer.score, [prepared.record])
                if len(one) != 1:
                    raise ModelError(f"model returned {len(one)} scores for 1 record")
                out.append((prepared, one[0]))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - this record's fault
                out.append((prepared, exc))
        return out

    async def _score_batch(self, batch: list[Prepared]) -> None:
        receipts = [p.dlq_receipt for p in batch if p.dlq_receipt is not None]
        good = [p for p in batch if p.record is not None]
        scored_ok = 0
        if good:
            # The swap happens here, between batches: the whole batch sees one model.
            scorer = await self._serving_scorer()
            self._metrics.serving(scorer.model_name, scorer.version)
            started = time.perf_counter()
            to_score = [p for p in good if steps.is_scored(p.record)]
            scores = {id(p): s for p, s in (await self._score(scorer, to_score) if to_score else [])}
            results = [(p, scores.get(id(p))) for p in good]
            scored_at = datetime.now(timezone.utc)
            self._metrics.step_seconds.labels(step=steps.STEP_SCORE).observe(
                time.perf_counter() - started)
            for prepared, score in results:
                if isinstance(score, BaseException):
                    receipts.append(self._late_dead_letter(prepared, steps.STEP_SCORE, score))
                    prepared.record = None
                    continue
                try:
                    value = steps.to_scored(
                        prepared.record, model_name=scorer.model_name, model_version=scorer.version,
                        score=score, received_at=prepared.received_at, scored_at=scored_at)
                    key = prepared.record["user_id"].encode("utf-8")
                except Exception as exc:  # noqa: BLE001 - this record's fault
                    receipts.append(self._late_dead_letter(prepared, steps.STEP_SERIALIZE, exc))
                    prepared.record = None
                    continue
                receipts.append(await self._scored.send(key=key, value=value))
                scored_ok += 1
            self._metrics.batch_size.observe(len(good))
        # Wait for the broker to acknowledge every record before Faust acks the offsets.
        started = time.perf_counter()
        if receipts:
            await asyncio.gather(*receipts)
        done = time.time()
        self._metrics.step_seconds.labels(step=steps.STEP_PRODUCE).observe(
            time.perf_counter() - started)
        for prepared in good:
            if prepared.record is not None:
                self._metrics.latency.observe(max(0.0, done - prepared.produced_at))
        self._metrics.scored.inc(scored_ok)
        for prepared in batch:
            self.last_offsets[prepared.partition] = max(
                prepared.offset, self.last_offsets.get(prepared.partition, -1))

    def close(self) -> None:
        self._score_pool.shutdown(wait=False, cancel_futures=True)
        self._holder.close()
