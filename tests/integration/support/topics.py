"""Kafka topics of the embedded broker: produce raw values, read a topic back, watch topics."""

from __future__ import annotations

import json
import time
from typing import Any

from shared.settings import Settings
from tests.integration.support.env import wait_for


def read_topic(settings: Settings, topic: str, *, expect: int, timeout: float) -> list[tuple[bytes | None, bytes]]:
    """Every (key, value) on `topic` from the beginning, waiting until `expect` arrived."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        enable_auto_commit=False,
        group_id=None,
        auto_offset_reset="earliest",
    )
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        out: list[tuple[bytes | None, bytes]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batch = [(r.key, r.value) for records in consumer.poll(timeout_ms=500).values() for r in records]
            out.extend(batch)
            # Past `expect`, keep reading until the topic is drained: duplicates count too.
            if len(out) >= expect and not batch:
                break
        return out
    finally:
        consumer.close()


def json_values(pairs: list[tuple[bytes | None, bytes]]) -> list[dict[str, Any]]:
    return [json.loads(v) for _, v in pairs]


def send_raw(settings: Settings, values: list[tuple[bytes | None, bytes]], max_request_size: int = 1_048_576) -> None:
    """Produce raw (key, value) pairs to the clicks topic and wait for the acks."""
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap_servers, acks="all", linger_ms=5, max_request_size=max_request_size
    )
    try:
        for key, value in values:
            producer.send(settings.kafka.clicks_topic, key=key, value=value)
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=5)


class TopicWatcher:
    """Reads topics from the beginning and keeps every value seen, for waiting on output."""

    def __init__(self, settings: Settings, topics: list[str]) -> None:
        from kafka import KafkaConsumer, TopicPartition

        self._consumer = KafkaConsumer(
            bootstrap_servers=settings.kafka.bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        tps = [TopicPartition(t, p) for t in topics for p in sorted(self._consumer.partitions_for_topic(t) or [])]
        self._consumer.assign(tps)
        self._consumer.seek_to_beginning(*tps)
        self.values: dict[str, list[bytes]] = {t: [] for t in topics}

    def poll(self) -> None:
        for tp, records in self._consumer.poll(timeout_ms=200).items():
            self.values[tp.topic].extend(r.value for r in records)

    def wait(self, check, timeout: float, what: str) -> None:
        def step():
            self.poll()
            return check(self)

        wait_for(step, timeout, interval=0.0, what=what)

    def close(self) -> None:
        self._consumer.close()


def wait_all_scored(settings: Settings, events: list[dict[str, Any]], timeout: float) -> list[dict[str, Any]]:
    """Every scored value once each of `events` is on the scored topic (duplicates too)."""
    wanted = {e["event_id"] for e in events}

    def all_scored():
        values = json_values(read_topic(settings, settings.kafka.scored_topic, expect=len(events), timeout=2))
        return values if wanted <= {v["event_id"] for v in values} else None

    return wait_for(all_scored, timeout, interval=1.0, what=f"all {len(wanted)} events scored")
