"""Batch partitioning of keyed records equals Kafka's default partitioner (aiokafka's
murmur2, the Java client's algorithm) key by key."""

from __future__ import annotations

import random

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as kafka_murmur2

from stream.partitioning import default_partitions, murmur2
from tests.record_batches import RecordBatch


def test_murmur2_equals_kafkas_on_every_length_and_tail():
    rng = random.Random(7)
    keys = [bytes(rng.randrange(256) for _ in range(n)) for n in range(0, 70) for _ in range(5)]
    keys += [b"", b"a", b"\xff\xff\xff", "用户".encode(), b"0123456789abcdef0123456789abcdef"]
    rng.shuffle(keys)
    assert murmur2(keys).tolist() == [kafka_murmur2(k) for k in keys]


def test_partitions_equal_the_default_partitioners():
    rng = random.Random(11)
    keys = [f"{rng.getrandbits(128):032x}".encode() for _ in range(500)] + [b"u1", b"u2", b""]
    for count in (1, 4, 7, 12):
        partitions = list(range(count))
        assert default_partitions(keys, count) == [DefaultPartitioner()(k, partitions, partitions) for k in keys]
    assert default_partitions([], 4) == []


class _Producer:
    """Records what the outbox hands over per partition (the grouping is what is tested)."""

    def __init__(self, partitions: int) -> None:
        self.partitions, self.sent = partitions, []

    async def partitions_for(self, topic):
        return set(range(self.partitions))

    def create_batch(self):
        return RecordBatch()

    async def send_batch(self, batch, topic, partition):
        self.sent.append((topic, partition, batch.records))
        return None


def test_the_outbox_sends_each_record_to_the_default_partition_in_order(monkeypatch):
    import asyncio

    from stream import outbox as outbox_module
    from stream.outbox import Outbox

    monkeypatch.setattr(outbox_module, "PARTITION_CACHE_SIZE", 40)  # clears the memory between batches
    producer = _Producer(5)
    outbox = Outbox(lambda: producer)
    rng = random.Random(3)
    partitions = list(range(5))
    for _ in range(6):
        records = [(None, f"user-{rng.randrange(60)}".encode(), f"v{i}".encode()) for i in range(30)]
        records.append((2, b"explicit", b"to-2"))
        producer.sent.clear()
        asyncio.run(outbox.send("t", records))
        want = [(DefaultPartitioner()(k, partitions, partitions) if p is None else p, k, v) for p, k, v in records]
        # One request per partition, holding that partition's records in the batch's order.
        assert sorted(p for _, p, _ in producer.sent) == sorted({p for p, _, _ in want})
        for _, partition, batch in producer.sent:
            assert batch == [(k, v) for p, k, v in want if p == partition]
