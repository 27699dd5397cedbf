"""Sends a micro-batch's records with one produce request per topic partition.

A `send` per record costs the worker more than the scoring itself (a future, a buffer
entry, a partitioner call per record); one record batch per partition carries the same
records, in the same order per partition, with the same keys. The caller awaits the
returned acknowledgements before the input offsets are committed (at least once). It is
the worker's one way out: scored events, session changelog and dead letters all leave
through it (`stream.pipeline`, `stream.dead_letters`), on the one producer.

Keyed records go to the partition Kafka's default partitioner (murmur2 of the key) picks,
as a plain `send` would: a batch's new keys are hashed together (`stream.partitioning`)
and every answer is remembered per key.

    outbox = Outbox(lambda: producer)                   # an aiokafka.AIOKafkaProducer
    acks = await outbox.send("clicks.scored", [(None, b"user", b"{...}")])
    await asyncio.gather(*acks)
    await outbox.deliver("clicks.dlq", (3, None, b"{...}"))  # one record, acknowledged
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

from stream.partitioning import default_partitions

# Remembered key -> partition answers, per topic (a user's key recurs in every batch);
# sized like the pseudonym cache (stream.steps), ~130 bytes each.
PARTITION_CACHE_SIZE = 100_000

# (partition or None: by key, key, value or None: a tombstone)
OutRecord = tuple["int | None", "bytes | None", "bytes | None"]


class Outbox:
    def __init__(self, producer_of: Callable[[], Any]) -> None:
        self._producer_of = producer_of
        self._partition_counts: dict[str, int] = {}
        self._by_key: dict[str, dict[bytes, int]] = {}

    async def _partitions(self, producer: Any, topic: str) -> int:
        count = self._partition_counts.get(topic)
        if count is None:
            count = self._partition_counts[topic] = len(await producer.partitions_for(topic))
            self._by_key[topic] = {}
        return count

    async def _key_partitions(self, producer: Any, topic: str, records: list[OutRecord]) -> dict[bytes, int]:
        """The remembered key -> partition answers of `topic`, with the records' new keys
        added (hashed together)."""
        count = await self._partitions(producer, topic)
        by_key = self._by_key[topic]
        new: dict[bytes, None] = {}
        for partition, key, _ in records:
            if partition is None:
                if key is None:
                    raise ValueError(f"a record for {topic} has neither a partition nor a key")
                if key not in by_key:
                    new[key] = None
        if new:
            if len(by_key) + len(new) > PARTITION_CACHE_SIZE:
                by_key.clear()  # simpler than LRU; this batch's keys are hashed again
                new = dict.fromkeys(key for partition, key, _ in records if partition is None)
            by_key.update(zip(new, default_partitions(list(new), count)))
        return by_key

    def forget_partitions(self) -> None:
        """Ask the broker again for partition counts (a topic was recreated or grew)."""
        self._partition_counts.clear()
        self._by_key.clear()

    async def send(self, topic: str, records: Iterable[OutRecord]) -> list[asyncio.Future]:
        """Queue `records`; returns one future per produce request, done when acknowledged."""
        producer = self._producer_of()
        records = list(records)
        by_key: dict[bytes, int] = {}
        if any(partition is None for partition, _, _ in records):
            by_key = await self._key_partitions(producer, topic, records)
        groups: dict[int, list[tuple[bytes | None, bytes | None]]] = {}
        for partition, key, value in records:
            if partition is None:
                partition = by_key[key]  # type: ignore[index]
            groups.setdefault(partition, []).append((key, value))
        acks: list[asyncio.Future] = []
        for partition, group in groups.items():
            batch = producer.create_batch()
            for key, value in group:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    if batch.record_count():
                        acks.append(await producer.send_batch(batch, topic, partition=partition))
                        batch = producer.create_batch()
                    if batch.append(key=key, value=value, timestamp=None) is None:
                        # Larger than a whole batch: the producer's own path, which
                        # refuses it with a clear error if the broker would.
                        acks.append(await producer.send(topic, value, key=key, partition=partition))
                        batch = producer.create_batch()
            if batch.record_count():
                acks.append(await producer.send_batch(batch, topic, partition=partition))
        return acks

    async def deliver(self, topic: str, record: OutRecord) -> None:
        """Send one record and return once the broker acknowledged it (for rare records:
        dead letters); raises when the producer or the broker refuses it.

        Through the producer's own `send`: it refuses a record over its request limit at
        once, where a record batch would carry it to the broker unchecked (aiokafka takes
        the first record of a batch whatever its size).
        """
        producer = self._producer_of()
        partition, key, value = record
        if partition is None:
            partition = (await self._key_partitions(producer, topic, [record]))[key]  # type: ignore[index]
        await (await producer.send(topic, value, key=key, partition=partition))
