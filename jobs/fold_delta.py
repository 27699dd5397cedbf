"""The fold's Delta side: one batch of polled records committed to the two folded tables,
each partition's next offset in the same commit as its rows, retried on conflicts.

    committer = FoldCommitter(settings, result)
    committed = committer.commit(consumer.pending, consumer)   # topic-partition -> next offset

Exactly once (kafka-delta-ingest's pattern). Each (topic, partition)'s next offset is an
app transaction `fold:<topic>:<partition>` (`app_id`) committed in the same Delta commit
as its rows, in the table its rows go to; `folded_offset` reads it back. Before each
commit the versions are read again from the snapshot the commit is based on: records
below them were folded by another member (a partition moved in a rebalance) and are
dropped. A concurrent commit that set one of the same app ids, or added rows in the same
event-time range, makes the commit fail; the fold re-reads and retries.

Recreated topics. The offset is only meaningful in the topic it was read from: each
partition's commit also stores that topic's identity (its Kafka topic id, as the app
transaction `fold-topic:<topic>:<partition>`). A fold that finds another id on the broker
folds the partition again from its start, however long the new log has grown
(`jobs.fold_kafka`); event ids already folded are dropped by the MERGE.

Duplicates. Rows whose event_id is in the batch, in the stream table or in silver/clicks
are not inserted (a MERGE that inserts when not matched); the silver/clicks lookup reads
only the new rows' ts range, so the time of a fold follows the new records.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deltalake import DeltaTable

from jobs.fold_hooks import FileWatch, crash_point
from shared.contract.dead_letter import dlq_row
from shared.contract.folded import (
    QUARANTINE_SCHEMA,
    STREAM_SCHEMA,
    Position,
    quarantine_table_path,
    stream_table_path,
    to_arrow,
)
from shared.contract.scored import scored_row, unreadable_scored_row
from shared.delta import AppTxn, open_table, table_exists, table_version
from shared.delta_merge import MergeResult, insert_new_rows, keys_present
from shared.errors import ConcurrentCommitError, TableError
from shared.redaction import Redactor
from shared.settings import Settings

if TYPE_CHECKING:
    from jobs.fold_kafka import FoldConsumer

log = logging.getLogger("jobs.fold")


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


def app_id(topic: str, partition: int) -> str:
    return f"fold:{topic}:{partition}"


def identity_app_id(topic: str, partition: int) -> str:
    """The app id whose version is the identity of the topic a partition's offset was read from."""
    return f"fold-topic:{topic}:{partition}"


def topic_identity(topic_id: uuid.UUID | str | None) -> int | None:
    """A Kafka topic id (KIP-516) as an app-transaction version: its top 63 bits (a
    version is a signed 64-bit number); None for no id or the all-zero one (brokers
    without topic ids)."""
    if topic_id is None:
        return None
    value = topic_id.int if isinstance(topic_id, uuid.UUID) else uuid.UUID(str(topic_id)).int
    return (value >> 65) or None


def folded_identity(snapshot: DeltaTable | None, topic: str, partition: int) -> int | None:
    """The identity of the topic whose offset `snapshot` holds for topic[partition]; None
    when the offset was stored without one (an older fold, a broker without topic ids)."""
    return None if snapshot is None else snapshot.transaction_version(identity_app_id(topic, partition))


def snapshot_of(path: Path) -> DeltaTable | None:
    """The latest snapshot of a folded table; None while it does not exist."""
    return open_table(path) if table_exists(path) else None


def folded_offset(snapshot: DeltaTable | None, topic: str, partition: int) -> int | None:
    """The next offset of topic[partition] folded into `snapshot` (its app transaction);
    None when nothing of it was folded (or there is no table yet)."""
    return None if snapshot is None else snapshot.transaction_version(app_id(topic, partition))


def first_of_each(rows: Iterable[dict[str, Any]], key: str) -> tuple[list[dict[str, Any]], int]:
    """Rows with the first occurrence of each `key` value (in order), and how many were dropped."""
    seen: set[Any] = set()
    kept: list[dict[str, Any]] = []
    dropped = 0
    for row in rows:
        if row[key] in seen:
            dropped += 1
            continue
        seen.add(row[key])
        kept.append(row)
    return kept, dropped


class FoldCommitter:
    """Commits batches of polled records to the stream and quarantine tables."""

    def __init__(self, settings: Settings, result: FoldResult) -> None:
        self.settings = settings
        self.result = result
        self.stream_path = stream_table_path(settings)
        self.quarantine_path = quarantine_table_path(settings)
        self.silver_clicks = settings.lake.table("silver", "clicks")
        self.max_raw_bytes = settings.stream.dlq_max_raw_bytes
        # Rows hold no raw identifier: old entries and unreadable values are redacted with the workers' key.
        self.redactor = Redactor(settings.pseudonymization_key.get_secret_value().encode("utf-8"))
        self.committed: dict[Any, int] = {}  # next offsets committed by the current batch

    def commit(self, pending: dict[Any, list[Any]], consumer: FoldConsumer) -> dict[Any, int]:
        """Commit one batch to both tables, retrying on conflicts with concurrent folds.

        Records committed are removed from `pending`; returns each partition's next offset
        committed (for the consumer group's offsets).
        """
        self.result.batches += 1
        batch_id = f"fold-{uuid.uuid4().hex[:12]}"
        folded_at = datetime.now(timezone.utc)
        retries = self.settings.fold.commit_retries
        self.committed = {}
        for attempt in range(retries + 1):
            try:
                self._commit_once(pending, consumer, batch_id, folded_at)
                break
            except ConcurrentCommitError as exc:
                if attempt == retries:
                    raise TableError(f"fold commit still conflicting after {retries} retries: {exc}") from exc
                self.result.conflicts_retried += 1
                log.info("commit conflict (attempt %d): re-reading the offsets and retrying", attempt + 1)
                time.sleep(random.uniform(0.02, 0.1) * min(attempt + 1, 10))
        self._crash_point("after_commit")
        return self.committed

    def _note_committed(
        self, folded: dict[Any, list[Any]], pending: dict[Any, list[Any]], consumer: FoldConsumer
    ) -> None:
        for tp, records in folded.items():
            first, nxt = records[0].offset, records[-1].offset + 1
            consumer.expected[tp] = self.committed[tp] = nxt
            consumer.recreated.discard(tp)
            name = f"{tp.topic}[{tp.partition}]"
            seen = self.result.partitions.setdefault(name, {"from": first, "to": nxt, "records": 0})
            seen["from"], seen["to"] = min(seen["from"], first), max(seen["to"], nxt)
            seen["records"] += len(records)
            del pending[tp]  # a retry of the other table's commit must not fold them again

    def _reconcile(
        self, table: DeltaTable, tps: list[Any], pending: dict[Any, list[Any]], consumer: FoldConsumer
    ) -> tuple[dict[Any, list[Any]], list[AppTxn]]:
        """The records still to fold per partition (by the snapshot's versions) and their txns.

        A partition whose Delta version is not where this fold's records continue from
        was folded by another member (it moved in a rebalance): its records are dropped
        from `pending` and the consumer re-reads from the version (later polls).
        """
        keep: dict[Any, list[Any]] = {}
        txns: list[AppTxn] = []
        for tp in tps:
            stored = folded_offset(table, tp.topic, tp.partition)
            records = pending[tp]
            expected = consumer.expected.get(tp)
            identity = consumer.identities.get(tp.topic)
            if (
                tp in consumer.recreated
                and identity is not None
                and folded_identity(table, tp.topic, tp.partition) == identity
            ):
                # Another member folded the recreated topic meanwhile: its offset is this topic's.
                consumer.recreated.discard(tp)
            if (
                stored is not None
                and tp not in consumer.recreated
                and records[0].offset < stored
                and stored == expected
                and consumer.confirmed_ends([tp])[tp] < stored
            ):
                # Sought to `stored`, reset below it by the broker: the log ends short of it.
                consumer.recreated.add(tp)
            if tp in consumer.recreated:
                # The log restarted below `stored` (seen by the consumer's drain check): fold it
                # again from its start; event ids already folded are dropped by the MERGE.
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
                if not records or (records[0].offset != stored and stored != expected):
                    log.info(
                        "%s[%d]: Delta holds offset %d, not where this fold's records continue; re-reading from there",
                        tp.topic,
                        tp.partition,
                        stored,
                    )
                    consumer.reread_from(tp, stored)
                    del pending[tp]
                    continue
            keep[tp] = records
            txns.append(AppTxn(app_id(tp.topic, tp.partition), records[-1].offset + 1))
            if identity is not None:
                txns.append(AppTxn(identity_app_id(tp.topic, tp.partition), identity))
        return keep, txns

    def _commit_once(
        self, pending: dict[Any, list[Any]], consumer: FoldConsumer, batch_id: str, folded_at: datetime
    ) -> None:
        k = self.settings.kafka
        stream = open_table(self.stream_path)
        quarantine = open_table(self.quarantine_path)
        scored, scored_txns = self._reconcile(
            stream, [tp for tp in list(pending) if tp.topic == k.scored_topic], pending, consumer
        )
        dead, dead_txns = self._reconcile(
            quarantine, [tp for tp in list(pending) if tp.topic == k.dlq_topic], pending, consumer
        )

        rows, bad = [], []
        for tp, records in scored.items():
            for r in records:
                pos = Position(tp.topic, tp.partition, r.offset)
                try:
                    rows.append(
                        scored_row(r.value, pos, redactor=self.redactor, batch_id=batch_id, folded_at=folded_at)
                    )
                except ValueError as exc:
                    log.warning("unreadable scored record at %s: %s (quarantined)", pos, exc)
                    bad.append(
                        unreadable_scored_row(
                            r.value,
                            pos,
                            str(exc),
                            redactor=self.redactor,
                            max_raw_bytes=self.max_raw_bytes,
                            batch_id=batch_id,
                            folded_at=folded_at,
                        )
                    )
        quarantined = bad + [
            dlq_row(
                r.value,
                Position(tp.topic, tp.partition, r.offset),
                redactor=self.redactor,
                max_raw_bytes=self.max_raw_bytes,
                batch_id=batch_id,
                folded_at=folded_at,
            )
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
        self._record_version(self.quarantine_path, q)
        self._note_committed(dead, pending, consumer)
        self._crash_point("between_tables")
        with self._crash_on_new_file(self.stream_path):
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
        self._record_version(self.stream_path, s)
        self._note_committed(scored, pending, consumer)
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

    def _record_version(self, path: Path, merge: MergeResult) -> None:
        if merge.version is not None:
            name = "silver/" + path.name
            versions = self.result.versions_written.setdefault(name, [])
            if merge.version not in versions:
                versions.append(merge.version)

    def _crash_point(self, point: str) -> None:
        crash_point(self.settings.fold, point, self.result.batches)

    def _crash_on_new_file(self, root: Path) -> FileWatch:
        fold = self.settings.fold
        return FileWatch(root, armed=fold.crash_at == "during_write" and self.result.batches == fold.crash_batch)
