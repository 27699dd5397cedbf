"""The session table restored from its changelog in bulk, live entries only.

Faust (0.15) restores a table one record at a time: each changelog record becomes an
event on a queue that its recovery service takes one by one (a wait with a timeout, a
sensor call and a "done yet?" check over every partition per record), about 5,000
entries a second here. The worker restores its session table itself instead, before
Faust's recovery looks at the partitions (`stream.broker_loss.ShopflowRecovery` calls
`SessionRestorer.restore` with the offsets Faust would read): one consumer without a
group fetches the partitions' records in large batches; they are applied in offset order,
a tombstone (a null value) removing the entry written before it, and only each live
user's last entry is decoded (orjson), straight into the table's store. Faust then finds
nothing left to read.

With the broker compacting the changelog (its configs are in `stream.topics`), the
records read are about the live entries. The embedded broker (Tansu) does not compact:
every record stays, so the restore reads them all, but it keeps only live entries: a
tombstone removes its entry, and an entry that already expired (its user idle past the
retention by the watermark of the restored entries, `stream.expiry`) is left out, its
tombstone written with the worker's next batch.

    restorer = SessionRestorer(table, expiry, metrics)
    app.changelog_restorers[table.changelog_topic_name] = restorer.restore
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

import orjson
from aiokafka.structs import TopicPartition

from stream.expiry import SessionExpiry
from stream.metrics import WorkerMetrics
from stream.sessions import last_event_ms

log = logging.getLogger(__name__)

# Records handed over per fetch of a partition: the consumer's default (1 MiB) holds
# about 2,000 entries; the embedded broker answers each fetch only after its full wait.
MAX_PARTITION_FETCH_BYTES = 16 * 1024 * 1024
FETCH_MAX_BYTES = 64 * 1024 * 1024
# A restore that receives nothing for this long while records remain gives up (the
# recovery then retries it, see stream.broker_loss).
STALL_SECONDS = 30.0


def apply_records(table: MutableMapping[str, Any], records: Any, pending: MutableMapping[str, bytes]) -> None:
    """Changelog records (with .key and .value bytes), in offset order: a tombstone removes
    the user's entry from `table` and from `pending`; an entry's bytes wait in `pending`
    (a later record of the same user replaces them undecoded: on a log that is not
    compacted most records are)."""
    loads = orjson.loads
    for record in records:
        user = loads(record.key)
        if record.value is None:
            table.pop(user, None)
            pending.pop(user, None)
        else:
            pending[user] = record.value


def decode_pending(table: MutableMapping[str, Any], pending: Mapping[str, bytes]) -> dict[str, int | None]:
    """The entries left in `pending` into `table`; returns {user: last event time}."""
    loads = orjson.loads
    last_times = {}
    for user, value in pending.items():
        entry = table[user] = loads(value)
        last_times[user] = last_event_ms(entry)
    return last_times


class SessionRestorer:
    """Restores the session table's partitions (see the module's doc)."""

    def __init__(self, table: Any, expiry: SessionExpiry | None, metrics: WorkerMetrics) -> None:
        self._table = table
        self._expiry = expiry
        self._metrics = metrics

    def _store(self) -> MutableMapping[str, Any]:
        store = self._table.data  # Faust's store; its plain dict where it has one
        inner = getattr(store, "data", None)
        return inner if isinstance(inner, dict) else store

    async def restore(self, new_consumer: Callable[[], Any], ranges: Mapping[Any, tuple[int, int]]) -> dict[Any, int]:
        """Read each partition's changelog from `first` to `last` offset (inclusive) into
        the table: {tp: (first, last)}, any topic-partition type. Returns {tp: the last
        offset applied} for the partitions read to their end."""
        wanted = {TopicPartition(tp.topic, tp.partition): (tp, first, last) for tp, (first, last) in ranges.items()}
        todo = {atp: spec for atp, spec in wanted.items() if spec[2] >= spec[1]}
        done: dict[Any, int] = {}
        if not todo:
            return done
        started = time.monotonic()
        store = self._store()
        consumer = new_consumer()
        consumer._max_partition_fetch_bytes = MAX_PARTITION_FETCH_BYTES
        consumer._fetch_max_bytes = FETCH_MAX_BYTES
        pending: dict[int, dict[str, bytes]] = {atp.partition: {} for atp in todo}
        read = 0
        await consumer.start()
        try:
            consumer.assign(list(todo))
            for atp, (_, first, _) in todo.items():
                consumer.seek(atp, first)
            remaining = dict(todo)
            progress_at = time.monotonic()
            while remaining:
                batches = await consumer.getmany(*remaining, timeout_ms=500, max_records=100_000)
                for atp, records in batches.items():
                    last = remaining[atp][2] if atp in remaining else -1
                    records = [r for r in records if r.offset <= last]
                    apply_records(store, records, pending[atp.partition])
                    read += len(records)
                if batches:
                    progress_at = time.monotonic()
                for atp, (tp, _, last) in list(remaining.items()):
                    if await consumer.position(atp) > last:
                        done[tp] = last
                        del remaining[atp]
                if remaining and time.monotonic() - progress_at > STALL_SECONDS:
                    raise TimeoutError(f"the session changelog gave no records for {STALL_SECONDS:.0f} s")
        finally:
            await consumer.stop()
        live = skipped = 0
        for partition, raw in pending.items():
            times = decode_pending(store, raw)
            raw.clear()
            if self._expiry is not None:
                known = {user: ts for user, ts in times.items() if ts is not None}
                for user in self._expiry.restored(partition, known):
                    store.pop(user, None)
                    skipped += 1
            live += len(times)
        live -= skipped
        self._metrics.restored_entries.labels(outcome="live").inc(live)
        self._metrics.restored_entries.labels(outcome="skipped").inc(skipped)
        self._metrics.session_entries.set(len(store))
        seconds = time.monotonic() - started
        self._metrics.restore_seconds.set(seconds)
        self._metrics.restore_records.inc(read)
        log.info(
            "session table restored: %d changelog records read, %d live entries, %d expired ones left out, "
            "in %.2f s (%.0f records/s)",
            read,
            live,
            skipped,
            seconds,
            read / max(seconds, 1e-9),
        )
        return done
