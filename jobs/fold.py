"""Fold the stream back into Delta: `clicks.scored` and `clicks.dlq`, exactly once, incrementally.

    python -m jobs.fold                # fold every record up to the topics' ends, then exit
    python -m jobs.fold --follow       # keep folding new records until SIGTERM / --max-seconds

Where the rows go. Folded events go to their own table, `silver/clicks_stream` (silver
clicks' columns: CLICK_EVENT + source + _batch_id, then the stream's own: model name and
version, score (null for events the worker does not score), received/scored times and
the Kafka position). They are not appended into `silver/clicks`: `batch.clean` rewrites
that table from bronze (`--force`, or any new bronze version), which would drop folded
rows while their offsets, kept in the log's app transactions, say they were folded.
Readers of "all clicks" (the features job) union the two tables by name and keep one
row per event_id: a later clean may bring in an event that was folded first. Dead
letters go to `silver/quarantine_stream` (silver quarantine's columns, then the entry's
step, reason_code, raw size and sha256 and the failed record's position), beside the
batch's `silver/quarantine`, which `batch.clean` also rewrites. The table names come from
settings (fold.stream_table, fold.quarantine_table); their schemas and the formats of the
records read are `shared.contract`. Each row keeps the wire version of the record it was
read from (`_wire_version`); a table written before that column existed gets it here.

Exactly once (kafka-delta-ingest's pattern). Each (topic, partition)'s next offset is an
app transaction `fold:<topic>:<partition>` committed in the same Delta commit as its
rows, in the table its rows go to. On assignment each partition is sought to that
version, so a restarted fold resumes from the Delta log; the consumer group's offsets
are committed too, for monitoring only. Before each commit the versions are read again
from the snapshot the commit is based on: records below them were folded by another
member (a partition moved in a rebalance) and are dropped. A concurrent commit that set
one of the same app ids, or added rows in the same event-time range, makes the commit
fail; the fold re-reads and retries, so several folds in one group may run at once.

Duplicates. The worker delivers at least once and replays may resend events that the
batch already cleaned: rows whose event_id is in the batch, in `silver/clicks_stream`
or in `silver/clicks` are not inserted (a MERGE that inserts when not matched).

Incremental. The MERGE's predicate also bounds the target's `ts` to the new rows' range
and the silver/clicks lookup reads only that range, so Delta file stats skip history:
the time of a fold follows the new records, not the tables (bench/loop.py measures it).

The parts: `jobs.fold_kafka` (the consumer: where each partition resumes, when a drain
run is done), `jobs.fold_delta` (the commit of a batch to both tables), this module (the
job: options, the poll-and-commit cycle, metrics).

Test hook: SHOPFLOW_FOLD__CRASH_AT=before_commit|between_tables|during_write|after_commit
(with SHOPFLOW_FOLD__CRASH_BATCH=n) kills the fold with SIGKILL at that point of its n-th batch.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from dataclasses import dataclass

from jobs.fold_delta import FoldCommitter, FoldResult, folded_offset, snapshot_of
from jobs.fold_kafka import FoldConsumer
from shared.contract.folded import QUARANTINE_SCHEMA, STREAM_SCHEMA, quarantine_table_path, stream_table_path
from shared.delta_merge import ensure_table
from shared.errors import ShopflowError
from shared.options import option, resolve, start_job
from shared.run_metrics import JobRun
from shared.settings import Settings

log = logging.getLogger("jobs.fold")


@dataclass(frozen=True)
class FoldOptions:
    follow: bool = option(False, help="keep folding new records instead of exiting at the topics' ends")
    batch_records: int | None = option(None, help="records per Delta commit", setting="fold.batch_records", ge=1)
    max_seconds: float | None = option(None, help="stop after this many seconds (useful with --follow)", gt=0)


def committed_offsets(settings: Settings) -> dict[str, int]:
    """ "topic[p]" -> the next offset folded into Delta, for every partition folded so far.

    Read from the tables' app transactions (what a restarted fold resumes from). Delta
    cannot list app ids, so partitions 0 .. max(settings.kafka.partitions, 64) are asked.
    """
    out: dict[str, int] = {}
    k = settings.kafka
    for topic, path in ((k.scored_topic, stream_table_path(settings)), (k.dlq_topic, quarantine_table_path(settings))):
        snapshot = snapshot_of(path)
        for partition in range(max(k.partitions, 64)):
            version = folded_offset(snapshot, topic, partition)
            if version is not None:
                out[f"{topic}[{partition}]"] = version
    return out


def fold_until_done(
    consumer: FoldConsumer,
    committer: FoldCommitter,
    settings: Settings,
    options: FoldOptions,
    stop: threading.Event,
) -> None:
    """Poll and commit batches until the topics are folded to their ends (or, with
    --follow, until `stop` / --max-seconds); what is held at the end is committed."""
    batch_records = consumer.batch_records
    started = time.monotonic()
    waiting_since = time.monotonic()
    while not stop.is_set():
        polled = consumer.poll()
        held = consumer.held()
        if held >= batch_records or (held and not polled):
            consumer.commit_group_offsets(committer.commit(consumer.pending, consumer))
            consumer.pending.clear()
            continue
        if polled:
            continue
        if options.max_seconds is not None and time.monotonic() - started > options.max_seconds:
            break
        if consumer.assigned():
            waiting_since = time.monotonic()
            if not options.follow and consumer.caught_up():
                break
        elif time.monotonic() - waiting_since > settings.fold.assignment_timeout_seconds:
            log.warning(
                "no partition assigned within %.0f s (more folds than partitions?); exiting",
                settings.fold.assignment_timeout_seconds,
            )
            break
    if consumer.pending:
        consumer.commit_group_offsets(committer.commit(consumer.pending, consumer))
        consumer.pending.clear()


def run(settings: Settings, options: FoldOptions) -> FoldResult:
    """Fold the scored and dead-letter topics into silver Delta; see the module docstring."""
    started = time.monotonic()
    options = resolve(options, settings)  # unset options: the fold's settings
    k, f = settings.kafka, settings.fold
    # Creates the tables, or adds the columns a table written by an older fold lacks.
    ensure_table(stream_table_path(settings), STREAM_SCHEMA)
    ensure_table(quarantine_table_path(settings), QUARANTINE_SCHEMA)
    with JobRun("jobs.fold", settings.metrics_dir) as metrics:
        result = FoldResult()
        tables = {k.scored_topic: stream_table_path(settings), k.dlq_topic: quarantine_table_path(settings)}
        consumer = FoldConsumer(settings, options.batch_records, tables)
        committer = FoldCommitter(settings, result)
        stop = threading.Event()
        # SIGTERM ends a --follow run after its current batch (only the main thread may set it).
        in_main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set()) if in_main else None
        try:
            fold_until_done(consumer, committer, settings, options, stop)
        finally:
            if in_main:
                signal.signal(signal.SIGTERM, previous)
            consumer.close()
        result.seconds = round(time.monotonic() - started, 3)
        for table, version in result.tables_read.items():
            metrics.read(table, version)
        for table, versions in result.versions_written.items():
            metrics.wrote(
                table, max(versions), result.rows_folded if table.endswith(f.stream_table) else result.dlq_rows
            )
        for name in (
            "records_read",
            "rows_folded",
            "duplicates_dropped",
            "dlq_rows",
            "unreadable",
            "conflicts_retried",
        ):
            metrics.count(name, getattr(result, name))
        metrics.extra["partitions"] = result.partitions
        metrics.extra["topics"] = {"scored": k.scored_topic, "dlq": k.dlq_topic}
    return result


def main(argv: list[str] | None = None) -> int:
    options, settings = start_job(FoldOptions, argv, prog="shopflow fold", doc=__doc__)
    logging.getLogger("kafka").setLevel(logging.WARNING)
    try:
        result = run(settings, options)
    except ShopflowError as exc:
        print(f"shopflow fold: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result.to_dict(), default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
