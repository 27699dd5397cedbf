"""Sends a micro-batch's records with one produce request per topic partition.

A `send` per record costs the worker more than the scoring itself (a future, a buffer
entry, a partitioner call per record); one record batch per partition carries the same
records, in the same order per partition, with the same keys. The caller awaits the
returned acknowledgements before the input offsets are committed (at least once).

Keyed records go to the partition Kafka's default partitioner (murmur2 of the key) picks,
as a plain `send` would; its answer is remembered per key.

    outbox = Outbox(lambda: producer)                   # an aiokafka.AIOKafkaProducer
    acks = await outbox.send("clicks.scored", [(None, b"user", b"{...}")])
    await asyncio.gather(*acks)
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Iterable

from aiokafka.partitioner import DefaultPartitioner

# Remembered key -> partition answers, per topic (a user's key recurs in every batch).
PARTITION_CACHE_SIZE = 200_000

OutRecord = tuple["int | None", "bytes | None", bytes]  # (partition or None: by key, key, value)


class Outbox:
    def __init__(self, producer_of: Callable[[], Any]) -> None:
        self._producer_of = producer_of
        self._partitioner = DefaultPartitioner()
        self._partition_counts: dict[str, int] = {}
        self._by_key: dict[str, dict[bytes, int]] = {}

    async def _partitions(self, producer: Any, topic: str) -> int:
        count = self._partition_counts.get(topic)
        if count is None:
            count = self._partition_counts[topic] = len(await producer.partitions_for(topic))
            self._by_key[topic] = {}
        return count

    def forget_partitions(self) -> None:
        """Ask the broker again for partition counts (a topic was recreated or grew)."""
        self._partition_counts.clear()
        self._by_key.clear()

    async def send(self, topic: str, records: Iterable[OutRecord]) -> list[asyncio.Future]:
        """Queue `records`; returns one future per produce request, done when acknowledged."""
        producer = self._producer_of()
        groups: dict[int, list[tuple[bytes | None, bytes]]] = {}
        count: int | None = None
        for partition, key, value in records:
            if partition is None:
                if key is None:
                    raise ValueError(f"a record for {topic} has neither a partition nor a key")
                if count is None:
                    count = await self._partitions(producer, topic)
                    by_key = self._by_key[topic]
                    all_partitions = list(range(count))
                partition = by_key.get(key)
                if partition is None:
                    if len(by_key) >= PARTITION_CACHE_SIZE:
                        by_key.clear()
                    partition = by_key[key] = self._partitioner(key, all_partitions, all_partitions)
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
