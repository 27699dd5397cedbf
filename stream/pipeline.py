"""The stream worker's batch flow: a micro-batch of input records in, its outputs acknowledged.

Per batch: parse, validate, pseudonymize and enrich every event (`stream.steps`; each
user's session entry is read once and written once), score the views with the model
serving this batch (a new champion is swapped in only here, between batches;
`stream.model_runner` calls it), then hand the scored events and the changed session
entries to the outbox, one produce request per partition (`stream.outbox`). A record
that fails any step is dead-lettered through the same outbox (`stream.dead_letters`).
`process` returns only after the broker has acknowledged every scored, dead-lettered
and changelog record of the batch, and the caller commits the batch's input offsets
only after it returns: at least once, and a replayed event gets the features it had
the first time (see `stream.sessions`).

    pipeline = Pipeline(settings, outbox=outbox, scored_topic=..., changelog_topic=..., dlq_topic=..., ...)
    async for events in stream.take_events(n, within=t): await pipeline.process_events(events)  # Faust
    await pipeline.process(values, [InputPosition(topic, partition, offset, timestamp), ...])  # any consumer
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, NamedTuple, NoReturn

from shared.redaction import Redactor
from shared.settings import Settings
from stream import steps
from stream.dead_letters import DeadLetters
from stream.expiry import SessionExpiry
from stream.items import ItemSnapshot, ItemSnapshots
from stream.metrics import WorkerMetrics, observe_many
from stream.model_runner import ModelRunner
from stream.outbox import Outbox
from stream.scoring import ModelHolder
from stream.sessions import tombstone_record

log = logging.getLogger(__name__)

# Exit status of a worker whose agent died. Nonzero so a supervisor (systemd, k8s,
# the tests) sees the failure and restarts it.
EXIT_AGENT_DIED = 70
# Scored events serialized and handed to the producer at a time (see Pipeline._send_scored).
SEND_SLICE_EVENTS = 256


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


class InputPosition(NamedTuple):
    """Where an input record was read, and when it was produced: the source a dead-letter
    entry names, and where a scored event's latency counts from (a tuple: one is made
    per event)."""

    topic: str
    partition: int
    offset: int
    timestamp: float  # Kafka record timestamp (seconds), set by the producer


@dataclass
class _Batch:
    """One micro-batch on its way through: its inputs, and what has left for it."""

    values: list[bytes | None]
    inputs: list[InputPosition]  # where each value was read, index by index
    received_at: datetime
    items: ItemSnapshot  # the item snapshot of the whole batch (its version goes on each scored event)
    # Each user's session entry, read once for the whole batch, and the index of the
    # user's last event whose entry changed (its changelog goes to that event's partition).
    entries: dict[str, Any] = field(default_factory=dict)
    changed: dict[str, int] = field(default_factory=dict)
    acks: list[Awaitable[Any]] = field(default_factory=list)  # of every output handed to the producer
    scored: list[InputPosition] = field(default_factory=list)  # inputs whose scored event was sent
    reached_scoring: int = 0


@dataclass
class _Part:
    """The records of a slice of the batch that passed the steps before scoring, each beside
    its index in the batch. The model scores the views; other events pass with no score."""

    indexes: list[int] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    is_view: list[bool] = field(default_factory=list)
    scoring: asyncio.Future[Any] | None = None  # the model's answer for `views()`, in order

    def views(self) -> list[dict[str, Any]]:
        return [record for record, view in zip(self.records, self.is_view) if view]


class Pipeline:
    """The worker's batch flow (see the module's doc). `sessions` is the session table
    (Faust's, or a dict with a `data` attribute); `changelog_record(user, entry)` gives
    the (key, value) of an entry's changelog record; every output goes through `outbox`."""

    def __init__(
        self,
        settings: Settings,
        *,
        outbox: Outbox,
        scored_topic: str,
        changelog_topic: str,
        dlq_topic: str,
        changelog_record: Callable[[str, Any], tuple[bytes, bytes]],
        sessions: Any,
        holder: ModelHolder,
        metrics: WorkerMetrics,
        expiry: SessionExpiry | None = None,
    ) -> None:
        s = settings.stream
        self._settings = settings
        self._outbox = outbox
        self._scored_topic = scored_topic
        self._changelog_topic = changelog_topic
        self._changelog_record = changelog_record
        key = settings.pseudonymization_key.get_secret_value().encode("utf-8")
        self._dead_letters = DeadLetters(
            outbox,
            dlq_topic,
            metrics,
            redactor=Redactor(key),
            max_raw_bytes=s.dlq_max_raw_bytes,
            max_reason_chars=s.dlq_max_reason_chars,
        )
        self._part_size = max(1, s.score_part_events)
        self._sessions = sessions
        self._expiry = expiry
        self._holder = holder
        self._metrics = metrics
        self._pseudonym = steps.Pseudonyms(key)
        self._items = ItemSnapshots(settings)
        self._model = ModelRunner(
            s.inline_score_max_ms / 1000,
            probe=lambda: steps.probe_record(self._items.current),
            on_call=metrics.step_seconds.labels(step=steps.STEP_SCORE).observe,
        )
        self._ready = asyncio.Event()
        self.last_offsets: dict[int, int] = {}

    def load(self) -> None:
        """Load the item snapshot and the first champion; blocking, before the worker starts.

        Done before any event is fetched: a stream processor that waits for seconds on
        start-up stalls Faust's partition flow after a restart with a backlog.
        """
        self._items.load_now()
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

    async def process_events(self, events: Sequence[Any]) -> None:
        """`process` for a micro-batch of Faust events (`stream.take_events`)."""
        await self.process(
            [e.value for e in events],
            [
                InputPosition(e.message.topic, e.message.partition, e.message.offset, e.message.timestamp)
                for e in events
            ],
        )

    async def process(self, values: list[bytes | None], inputs: list[InputPosition]) -> None:
        """One micro-batch of Kafka values and where each was read (any consumer loop);
        returns once the broker has acknowledged all its outputs. An infrastructure
        failure ends the process (status 70): a restart reads the batch again."""
        try:
            await self._score_batch(values, inputs)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            die("score_batch", exc)

    # ------------------------------------------------------------------ per batch

    async def _score_batch(self, values: list[bytes | None], inputs: list[InputPosition]) -> None:
        """`process`, raising what ends the process there."""
        await self._ready.wait()
        # A newer item snapshot, like a newer model, comes in between batches.
        batch = _Batch(values, inputs, received_at=datetime.now(timezone.utc), items=self._items.swap())
        self._metrics.events_in.inc(len(values))
        # The swap happens here, between batches: the whole batch sees one model. (None:
        # no champion yet; the first part with a record to score waits for one.)
        scorer = self._holder.swap()
        serving = False  # the batch's scorer is ready (waited for, timed)
        # The batch goes through in parts: while the model scores one part in its thread,
        # the event loop prepares the next and sends the one before (the model releases
        # the interpreter lock while it computes). Parts finish in order. A model fast
        # enough to score the whole batch on the event loop gets it as one part: one
        # encoding and one forward pass cost less per event than four.
        part_size = self._part_size
        if scorer is not None and self._model.inline(scorer, len(values)):
            part_size = max(part_size, len(values))
        in_flight: _Part | None = None
        for start in range(0, len(values), part_size):
            part = self._prepare_part(batch, start, start + part_size)
            if start + part_size >= len(values):
                # Every entry is final once the last part is prepared: the changelog goes
                # out now, so the broker stores it while the model scores.
                batch.acks += await self._send_changelog(batch)
            if part.records:
                if not serving:
                    scorer = await self._serving_scorer(scorer)
                    self._metrics.serving(scorer.model_name, scorer.version)
                    serving = True
                if any(part.is_view):
                    part.scoring = self._model.submit(scorer, part.views())
            if in_flight is not None:
                await self._send_scored(in_flight, scorer, batch)
            in_flight = part
        if in_flight is not None:
            await self._send_scored(in_flight, scorer, batch)
        await self._await_acks(batch)

    def _prepare_part(self, batch: _Batch, start: int, stop: int) -> _Part:
        """Parse, validate, pseudonymize and enrich `batch.values[start:stop]`; the records
        that fail are dead-lettered, the others make the part."""
        started = time.perf_counter()
        prepared = steps.prepare_batch(
            batch.values[start:stop],
            entry_of=self._sessions.get,
            pseudonym=self._pseudonym,
            items=batch.items,
            now=batch.received_at,
            entries=batch.entries,
        )
        self._metrics.step_seconds.labels(step=steps.STEP_ENRICH).observe(time.perf_counter() - started)
        self._metrics.replayed.inc(prepared.replayed)
        batch.changed.update((user, start + i) for user, i in prepared.changed.items())
        part = _Part()
        for index, record in enumerate(prepared.records, start):
            if isinstance(record, steps.Failed):
                self._dead_letter(batch, index, record.step, record.error, batch.received_at)
            else:
                part.indexes.append(index)
                part.records.append(record)
                part.is_view.append(steps.is_scored(record))
        batch.reached_scoring += len(part.records)
        return part

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
        if not self._model.known(scorer):
            await self._model.calibrate(scorer)
        return scorer

    async def _send_changelog(self, batch: _Batch) -> list[Awaitable[Any]]:
        """Each changed entry once: into the table, and to its changelog on the partition
        of the user's input (the table is co-partitioned with clicks). Returns the acks.

        Sent before the batch's scored events is safe: an event read again after a crash
        finds itself in its user's entry and gets the features it had the first time.
        Entries that expired (`stream.expiry`) leave the table here, each with a
        tombstone after the batch's own records.
        """
        changelog: list[tuple[int, bytes, bytes | None]] = []
        table, expiry = self._sessions.data, self._expiry
        for user, index in batch.changed.items():
            entry = batch.entries[user]
            table[user] = entry
            partition = batch.inputs[index].partition
            changelog.append((partition, *self._changelog_record(user, entry)))
            if expiry is not None:
                expiry.touch(partition, user, entry["state"]["last_ts_ms"])
        if expiry is not None:
            expired = expiry.expired()
            for partition, user in expired:
                table.pop(user, None)
                changelog.append((partition, *tombstone_record(user)))
            if expired:
                self._metrics.sessions_expired.inc(len(expired))
        self._metrics.session_entries.set(len(table))
        return await self._outbox.send(self._changelog_topic, changelog)

    async def _part_scores(self, scorer: Any, part: _Part) -> list[Any]:
        """A score per record of the part: the model's for a view (its exception for a
        view the model cannot score), None for the other events."""
        if part.scoring is None:
            return [None] * len(part.records)
        view_scores = iter(await self._model.scores(scorer, part.views(), part.scoring))
        return [next(view_scores) if view else None for view in part.is_view]

    async def _send_scored(self, part: _Part, scorer: Any, batch: _Batch) -> None:
        """Serialize a scored part and hand its events to the producer (acks awaited with
        the batch); a record that cannot be scored or written out is dead-lettered."""
        if not part.records:
            return
        scores = await self._part_scores(scorer, part)
        scored_at = datetime.now(timezone.utc)
        kept: list[tuple[int, dict[str, Any], Any]] = []  # (index in the batch, record, score)
        for index, record, score in zip(part.indexes, part.records, scores):
            if isinstance(score, BaseException):
                self._dead_letter(batch, index, steps.STEP_SCORE, score, scored_at)
            else:
                kept.append((index, record, score))
        # Sent in slices: the broker stores one while the next is serialized.
        for first in range(0, len(kept), SEND_SLICE_EVENTS):
            sliced = kept[first : first + SEND_SLICE_EVENTS]
            wire = steps.scored_values(
                [record for _, record, _ in sliced],
                [score for _, _, score in sliced],
                model_name=scorer.model_name,
                model_version=scorer.version,
                received_at=batch.received_at,
                scored_at=scored_at,
                item_snapshot_version=batch.items.version,
            )
            out = []
            for (index, record, _), value in zip(sliced, wire):
                if isinstance(value, steps.Failed):
                    self._dead_letter(batch, index, value.step, value.error, scored_at)
                else:
                    out.append((None, record["user_id"].encode("utf-8"), value))
                    batch.scored.append(batch.inputs[index])
            batch.acks += await self._outbox.send(self._scored_topic, out)

    def _dead_letter(self, batch: _Batch, index: int, step: str, error: BaseException, failed_at: datetime) -> None:
        """Dead-letter the batch's record at `index`, on its input's partition; its
        delivery is awaited with the batch's acks."""
        read = batch.inputs[index]
        batch.acks.append(
            self._dead_letters.send(
                batch.values[index],
                step,
                error,
                topic=read.topic,
                partition=read.partition,
                offset=read.offset,
                failed_at=failed_at,
            )
        )

    async def _await_acks(self, batch: _Batch) -> None:
        """Wait for the broker to acknowledge every output before the caller commits the
        batch's input offsets; then count the batch."""
        started = time.perf_counter()
        if batch.acks:
            await asyncio.gather(*batch.acks)
        done = time.time()
        self._metrics.step_seconds.labels(step=steps.STEP_PRODUCE).observe(time.perf_counter() - started)
        observe_many(self._metrics.latency, [max(0.0, done - read.timestamp) for read in batch.scored])
        self._metrics.scored.inc(len(batch.scored))
        if batch.reached_scoring:
            self._metrics.batch_size.observe(batch.reached_scoring)
        for read in batch.inputs:
            if read.offset > self.last_offsets.get(read.partition, -1):
                self.last_offsets[read.partition] = read.offset

    async def refresh_items(self) -> bool:
        """Load a newer item snapshot, if the features job wrote one, for the next batch."""
        await self._ready.wait()
        return await self._items.refresh()

    def close(self) -> None:
        self._items.close()
        self._model.close()
        self._holder.close()
