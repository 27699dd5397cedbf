"""A batch's latencies observed at once give the histogram observing them one by one gives."""

from __future__ import annotations

import random

import pytest
from prometheus_client import CollectorRegistry, Histogram

from stream.metrics import observe_many


def _samples(registry: CollectorRegistry) -> dict:
    return {
        (s.name, s.labels.get("le")): s.value
        for m in registry.collect()
        for s in m.samples
        if not s.name.endswith("_created")
    }


def test_observing_many_equals_observing_one_by_one():
    rng = random.Random(5)
    buckets = (0.005, 0.01, 0.025, 0.05, 0.1, 1.0, 30.0)
    amounts = [rng.choice([0.0, 0.005, 0.01, 0.0100001, 29.9, 30.0, 31.0, 1e6]) for _ in range(40)]
    amounts += [rng.random() * 2 for _ in range(200)]
    one, many = CollectorRegistry(), CollectorRegistry()
    by_one = Histogram("latency", "l", buckets=buckets, registry=one)
    by_many = Histogram("latency", "l", buckets=buckets, registry=many)
    for amount in amounts:
        by_one.observe(amount)
    observe_many(by_many, amounts[:100])
    observe_many(by_many, [])
    observe_many(by_many, amounts[100:])
    expected, got = _samples(one), _samples(many)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-12), key
