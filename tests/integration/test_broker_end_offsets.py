"""End offsets the worker's table recovery relies on, against the real broker.

Each partition ends with a producer batch of a different size: the end offsets the
worker's consumer confirms must be the real ones whatever ListOffsets answers.
"""

from __future__ import annotations

import asyncio

import pytest

from stream.broker import ensure_topics
from stream.topics import TopicSpec
from stream.transport import confirmed_end_offsets
from tests.integration import kit

pytestmark = pytest.mark.integration


def test_confirmed_end_offsets_are_the_real_ends(broker_env):
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition
    from kafka import KafkaProducer

    bootstrap = kit.settings_from(broker_env).kafka.bootstrap_servers
    topic = f"end-offsets-{kit.free_port()}"
    ensure_topics(bootstrap, [TopicSpec(topic, 4)])
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    real_ends = {}
    for partition in range(4):
        for _ in range(5):  # single-record batches
            producer.send(topic, partition=partition, value=b"single")
            producer.flush()
        for _ in range(1 + 3 * partition):  # then one batch of 1, 4, 7 or 10 records
            producer.send(topic, partition=partition, value=b"batched")
        producer.flush()
        real_ends[partition] = 5 + 1 + 3 * partition
    producer.close()

    async def ends() -> tuple[dict[int, int], dict[int, int]]:
        tps = [TopicPartition(topic, p) for p in range(4)]
        lister = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await lister.start()
        try:
            listed = await lister.end_offsets(tps)
        finally:
            await lister.stop()
        confirmed = await confirmed_end_offsets(
            AIOKafkaConsumer(bootstrap_servers=bootstrap, fetch_max_wait_ms=25), listed, timeout_s=10
        )
        return ({tp.partition: o for tp, o in listed.items()}, {tp.partition: o for tp, o in confirmed.items()})

    listed, confirmed = asyncio.run(ends())
    assert confirmed == real_ends, (listed, confirmed)
    assert all(listed[p] <= real_ends[p] for p in real_ends)
