"""Watch a running stream worker: scrape its Prometheus endpoint into a time series.

    sampler = MetricsSampler("127.0.0.1", 9108, interval=1.0)
    sampler.start()
    ...                                   # replay events, fold, retrain, promote
    samples = sampler.stop()              # list[Sample], one per scrape, gaps included
    for row in intervals(samples):        # per-interval rates and p50/p99 latency
        print(row.end, row.scored_per_s, row.p99)

A scrape that fails (the worker is not up yet, or is restarting) is recorded as a
sample with `up=False`: the charts show a gap there, and nothing crashes. Counters
that go down (a restarted worker starts from zero) are treated as resets, the way
Prometheus' `rate()` treats them.
"""

from __future__ import annotations

import dataclasses
import http.client
import logging
import math
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

log = logging.getLogger(__name__)

# The metric names stream/metrics.py exposes (counters carry the `_total` suffix in text).
EVENTS_IN = "shopflow_stream_events_in_total"
EVENTS_IN_CREATED = "shopflow_stream_events_in_created"
SCORED = "shopflow_stream_scored_total"
DLQ = "shopflow_stream_dlq_total"
LAG = "shopflow_stream_consumer_lag"
SERVING = "shopflow_stream_serving_model"
LATENCY = "shopflow_stream_produce_to_scored_seconds"
RELOADS = "shopflow_stream_model_reloads_total"


@dataclass(frozen=True)
class Sample:
    """One scrape. `up=False` marks a failed scrape (a gap); its other fields are empty."""

    at: float  # unix seconds
    up: bool = True
    events_in: float = 0.0
    scored: float = 0.0
    dlq_by_step: dict[str, float] = field(default_factory=dict)
    lag: float | None = None  # summed over partitions; None when no partition is assigned
    model_name: str | None = None
    serving_version: str | None = None
    # Cumulative histogram buckets as (upper bound, count), ascending, +Inf last.
    latency_buckets: tuple[tuple[float, float], ...] = ()
    latency_count: float = 0.0
    latency_sum: float = 0.0
    started_at: float | None = None  # the worker's metrics creation time: changes on restart
    models_loaded: float = 0.0  # models the worker loaded and verified (the first one included)

    @property
    def dlq(self) -> float:
        return sum(self.dlq_by_step.values())

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        # JSON has no infinity: the +Inf bound is written as the string "+Inf".
        out["latency_buckets"] = [["+Inf" if math.isinf(le) else le, n] for le, n in self.latency_buckets]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Sample:
        known = {f.name for f in dataclasses.fields(cls)}
        data = {k: v for k, v in data.items() if k in known}  # a newer field is ignored
        data["latency_buckets"] = tuple((float(le), float(n)) for le, n in data.get("latency_buckets", ()))
        data["dlq_by_step"] = {str(k): float(v) for k, v in data.get("dlq_by_step", {}).items()}
        return cls(**data)


def parse_metrics(text: str, at: float) -> Sample:
    """One scrape's Prometheus text -> a Sample (raises ValueError on malformed text)."""
    events_in = scored = latency_count = latency_sum = loaded = 0.0
    started_at: float | None = None
    dlq: dict[str, float] = {}
    lag: float | None = None
    model_name = version = None
    buckets: list[tuple[float, float]] = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == EVENTS_IN:
                events_in = s.value
            elif s.name == EVENTS_IN_CREATED:
                started_at = s.value
            elif s.name == SCORED:
                scored = s.value
            elif s.name == DLQ:
                # More labels (a reason) may be added later: sum them into their step.
                step = s.labels.get("step", "unknown")
                dlq[step] = dlq.get(step, 0.0) + s.value
            elif s.name == LAG:
                lag = (lag or 0.0) + s.value
            elif s.name == SERVING and s.value == 1:
                model_name, version = s.labels.get("model_name"), s.labels.get("version")
            elif s.name == LATENCY + "_bucket":
                buckets.append((float(s.labels["le"]), s.value))
            elif s.name == LATENCY + "_count":
                latency_count = s.value
            elif s.name == LATENCY + "_sum":
                latency_sum = s.value
            elif s.name == RELOADS and s.labels.get("outcome") == "loaded":
                loaded = s.value
    return Sample(
        at=at,
        events_in=events_in,
        scored=scored,
        dlq_by_step=dlq,
        lag=lag,
        model_name=model_name,
        serving_version=version,
        latency_buckets=tuple(sorted(buckets)),
        latency_count=latency_count,
        latency_sum=latency_sum,
        started_at=started_at,
        models_loaded=loaded,
    )


# ---------------------------------------------------------------------------- intervals


@dataclass(frozen=True)
class Interval:
    """What happened between two consecutive successful scrapes."""

    start: float
    end: float
    events_in_per_s: float
    scored_per_s: float
    dlq_per_s: float
    lag: float | None  # at the end of the interval
    serving_version: str | None  # at the end of the interval
    p50: float | None  # seconds; None when nothing was scored in the interval
    p99: float | None


def _increase(prev: float, cur: float, reset: bool) -> float:
    # A counter below its previous value (or a new process) restarted from zero.
    return cur if reset or cur < prev else cur - prev


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """The q-quantile of cumulative (upper bound, count) buckets, as Prometheus computes it.

    Linear interpolation inside the bucket holding the rank; a rank in the +Inf bucket
    returns the largest finite bound. None when the buckets hold no observations.
    """
    rows = sorted(buckets)
    if not rows or rows[-1][1] <= 0:
        return None
    rank = q * rows[-1][1]
    prev_le, prev_n = 0.0, 0.0
    for le, n in rows:
        if n >= rank and n > prev_n:
            if math.isinf(le):
                return prev_le
            return prev_le + (le - prev_le) * (rank - prev_n) / (n - prev_n)
        prev_le, prev_n = (le if not math.isinf(le) else prev_le), n
    return prev_le


def intervals(samples: list[Sample]) -> list[Interval]:
    """Per-interval rates and p50/p99 latency from consecutive successful scrapes.

    A pair with a failed scrape on either side yields no interval (a gap in the charts).
    """
    out: list[Interval] = []
    for prev, cur in zip(samples, samples[1:]):
        if not (prev.up and cur.up) or cur.at <= prev.at:
            continue
        reset = prev.started_at is not None and cur.started_at is not None and cur.started_at != prev.started_at
        seconds = cur.at - prev.at
        dlq = sum(_increase(prev.dlq_by_step.get(step, 0.0), n, reset) for step, n in cur.dlq_by_step.items())
        latency_reset = reset or cur.latency_count < prev.latency_count
        before = dict(prev.latency_buckets)
        delta = [(le, n if latency_reset else max(0.0, n - before.get(le, 0.0))) for le, n in cur.latency_buckets]
        out.append(
            Interval(
                start=prev.at,
                end=cur.at,
                events_in_per_s=_increase(prev.events_in, cur.events_in, reset) / seconds,
                scored_per_s=_increase(prev.scored, cur.scored, reset) / seconds,
                dlq_per_s=dlq / seconds,
                lag=cur.lag,
                serving_version=cur.serving_version,
                p50=histogram_quantile(0.5, delta),
                p99=histogram_quantile(0.99, delta),
            )
        )
    return out


def totals(samples: list[Sample]) -> dict[str, float]:
    """Events read, scored and dead-lettered over the whole series, counting across gaps
    and restarts (a restarted worker's counters start again from zero)."""
    up = [s for s in samples if s.up]
    if not up:
        return {"events_in": 0.0, "scored": 0.0, "dlq": 0.0}
    out = {"events_in": up[0].events_in, "scored": up[0].scored, "dlq": up[0].dlq}
    for prev, cur in zip(up, up[1:]):
        reset = prev.started_at is not None and cur.started_at is not None and cur.started_at != prev.started_at
        out["events_in"] += _increase(prev.events_in, cur.events_in, reset)
        out["scored"] += _increase(prev.scored, cur.scored, reset)
        out["dlq"] += sum(_increase(prev.dlq_by_step.get(step, 0.0), n, reset) for step, n in cur.dlq_by_step.items())
    return out


# ---------------------------------------------------------------------------- sampler


def scrape_once(host: str, port: int, timeout: float = 2.0) -> Sample:
    """One scrape of a worker's metrics now; a worker that does not answer is a gap sample."""
    return MetricsSampler(host, port, timeout=timeout).scrape()


class MetricsSampler:
    """Scrapes http://host:port/metrics every `interval` seconds in a daemon thread."""

    def __init__(self, host: str, port: int, *, interval: float = 1.0, timeout: float = 2.0) -> None:
        self.url = f"http://{host}:{port}/metrics"
        self.interval = interval
        self.timeout = timeout
        self._samples: list[Sample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._was_up: bool | None = None

    def scrape(self) -> Sample:
        """One scrape now; a failure is returned as a gap sample, never raised."""
        at = time.time()
        try:
            with urllib.request.urlopen(self.url, timeout=self.timeout) as response:
                text = response.read().decode("utf-8", errors="replace")
            sample = parse_metrics(text, at)
        # A worker going down mid-response can fail at any layer: all of it is a gap.
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            if self._was_up is not False:
                log.info("metrics at %s not reachable (%s): recording a gap until it answers", self.url, exc)
            self._was_up = False
            return Sample(at=at, up=False)
        if self._was_up is False:
            log.info("metrics at %s answer again", self.url)
        self._was_up = True
        return sample

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            sample = self.scrape()
            with self._lock:
                self._samples.append(sample)
            # Keep a steady cadence: a slow scrape shortens the wait, not the series.
            next_at += self.interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def start(self) -> MetricsSampler:
        if self._thread is not None:
            raise RuntimeError("sampler already started")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="metrics-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> list[Sample]:
        """Stop scraping (after one last scrape) and return every sample taken."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=self.timeout + self.interval + 1.0)
            self._thread = None
            last = self.scrape()
            with self._lock:
                self._samples.append(last)
        return self.samples

    @property
    def samples(self) -> list[Sample]:
        with self._lock:
            return list(self._samples)
