"""The worker's Prometheus metrics, in one registry per app so tests can build several.

metrics = WorkerMetrics()
metrics.serve(host, port)        # GET http://host:port/metrics
metrics.events_in.inc()
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

# Produce->scored latency buckets: the target is p99 <= 250 ms at the real event rate.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.35, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.events_in = Counter("shopflow_stream_events_in", "Click events read", registry=r)
        self.scored = Counter("shopflow_stream_scored", "Events scored and produced", registry=r)
        self.dlq = Counter("shopflow_stream_dlq", "Events sent to the DLQ", ["step"], registry=r)
        self.dlq_reasons = Counter(
            "shopflow_stream_dlq_reasons", "Events sent to the DLQ by reason code", ["reason_code"], registry=r
        )
        self.replayed = Counter(
            "shopflow_stream_replayed",
            "Events seen again after a restart (features reused)",
            registry=r,
        )
        self.batch_size = Histogram(
            "shopflow_stream_batch_size",
            "Events per scored micro-batch",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.latency = Histogram(
            "shopflow_stream_produce_to_scored_seconds",
            "Kafka record timestamp of the click -> score produced",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.step_seconds = Histogram(
            "shopflow_stream_step_seconds", "Time spent per step per batch", ["step"], registry=r
        )
        self.lag = Gauge("shopflow_stream_consumer_lag", "High watermark - next offset", ["partition"], registry=r)
        self.last_commit = Gauge(
            "shopflow_stream_last_commit_timestamp_seconds",
            "When offsets were last committed",
            registry=r,
        )
        self.commit_age = Gauge(
            "shopflow_stream_last_commit_age_seconds", "Seconds since offsets were last committed", registry=r
        )
        self.model_info = Gauge(
            "shopflow_stream_serving_model", "1 for the model serving now", ["model_name", "version"], registry=r
        )
        self.model_events = Counter("shopflow_stream_model_reloads", "Model reload outcomes", ["outcome"], registry=r)
        self.model_mismatch = Gauge(
            "shopflow_stream_model_mismatch_seconds",
            "Seconds the serving model version has differed from the registry's champion "
            "(0 when they agree; grows while a refused champion is not served)",
            registry=r,
        )
        self.torch_threads = Gauge(
            "shopflow_stream_torch_threads", "Torch intra-op threads of this process", registry=r
        )
        self.broker_data_lost = Counter(
            "shopflow_stream_broker_data_lost",
            "Times the broker was found to have lost records or committed offsets "
            "(positions past the end of a log), by where: input or changelog",
            ["where"],
            registry=r,
        )
        self.session_entries = Gauge(
            "shopflow_stream_session_entries", "Live entries in the worker's session table", registry=r
        )
        self.sessions_expired = Counter(
            "shopflow_stream_sessions_expired",
            "Session entries removed because their user was idle past the retention (tombstones written)",
            registry=r,
        )
        self.restored_entries = Counter(
            "shopflow_stream_sessions_restored",
            "Session entries restored from the changelog, by outcome: live, or skipped (already expired)",
            ["outcome"],
            registry=r,
        )
        self.restore_records = Counter(
            "shopflow_stream_session_restore_records",
            "Changelog records read to restore the session table (entries and tombstones)",
            registry=r,
        )
        self.restore_seconds = Gauge(
            "shopflow_stream_session_restore_seconds",
            "How long the last restore of the session table from its changelog took",
            registry=r,
        )
        self._committed_at: float | None = None

    def serve(self, host: str, port: int) -> None:
        start_http_server(port, addr=host, registry=self.registry)

    def committed(self) -> None:
        self._committed_at = time.time()
        self.last_commit.set(self._committed_at)

    def update_commit_age(self) -> None:
        if self._committed_at is not None:
            self.commit_age.set(time.time() - self._committed_at)

    def serving(self, model_name: str, version: str) -> None:
        self.model_info.clear()
        self.model_info.labels(model_name=model_name, version=version).set(1)


def observe_many(histogram: Histogram, amounts: Sequence[float]) -> None:
    """`histogram.observe(amount)` for every amount, with one increment per bucket.

    A batch has a latency per event, and prometheus_client's observe costs a Python
    loop over the buckets and a lock per call. This reads the histogram's bucket bounds
    and values (prometheus_client is pinned; tests/unit/test_stream_metrics.py checks
    the result equals observing one by one).
    """
    if not len(amounts):
        return
    histogram._raise_if_not_observable()
    bounds = histogram._upper_bounds  # ascending, the last one +Inf
    # observe() counts an amount in the first bucket whose bound is >= it.
    counts = np.bincount(np.searchsorted(bounds, amounts, side="left"), minlength=len(bounds))
    for bucket, count in zip(histogram._buckets, counts.tolist()):
        if count:
            bucket.inc(count)
    histogram._sum.inc(float(np.sum(amounts)))
