"""A stand-in for aiokafka's record batch, for unit tests of what the outbox hands a
producer (pure grouping and routing; the real producer and broker are in the
integration tests): it keeps the (key, value) pairs appended to it."""

from __future__ import annotations


class RecordBatch:
    def __init__(self) -> None:
        self.records: list[tuple] = []

    def append(self, key, value, timestamp):
        self.records.append((key, value))
        return True

    def record_count(self) -> int:
        return len(self.records)
