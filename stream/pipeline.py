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

from shared.errors import ModelError, ShopflowError, ValidationError
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

    async def _dead_letter(self, raw: bytes | None, reasons: list[str], step: str, msg: Any,
                           received_at: datetime) -> Prepared:
        entry = steps.dlq_entry(raw, reasons, step=step, topic=msg.topic, partition=msg.partition,
                                offset=msg.offset, failed_at=received_at)
        receipt = await self._dlq.send(value=entry, partition=msg.partition)
        self._metrics.dlq.labels(step=step).inc()
        log.info("dead-lettered %s[%d]@%d at %s: %s", msg.topic, msg.partition, msg.offset,
                 step, "; ".join(reasons))
        return Prepared(None, msg.timestamp, received_at, msg.partition, msg.offset, receipt)

    async def prepare(self, raw: bytes | None) -> Prepared:
        """Stream processor: parse_validate -> pseudonymize -> enrich, or dead-letter."""
        try:
            if not self._ready.is_set():
                await self._ready.wait()
            event = current_event()
            if event is None:
                raise RuntimeError("prepare ran outside a Faust event")
            msg = event.message
            received_at = datetime.now(timezone.utc)
            self._metrics.events_in.inc()
            try:
                record = steps.parse_validate(raw)
            except ValidationError as exc:
                return await self._dead_letter(raw, exc.reasons, steps.STEP_PARSE, msg, received_at)
            except (ValueError, TypeError, RecursionError, OverflowError) as exc:
                # e.g. JSON nested deeper than the parser allows: still a bad record.
                return await self._dead_letter(raw, [f"{type(exc).__name__}: {exc}"],
                                               steps.STEP_PARSE, msg, received_at)
            record = steps.pseudonymize_user(record, key=self._key)
            user = record["user_id"]
            try:
                entry, scoring_record, replayed = steps.enrich(
                    record, self._sessions.get(user), self._items)
            except (ShopflowError, ValueError, TypeError, KeyError, OverflowError) as exc:
                return await self._dead_letter(raw, [f"{type(exc).__name__}: {exc}"],
                                               steps.STEP_ENRICH, msg, received_at)
            if replayed:
                self._metrics.replayed.inc()
            else:
                self._sessions[user] = entry
            return Prepared(scoring_record, msg.timestamp, received_at, msg.partition, msg.offset)
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

    async def _score_batch(self, batch: list[Prepared]) -> None:
        receipts = [p.dlq_receipt for p in batch if p.dlq_receipt is not None]
        good = [p for p in batch if p.record is not None]
        if good:
            # The swap happens here, between batches: the whole batch sees one model.
            scorer = await self._serving_scorer()
            self._metrics.serving(scorer.model_name, scorer.version)
            started = time.perf_counter()
            loop = asyncio.get_running_loop()
            scores = await loop.run_in_executor(
                self._score_pool, scorer.score, [p.record for p in good])
            if len(scores) != len(good):
                raise ModelError(f"model {scorer.model_name} v{scorer.version} returned "
                                 f"{len(scores)} scores for {len(good)} records")
            scored_at = datetime.now(timezone.utc)
            self._metrics.step_seconds.labels(step=steps.STEP_SCORE).observe(
                time.perf_counter() - started)
            for prepared, score in zip(good, scores):
                value = steps.to_scored(
                    prepared.record, model_name=scorer.model_name, model_version=scorer.version,
                    score=float(score), received_at=prepared.received_at, scored_at=scored_at)
                key = prepared.record["user_id"].encode("utf-8")
                receipts.append(await self._scored.send(key=key, value=value))
            self._metrics.batch_size.observe(len(good))
        # Wait for the broker to acknowledge every record before Faust acks the offsets.
        started = time.perf_counter()
        if receipts:
            await asyncio.gather(*receipts)
        done = time.time()
        self._metrics.step_seconds.labels(step=steps.STEP_PRODUCE).observe(
            time.perf_counter() - started)
        for prepared in good:
            self._metrics.latency.observe(max(0.0, done - prepared.produced_at))
        self._metrics.scored.inc(len(good))
        for prepared in batch:
            self.last_offsets[prepared.partition] = max(
                prepared.offset, self.last_offsets.get(prepared.partition, -1))

    def close(self) -> None:
        self._score_pool.shutdown(wait=False, cancel_futures=True)
        self._holder.close()
