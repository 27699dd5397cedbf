"""The metrics sampler: parsing real Prometheus text, per-interval rates and quantiles."""

from __future__ import annotations

import math
import socket
import time

import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest, start_http_server

from demo.observe import MetricsSampler, Sample, histogram_quantile, intervals, parse_metrics, totals
from stream.metrics import WorkerMetrics


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _busy_worker_metrics() -> WorkerMetrics:
    m = WorkerMetrics()  # the worker's own registry: names stay in step with stream/metrics.py
    m.events_in.inc(120)
    m.scored.inc(110)
    m.dlq.labels(step="parse_validate").inc(7)
    m.dlq.labels(step="enrich").inc(3)
    m.lag.labels(partition="0").set(40)
    m.lag.labels(partition="1").set(2)
    m.serving("propensity", "1")
    m.serving("propensity", "2")  # the swap: only v2 remains at 1
    for seconds in [0.004] * 50 + [0.03] * 40 + [0.3] * 9 + [40.0]:
        m.latency.observe(seconds)
    return m


def test_parse_metrics_reads_the_workers_real_exposition():
    text = generate_latest(_busy_worker_metrics().registry).decode()
    s = parse_metrics(text, at=1000.0)
    assert s.up and s.at == 1000.0
    assert (s.events_in, s.scored) == (120, 110)
    assert s.dlq_by_step == {"parse_validate": 7, "enrich": 3} and s.dlq == 10
    assert s.lag == 42
    assert (s.model_name, s.serving_version) == ("propensity", "2")
    assert s.latency_count == 100 and s.latency_sum == pytest.approx(0.2 + 1.2 + 2.7 + 40)
    assert s.latency_buckets[0] == (0.005, 50) and s.latency_buckets[-1] == (math.inf, 100)
    assert s.started_at is not None


def test_parse_metrics_sums_extra_dlq_labels_into_their_step_and_tolerates_missing_metrics():
    r = CollectorRegistry()
    dlq = Counter("shopflow_stream_dlq", "Events sent to the DLQ", ["step", "reason"], registry=r)
    dlq.labels(step="parse_validate", reason="bad ts").inc(2)
    dlq.labels(step="parse_validate", reason="no user").inc(5)
    s = parse_metrics(generate_latest(r).decode(), at=1.0)
    assert s.dlq_by_step == {"parse_validate": 7}
    # A worker that has not assigned partitions nor loaded a model yet: unknown, not zero.
    assert s.lag is None and s.serving_version is None and s.latency_buckets == ()


def _sample(
    at: float,
    events: float,
    scored: float,
    buckets: list[tuple[float, float]],
    dlq: float = 0,
    started_at: float = 1.0,
    version: str = "1",
) -> Sample:
    return Sample(
        at=at,
        events_in=events,
        scored=scored,
        dlq_by_step={"parse_validate": dlq},
        lag=5,
        serving_version=version,
        latency_buckets=tuple(buckets),
        latency_count=buckets[-1][1],
        started_at=started_at,
    )


INF = math.inf


def test_histogram_quantile_interpolates_like_prometheus():
    buckets = [(0.1, 50), (0.2, 100), (INF, 100)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1)
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.1 + 0.1 * 49 / 50)
    # A rank in the +Inf bucket answers the largest finite bound.
    assert histogram_quantile(0.99, [(0.1, 10), (0.2, 10), (INF, 100)]) == pytest.approx(0.2)
    assert histogram_quantile(0.5, [(0.1, 0), (INF, 0)]) is None
    assert histogram_quantile(0.5, []) is None


def test_intervals_compute_rates_and_quantiles_from_bucket_deltas():
    samples = [
        _sample(10.0, 100, 90, [(0.1, 90), (0.2, 90), (INF, 90)]),
        # 2 s later: 200 more read, 180 more scored, all slow (0.1-0.2 s), 4 dead-lettered
        _sample(12.0, 300, 270, [(0.1, 90), (0.2, 270), (INF, 270)], dlq=4),
    ]
    [row] = intervals(samples)
    assert (row.start, row.end) == (10.0, 12.0)
    assert row.events_in_per_s == 100 and row.scored_per_s == 90 and row.dlq_per_s == 2
    # Only this interval's observations count: the 90 fast ones before are subtracted.
    assert row.p50 == pytest.approx(0.15) and row.p99 == pytest.approx(0.199)
    assert row.lag == 5 and row.serving_version == "1"


def test_intervals_skip_gaps_and_treat_a_restart_as_a_counter_reset():
    b = [(0.1, 10), (INF, 10)]
    samples = [
        _sample(0.0, 1000, 1000, [(0.1, 1000), (INF, 1000)]),
        Sample(at=1.0, up=False),  # the worker was down
        _sample(2.0, 10, 10, b, started_at=2.0),  # restarted: counters from zero
        _sample(3.0, 40, 40, [(0.1, 40), (INF, 40)], started_at=2.0),
        _sample(4.0, 50, 50, [(0.1, 50), (INF, 50)], started_at=5.0),  # restarted again, unseen
    ]
    rows = intervals(samples)
    assert [(r.start, r.end) for r in rows] == [(2.0, 3.0), (3.0, 4.0)]
    assert rows[0].scored_per_s == 30
    # A new process whose counters already passed the old ones: still a reset.
    assert rows[1].scored_per_s == 50 and rows[1].p50 == pytest.approx(0.05)
    assert intervals([]) == [] and intervals(samples[:1]) == []


def test_sample_dict_round_trip_keeps_the_inf_bucket():
    s = _sample(1.0, 1, 1, [(0.1, 1), (INF, 1)])
    d = s.to_dict()
    assert d["latency_buckets"][-1] == ["+Inf", 1]
    assert Sample.from_dict(d) == s
    assert Sample.from_dict({**d, "a_field_from_a_newer_version": 1}) == s


def test_sampler_records_gaps_until_the_worker_answers_then_scrapes_it():
    port = _free_port()
    sampler = MetricsSampler("127.0.0.1", port, interval=0.05, timeout=0.5)
    gap = sampler.scrape()
    assert not gap.up  # nothing listens yet: a gap, no exception
    sampler.start()
    time.sleep(0.2)
    metrics = _busy_worker_metrics()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=metrics.registry)
    try:
        deadline = time.time() + 10
        while not any(s.up for s in sampler.samples) and time.time() < deadline:
            time.sleep(0.05)
        metrics.scored.inc(5)
        time.sleep(0.2)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    samples = sampler.stop()
    assert not samples[0].up and samples[-1].up is False  # down before, down after
    up = [s for s in samples if s.up]
    assert up and up[0].events_in == 120 and up[-1].scored == 115
    assert [s.at for s in samples] == sorted(s.at for s in samples)
    with pytest.raises(RuntimeError):
        sampler.start().start()
    sampler.stop()


def test_totals_count_across_gaps_and_restarts():
    b = [(0.1, 1), (INF, 1)]
    samples = [
        _sample(0.0, 100, 90, b, dlq=1),
        _sample(1.0, 300, 280, b, dlq=2),
        Sample(at=2.0, up=False),
        _sample(3.0, 500, 470, b, dlq=4),  # same process: the gap's events still count
        _sample(4.0, 50, 40, b, dlq=0, started_at=9.0),  # restarted
    ]
    assert totals(samples) == {"events_in": 550, "scored": 510, "dlq": 4}
    assert totals([Sample(at=0.0, up=False)]) == {"events_in": 0, "scored": 0, "dlq": 0}
