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
batch's `silver/quarantine`, which `batch.clean` also rewrites.

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

Test hook: SHOPFLOW_FOLD__CRASH_AT=before_commit|between_tables|during_write|after_commit
(with SHOPFLOW_FOLD__CRASH_BATCH=n) kills the fold with SIGKILL at that point of its n-th batch.
"""

from __future__ import annotations

import json
import logging
import random
import signal
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from jobs.fold_hooks import FileWatch, crash_point
from jobs.fold_rows import (
    QUARANTINE_SCHEMA,
    STREAM_SCHEMA,
    Position,
    dlq_row,
    first_of_each,
    scored_row,
    to_arrow,
    unreadable_scored_row,
)
from shared.delta import (
    AppTxn,
    MergeResult,
    ensure_table,
    insert_new_rows,
    keys_present,
    open_table,
    table_exists,
    table_version,
)
from shared.errors import BrokerError, ConcurrentCommitError, ShopflowError, TableError
from shared.options import option, start_job
from shared.run_metrics import JobRun
from shared.settings import Settings

log = logging.getLogger("jobs.fold")


@dataclass(frozen=True)
class FoldOptions:
    follow: bool = option(False, help="keep folding new records instead of exiting at the topics' ends")
    batch_records: int | None = option(None, help="records per Delta commit", setting="fold.batch_records", ge=1)
    max_seconds: float | None = option(None, help="stop after this many seconds (useful with --follow)", gt=0)


@dataclass
class FoldResult:
    """What one fold run read and wrote. `partitions`: "topic[p]" -> from/to offsets, records."""

    partitions: dict[str, dict[str, int]] = field(default_factory=dict)
    records_read: int = 0
    rows_folded: int = 0
    duplicates_dropped: int = 0
    dlq_rows: int = 0
    unreadable: int = 0
    batches: int = 0
    conflicts_retried: int = 0
    files_scanned: int = 0  # by the MERGEs into the stream table: the history they had to read
    files_skipped: int = 0
    versions_written: dict[str, list[int]] = field(default_factory=dict)
    tables_read: dict[str, int | None] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Every field, plus the shapes other jobs' reports read: offsets and tables written."""
        doc = asdict(self)
        doc["offsets"] = {name: [p["from"], p["to"]] for name, p in self.partitions.items()}
        doc["tables_written"] = {table: {"version": max(versions)} for table, versions in self.versions_written.items()}
        return doc

    as_dict = to_dict


def app_id(topic: str, partition: int) -> str:
    return f"fold:{topic}:{partition}"


def committed_offsets(settings: Settings) -> dict[str, int]:
    """ "topic[p]" -> the next offset folded into Delta, for every partition folded so far.

    Read from the tables' app transactions (what a restarted fold resumes from). Delta
    cannot list app ids, so partitions 0 .. max(settings.kafka.partitions, 64) are asked.
    """
    out: dict[str, int] = {}
    k, f = settings.kafka, settings.fold
    for topic, table in ((k.scored_topic, f.stream_table), (k.dlq_topic, f.quarantine_table)):
        path = settings.lake.table("silver", table)
        if not table_exists(path):
            continue
        snapshot = open_table(path)
        for partition in range(max(k.partitions, 64)):
            version = snapshot.transaction_version(app_id(topic, partition))
            if version is not None:
                out[f"{topic}[{partition}]"] = version
    return out


class _Fold:
    """One fold process: a group consumer of both topics and the commits of its batches."""

    def __init__(self, settings: Settings, options: FoldOptions) -> None:
        self.settings = settings
        self.options = options
        self.batch_records = options.batch_records or settings.fold.batch_records
        k = settings.kafka
        self.tables = {
            k.scored_topic: settings.lake.table("silver", settings.fold.stream_table),
            k.dlq_topic: settings.lake.table("silver", settings.fold.quarantine_table),
        }
        self.silver_clicks = settings.lake.table("silver", "clicks")
        self.result = FoldResult()
        self.stopping = False
        # Per partition, the offset this fold's next record continues from (Delta's view).
        self.expected: dict[Any, int | None] = {}
        self.pending: dict[Any, list[Any]] = {}  # polled, not committed yet
        self.committed: dict[Any, int] = {}  # next offsets committed by the current batch
        self.probe: Any = None  # a group-less consumer that confirms end offsets
        self.recreated: set[Any] = set()  # partitions whose log restarted below Delta's offset
        self.consumer = self._consumer()

    # ------------------------------------------------------------------ kafka side

    def _consumer(self) -> Any:
        from kafka import ConsumerRebalanceListener, KafkaConsumer

        fold = self

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked: Any) -> None:
                # Records not committed yet are the next owner's to fold (from Delta's offsets).
                for tp in revoked:
                    fold.pending.pop(tp, None)
                log.info("partitions revoked: %s", _names(revoked))

            def on_partitions_assigned(self, assigned: Any) -> None:
                fold._seek_to_folded(assigned)

        k, f = self.settings.kafka, self.settings.fold
        try:
            consumer = KafkaConsumer(
                bootstrap_servers=k.bootstrap_servers,
                group_id=f.group_id,
                client_id="shopflow-fold",
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                session_timeout_ms=k.session_timeout_ms,
                heartbeat_interval_ms=k.heartbeat_interval_ms,
                fetch_max_wait_ms=f.fetch_max_wait_ms,
                max_poll_records=self.batch_records,
            )
            consumer.subscribe([k.scored_topic, k.dlq_topic], listener=Listener())
        except Exception as exc:  # kafka-python raises several unrelated types here
            raise BrokerError(f"cannot consume from {k.bootstrap_servers}: {exc}") from exc
        return consumer

    def _seek_to_folded(self, assigned: Any) -> None:
        """Resume each partition from its app-transaction version in Delta, not the group's offset."""
        for tp in assigned:
            path = self.tables[tp.topic]
            stored = (
                open_table(path).transaction_version(app_id(tp.topic, tp.partition)) if table_exists(path) else None
            )
            self.expected[tp] = stored
            if stored is None:
                self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, stored)
            log.info(
                "assigned %s[%d]: resuming at %s (Delta app transaction)",
                tp.topic,
                tp.partition,
                "the beginning" if stored is None else stored,
            )

    def _caught_up(self) -> bool:
        assignment = self.consumer.assignment()
        if not assignment:
            return False
        for tp in assignment:
            end, position = self.consumer.highwater(tp), self.consumer.position(tp)
            if end is None or position < end:
                return False
        # The group consumer's high watermarks said so; confirm each end with a fetch at
        # the listed end: Tansu answers ListOffsets with the last record batch's base
        # offset + 1 (stream/transport.py), and its fetch high watermark was seen short of
        # the end mid-log, which left partition tails unfolded.
        ends = self._confirmed_ends(list(assignment))
        snapshots = {topic: open_table(path) for topic, path in self.tables.items() if table_exists(path)}
        for tp in assignment:
            position = self.consumer.position(tp)
            snapshot = snapshots.get(tp.topic)
            stored = snapshot.transaction_version(app_id(tp.topic, tp.partition)) if snapshot else None
            if position == ends[tp] and (stored or 0) < ends[tp]:
                # Read to the end but not all of it is in Delta: records polled before a
                # rebalance were dropped uncommitted and the partition stayed here. Drain is
                # judged by Delta's offsets, so read them again from there.
                log.info(
                    "%s[%d]: read to %d but Delta holds %s; re-reading from there",
                    tp.topic,
                    tp.partition,
                    position,
                    stored,
                )
                self.expected[tp] = stored
                if stored is None:
                    self.consumer.seek_to_beginning(tp)
                else:
                    self.consumer.seek(tp, stored)
                return False
            if position > ends[tp]:
                # Past the log's end: the topic was recreated (see _reconcile); read it from the start.
                log.warning(
                    "%s[%d] ends at %d, below the %d already folded: the topic was recreated; "
                    "reading it from the beginning",
                    tp.topic,
                    tp.partition,
                    ends[tp],
                    position,
                )
                self.consumer.seek_to_beginning(tp)
                self.recreated.add(tp)
                return False
            if position < ends[tp]:
                return False
        return True

    def _confirmed_ends(self, tps: list[Any]) -> dict[Any, int]:
        from kafka import KafkaConsumer

        if self.probe is None:
            self.probe = KafkaConsumer(
                bootstrap_servers=self.settings.kafka.bootstrap_servers,
                group_id=None,
                enable_auto_commit=False,
                fetch_max_wait_ms=self.settings.fold.fetch_max_wait_ms,
            )
        listed = self.probe.end_offsets(tps)
        self.probe.assign(tps)
        for tp in tps:
            self.probe.seek(tp, max(listed[tp] - 1, 0))
        deadline = time.monotonic() + 10
        while any(self.probe.highwater(tp) is None for tp in tps) and time.monotonic() < deadline:
            self.probe.poll(timeout_ms=100)
        return {tp: max(listed[tp], self.probe.highwater(tp) or 0) for tp in tps}

    # -------------------------------------------------------------------- the loop

    def loop(self) -> None:
        started = time.monotonic()
        waiting_since = time.monotonic()
        while not self.stopping:
            polled = self.consumer.poll(timeout_ms=self.settings.fold.poll_timeout_ms, max_records=self.batch_records)
            for tp, records in polled.items():
                self.pending.setdefault(tp, []).extend(records)
            held = sum(len(r) for r in self.pending.values())
            if held >= self.batch_records or (held and not polled):
                self._commit(self.pending)
                self.pending = {}
                continue
            if polled:
                continue
            if self.options.max_seconds is not None and time.monotonic() - started > self.options.max_seconds:
                break
            if self.consumer.assignment():
                waiting_since = time.monotonic()
                if not self.options.follow and self._caught_up():
                    break
            elif time.monotonic() - waiting_since > self.settings.fold.assignment_timeout_seconds:
                log.warning(
                    "no partition assigned within %.0f s (more folds than partitions?); exiting",
                    self.settings.fold.assignment_timeout_seconds,
                )
                break
        if self.pending:
            self._commit(self.pending)
            self.pending = {}

    def _commit(self, pending: dict[Any, list[Any]]) -> None:
        """Commit one batch to both tables, retrying on conflicts with concurrent folds."""
        self.result.batches += 1
        batch_id = f"fold-{uuid.uuid4().hex[:12]}"
        folded_at = datetime.now(timezone.utc)
        retries = self.settings.fold.commit_retries
        self.committed = {}
        for attempt in range(retries + 1):
            try:
                self._commit_once(pending, batch_id, folded_at)
                break
            except ConcurrentCommitError as exc:
                if attempt == retries:
                    raise TableError(f"fold commit still conflicting after {retries} retries: {exc}") from exc
                self.result.conflicts_retried += 1
                log.info("commit conflict (attempt %d): re-reading the offsets and retrying", attempt + 1)
                time.sleep(random.uniform(0.02, 0.1) * min(attempt + 1, 10))
        self._crash_point("after_commit")
        self._commit_group_offsets(self.committed)

    def _note_committed(self, folded: dict[Any, list[Any]]) -> None:
        for tp, records in folded.items():
            first, nxt = records[0].offset, records[-1].offset + 1
            self.expected[tp] = self.committed[tp] = nxt
            self.recreated.discard(tp)
            name = f"{tp.topic}[{tp.partition}]"
            seen = self.result.partitions.setdefault(name, {"from": first, "to": nxt, "records": 0})
            seen["from"], seen["to"] = min(seen["from"], first), max(seen["to"], nxt)
            seen["records"] += len(records)
            del self.pending[tp]  # a retry of the other table's commit must not fold them again

    def _commit_group_offsets(self, committed: dict[Any, int]) -> None:
        """Monitoring only (lag dashboards); the fold itself resumes from Delta."""
        from kafka.structs import OffsetAndMetadata

        if not committed:
            return
        try:
            self.consumer.commit({tp: OffsetAndMetadata(nxt, "", -1) for tp, nxt in committed.items()})
        except Exception as exc:  # a rebalance in progress, say: harmless here
            log.debug("group offset commit skipped: %s", exc)

    def _reconcile(
        self, table: Any, tps: list[Any], pending: dict[Any, list[Any]]
    ) -> tuple[dict[Any, list[Any]], list[AppTxn]]:
        """The records still to fold per partition (by the snapshot's versions) and their txns.

        A partition whose Delta version is not where this fold's records continue from
        was folded by another member (it moved in a rebalance): its records are dropped
        from `pending` and the consumer re-reads from the version (later polls).
        """
        keep: dict[Any, list[Any]] = {}
        txns: list[AppTxn] = []
        for tp in tps:
            stored = table.transaction_version(app_id(tp.topic, tp.partition))
            records = pending[tp]
            if (
                stored is not None
                and tp not in self.recreated
                and records[0].offset < stored
                and stored == self.expected.get(tp)
                and self._confirmed_ends([tp])[tp] < stored
            ):
                # Sought to `stored`, reset below it by the broker: the log ends short of it.
                self.recreated.add(tp)
            if tp in self.recreated:
                # The log restarted below `stored` (seen in _caught_up): fold it again from its
                # start; event ids already folded are dropped by the MERGE.
                log.warning(
                    "%s[%d]: folding the recreated topic from offset %d (Delta held %s)",
                    tp.topic,
                    tp.partition,
                    records[0].offset,
                    stored,
                )
            elif stored is not None:
                records = [r for r in records if r.offset >= stored]
                # Our own position may run past gaps in the log; anyone else's may not.
                if not records or (records[0].offset != stored and stored != self.expected.get(tp)):
                    log.info(
                        "%s[%d]: Delta holds offset %d, not where this fold's records continue; re-reading from there",
                        tp.topic,
                        tp.partition,
                        stored,
                    )
                    if tp in self.consumer.assignment():
                        self.consumer.seek(tp, stored)
                    self.expected[tp] = stored
                    del pending[tp]
                    continue
            keep[tp] = records
            txns.append(AppTxn(app_id(tp.topic, tp.partition), records[-1].offset + 1))
        return keep, txns

    def _commit_once(self, pending: dict[Any, list[Any]], batch_id: str, folded_at: datetime) -> None:
        k = self.settings.kafka
        stream_path, quarantine_path = self.tables[k.scored_topic], self.tables[k.dlq_topic]
        stream = open_table(stream_path)
        quarantine = open_table(quarantine_path)
        scored, scored_txns = self._reconcile(
            stream, [tp for tp in list(pending) if tp.topic == k.scored_topic], pending
        )
        dead, dead_txns = self._reconcile(quarantine, [tp for tp in list(pending) if tp.topic == k.dlq_topic], pending)

        rows, bad = [], []
        for tp, records in scored.items():
            for r in records:
                pos = Position(tp.topic, tp.partition, r.offset)
                try:
                    rows.append(scored_row(r.value, pos, batch_id=batch_id, folded_at=folded_at))
                except ValueError as exc:
                    log.warning("unreadable scored record at %s: %s (quarantined)", pos, exc)
                    bad.append(unreadable_scored_row(r.value, pos, str(exc), batch_id=batch_id, folded_at=folded_at))
        quarantined = bad + [
            dlq_row(r.value, Position(tp.topic, tp.partition, r.offset), batch_id=batch_id, folded_at=folded_at)
            for tp, records in dead.items()
            for r in records
        ]
        quarantined, _ = first_of_each(quarantined, "dedupe_key")
        rows, in_batch = first_of_each(rows, "event_id")
        in_batch_silver = self._in_silver_clicks(rows)
        new_rows = [r for r in rows if r["event_id"] not in in_batch_silver]

        self._crash_point("before_commit")
        q = insert_new_rows(
            quarantine,
            to_arrow(quarantined, QUARANTINE_SCHEMA),
            key="dedupe_key",
            range_column="key_offset",
            txns=dead_txns,
            info={"job": "jobs.fold"},
        )
        self.result.dlq_rows += q.inserted
        self.result.unreadable += len(bad)
        self._record_version(str(quarantine_path), q)
        self._note_committed(dead)
        self._crash_point("between_tables")
        with self._crash_on_new_file(stream_path):
            s = insert_new_rows(
                stream,
                to_arrow(new_rows, STREAM_SCHEMA),
                key="event_id",
                range_column="ts",
                txns=scored_txns,
                info={"job": "jobs.fold"},
            )
        self.result.records_read += sum(len(r) for r in scored.values())
        self.result.rows_folded += s.inserted
        self.result.duplicates_dropped += in_batch + len(in_batch_silver) + (len(new_rows) - s.inserted)
        self.result.files_scanned += s.files_scanned
        self.result.files_skipped += s.files_skipped
        self._record_version(str(stream_path), s)
        self._note_committed(scored)
        log.info(
            "batch %s: %d scored records -> %d rows (%d duplicates), %d dead letters; files scanned %d, skipped %d",
            batch_id,
            sum(len(r) for r in scored.values()),
            s.inserted,
            len(rows) + in_batch - s.inserted,
            q.inserted,
            s.files_scanned,
            s.files_skipped,
        )

    def _in_silver_clicks(self, rows: list[dict[str, Any]]) -> set[str]:
        """Event ids of `rows` the batch already cleaned into silver/clicks (their ts range only)."""
        if not rows or not table_exists(self.silver_clicks):
            return set()
        if "silver/clicks" not in self.result.tables_read:
            self.result.tables_read["silver/clicks"] = table_version(self.silver_clicks)
        version = self.result.tables_read["silver/clicks"]
        times = [r["ts"] for r in rows]
        return keys_present(
            self.silver_clicks, "event_id", [r["event_id"] for r in rows], "ts", min(times), max(times), version=version
        )

    def _record_version(self, path: str, merge: MergeResult) -> None:
        if merge.version is not None:
            name = "silver/" + Path(path).name
            versions = self.result.versions_written.setdefault(name, [])
            if merge.version not in versions:
                versions.append(merge.version)

    def _crash_point(self, point: str) -> None:
        crash_point(self.settings.fold, point, self.result.batches)

    def _crash_on_new_file(self, root: Path) -> FileWatch:
        fold = self.settings.fold
        return FileWatch(root, armed=fold.crash_at == "during_write" and self.result.batches == fold.crash_batch)

    def close(self) -> None:
        for consumer in (self.consumer, self.probe):
            try:
                if consumer is not None:
                    consumer.close(autocommit=False)
            except Exception as exc:
                log.debug("consumer close: %s", exc)


def _names(tps: Any) -> str:
    return ", ".join(sorted(f"{tp.topic}[{tp.partition}]" for tp in tps)) or "-"


def run(settings: Settings, options: FoldOptions) -> FoldResult:
    """Fold the scored and dead-letter topics into silver Delta; see the module docstring."""
    started = time.monotonic()
    k, f = settings.kafka, settings.fold
    ensure_table(settings.lake.table("silver", f.stream_table), STREAM_SCHEMA)
    ensure_table(settings.lake.table("silver", f.quarantine_table), QUARANTINE_SCHEMA)
    with JobRun("jobs.fold", settings.metrics_dir) as metrics:
        fold = _Fold(settings, options)
        # SIGTERM ends a --follow run after its current batch (only the main thread may set it).
        in_main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, lambda *_: setattr(fold, "stopping", True)) if in_main else None
        try:
            fold.loop()
        finally:
            if in_main:
                signal.signal(signal.SIGTERM, previous)
            fold.close()
        result = fold.result
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
