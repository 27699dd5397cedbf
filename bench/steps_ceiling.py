"""Ceiling B: the worker's own per-batch code in a plain aiokafka loop, no framework.

Runs `stream.pipeline.Pipeline` (parse, validate, pseudonymize, enrich, encode, score,
serialize, produce, session changelog, dead letters, metrics) on micro-batches that a
bare aiokafka consumer reads, with the session table as a dict. The worker's throughput
over this one is what Faust costs.

    result = asyncio.run(steps_loop(settings, "bench-backlog", "bench-b-out", expect=50_000, group="b"))
"""

from __future__ import annotations

import time
from typing import Any

from shared.settings import Settings


class _Table(dict):
    """A dict with the one attribute of a Faust table the pipeline writes through."""

    @property
    def data(self) -> _Table:
        return self


async def steps_loop(settings: Settings, in_topic: str, out_topic: str, *, expect: int, group: str) -> dict[str, Any]:
    """Consume `expect` events from `in_topic` through the pipeline into `out_topic`.

    Session entries go to `<out_topic>-changelog`, dead letters to `<out_topic>-dlq`
    (both must exist). Timed from the first batch read to the last commit. Offsets are
    committed as often as the worker commits them (`commit_interval_seconds`), and only
    for batches that returned, i.e. whose outputs are acknowledged.
    """
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from stream.champion import champion_functions
    from stream.expiry import session_expiry
    from stream.metrics import WorkerMetrics
    from stream.outbox import Outbox
    from stream.pipeline import InputPosition, Pipeline
    from stream.scoring import ModelHolder
    from stream.sessions import changelog_record
    from stream.worker import set_torch_threads, settle_garbage_collector

    set_torch_threads(settings.stream.torch_threads)  # as the worker does
    resolve, load, fingerprint = champion_functions(settings)
    bootstrap = settings.kafka.bootstrap_servers
    consumer = AIOKafkaConsumer(
        in_topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=settings.stream.fetch_max_wait_ms,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks=-1, max_batch_size=settings.stream.producer_max_batch_bytes
    )
    pipeline = Pipeline(
        settings,
        outbox=Outbox(lambda: producer),
        scored_topic=out_topic,
        changelog_topic=f"{out_topic}-changelog",
        dlq_topic=f"{out_topic}-dlq",
        changelog_record=changelog_record,
        sessions=_Table(),
        holder=ModelHolder(resolve, load, fingerprint=fingerprint),
        metrics=WorkerMetrics(),
        expiry=session_expiry(settings),  # idle entries expire as in the worker
    )
    pipeline.load()
    settle_garbage_collector()  # as the worker does after its start-up
    await consumer.start()
    await producer.start()
    done = 0
    started: float | None = None
    committed_at = time.perf_counter()
    try:
        while done < expect:
            fetched = await consumer.getmany(timeout_ms=1000, max_records=settings.stream.batch_max_events)
            records = [r for part in fetched.values() for r in part]
            if not records:
                continue
            if started is None:
                started = time.perf_counter()
            await pipeline.process(
                [r.value for r in records],
                [InputPosition(r.topic, r.partition, r.offset, r.timestamp / 1000.0) for r in records],
            )
            done += len(records)
            # As often as the worker commits; every batch read so far is acknowledged.
            if time.perf_counter() - committed_at >= settings.stream.commit_interval_seconds or done >= expect:
                await consumer.commit()
                committed_at = time.perf_counter()
        seconds = time.perf_counter() - (started or time.perf_counter())
    finally:
        await consumer.stop()
        await producer.stop()
        pipeline.close()
    return {
        "events": done,
        "scored": int(_total(pipeline, "shopflow_stream_scored_total")),
        "seconds": round(seconds, 3),
        "events_per_s": round(done / max(seconds, 1e-9), 1),
        "step_seconds": {
            step: round(_total(pipeline, "shopflow_stream_step_seconds_sum", step=step), 3)
            for step in ("enrich", "score", "produce")
        },
    }


def _total(pipeline: Any, name: str, **labels: str) -> float:
    """A metric's value summed over the pipeline's registry (the bench reads its own)."""
    registry = pipeline.metrics.registry
    return sum(
        sample.value
        for metric in registry.collect()
        for sample in metric.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )
