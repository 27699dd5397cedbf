"""Idle session entries expire: which of the session table's entries no event can use any more.

An entry is removed once its partition's event-time watermark lies more than the retention
past the user's last event. The retention is the session gap plus an allowed lateness:

* an event at or after `watermark - lateness` that finds no entry would have started a
  new session anyway (it comes more than the session gap after the user's last event),
  and a new session's features use nothing from the entry before it, so expiry changes
  no feature of such an event;
* the entry's memory of recent event ids (`stream.sessions`) serves the events read again
  after a crash; those are the uncommitted tail of the input, whose event times lie near
  the watermark, well inside the lateness (a second of stream, minutes of event time
  even when a backlog is read at full speed).

An event later than that may start a new session where the user's expired entry would
have continued one: the allowed lateness is the knob (`stream.session_retention_seconds`).

The watermark is per partition (each partition's events come in their own order) and
robust: a low quantile (`WATERMARK_QUANTILE`) of the event times of the partition's last
`window` changed entries, never moving back, and undefined until `window` were seen. One
event a day ahead (the click rules accept it) is one sample of a thousand: it cannot move
the watermark; nine in ten of the recent events would have to agree. A median or the
k-th largest would also ignore one outlier; the low quantile also ignores a burst of
them, and a watermark that lags costs only a little memory, never a feature. After a
restart the watermark starts from the restored entries' last event times the same way.

Entries are indexed by the minute of their last event, so a sweep touches only the
minutes that fell behind the cutoff (a user moves between minutes as they act).

    expiry = session_expiry(settings)              # SessionExpiry, or None when it is off
    expiry.touch(partition, user, last_ts_ms)     # an entry changed
    for partition, user in expiry.expired(): ...  # remove it, write a tombstone
    skipped = expiry.restored(partition, {user: last_ts_ms, ...})  # after a restore
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping

import numpy as np

from shared.errors import ConfigError
from shared.features import SESSION_GAP_SECONDS
from shared.settings import Settings

WATERMARK_QUANTILE = 0.1
# Entries are indexed by their last event's minute: expiry is at most this late.
BUCKET_MS = 60_000


class Watermark:
    """One partition's event-time watermark (epoch millis): the `quantile` of the last
    `window` times observed, never moving back; None until `window` times were seen."""

    def __init__(self, window: int, quantile: float = WATERMARK_QUANTILE) -> None:
        self._ring = np.zeros(window, dtype=np.int64)
        self._seen = 0
        self._kth = int(quantile * (window - 1))
        self.value: int | None = None

    def observe(self, times: Iterable[int]) -> None:
        values = np.fromiter(times, dtype=np.int64)
        window = len(self._ring)
        if len(values) >= window:
            self._seen += len(values)
            # the oldest kept value goes where the next write starts
            self._ring[:] = np.roll(values[-window:], self._seen % window)
            return
        start = self._seen % window
        first = min(len(values), window - start)
        self._ring[start : start + first] = values[:first]
        self._ring[: len(values) - first] = values[first:]
        self._seen += len(values)

    def advance(self) -> int | None:
        """The watermark after the times observed so far."""
        if self._seen >= len(self._ring):
            self.seed(self._ring)
        return self.value

    def seed(self, times: np.ndarray) -> None:
        """Raise the watermark to the quantile of `times` (at least `window` of them; the
        latest `window` count)."""
        window = len(self._ring)
        if len(times) < window:
            return
        latest = times if len(times) == window else np.partition(times, len(times) - window)[-window:]
        low = int(np.partition(latest, self._kth)[self._kth])
        if self.value is None or low > self.value:
            self.value = low


class _Partition:
    def __init__(self, window: int) -> None:
        self.watermark = Watermark(window)
        self.buckets: dict[int, set[str]] = {}
        self.order: list[int] = []  # the bucket keys, a min-heap
        self.bucket_of: dict[str, int] = {}
        self.times: list[int] = []  # last event times of entries changed since the last sweep

    def index(self, user: str, last_ts_ms: int) -> None:
        bucket = last_ts_ms // BUCKET_MS
        old = self.bucket_of.get(user)
        if old == bucket:
            return
        if old is not None:
            self.buckets[old].discard(user)
        users = self.buckets.get(bucket)
        if users is None:
            users = self.buckets[bucket] = set()
            heapq.heappush(self.order, bucket)
        users.add(user)
        self.bucket_of[user] = bucket

    def sweep(self, cutoff_ms: int) -> list[str]:
        """Users whose last event lies before `cutoff_ms`, taken out of the index (whole
        minutes only: a minute that reaches the cutoff waits for the next sweep)."""
        out: list[str] = []
        order, buckets, bucket_of = self.order, self.buckets, self.bucket_of
        while order and (order[0] + 1) * BUCKET_MS <= cutoff_ms:
            for user in buckets.pop(heapq.heappop(order)):
                del bucket_of[user]
                out.append(user)
        return out


class SessionExpiry:
    """The session table's live entries per partition, and which of them expired (see the
    module's doc). `retention_ms`: at least the session gap."""

    def __init__(self, retention_ms: int, window: int) -> None:
        if retention_ms < SESSION_GAP_SECONDS * 1000:
            raise ConfigError(
                f"stream.session_retention_seconds must be 0 (keep every session) or at least the "
                f"session gap, {SESSION_GAP_SECONDS} s; got {retention_ms / 1000:g}"
            )
        self.retention_ms = retention_ms
        self._window = window
        self._partitions: dict[int, _Partition] = {}
        self._pending: list[tuple[int, str]] = []  # skipped on restore, tombstones not yet written

    def _partition(self, partition: int) -> _Partition:
        found = self._partitions.get(partition)
        if found is None:
            found = self._partitions[partition] = _Partition(self._window)
        return found

    def touch(self, partition: int, user: str, last_ts_ms: int) -> None:
        """The user's entry changed; its last event is at `last_ts_ms`."""
        part = self._partition(partition)
        part.index(user, last_ts_ms)
        part.times.append(last_ts_ms)

    def expired(self) -> list[tuple[int, str]]:
        """(partition, user) of every entry that expired since the last call, taken out of
        the index: the caller removes each from the table and writes its tombstone."""
        out, self._pending = self._pending, []
        for partition, part in self._partitions.items():
            if not part.times:
                continue  # no new event: the watermark did not move
            part.watermark.observe(part.times)
            part.times = []
            watermark = part.watermark.advance()
            if watermark is not None:
                out.extend((partition, user) for user in part.sweep(watermark - self.retention_ms))
        return out

    def restored(self, partition: int, last_times: Mapping[str, int]) -> list[str]:
        """Entries restored from the changelog: {user: last event time}. Seeds the
        partition's watermark from them; returns the users whose entries already expired
        (the caller leaves them out of the table; their tombstones go out with the next
        `expired`), and indexes the others."""
        part = self._partition(partition)
        if last_times:
            part.watermark.seed(np.fromiter(last_times.values(), dtype=np.int64, count=len(last_times)))
        watermark = part.watermark.value
        cutoff = None if watermark is None else watermark - self.retention_ms
        skipped = []
        for user, last_ts_ms in last_times.items():
            if cutoff is not None and last_ts_ms < cutoff:
                skipped.append(user)
                old = part.bucket_of.pop(user, None)
                if old is not None:
                    part.buckets[old].discard(user)
            else:
                part.index(user, last_ts_ms)
        self._pending.extend((partition, user) for user in skipped)
        return skipped

    def watermark(self, partition: int) -> int | None:
        part = self._partitions.get(partition)
        return None if part is None else part.watermark.value

    def live(self) -> int:
        """Entries indexed now (the table's live entries)."""
        return sum(len(part.bucket_of) for part in self._partitions.values())


def session_expiry(settings: Settings) -> SessionExpiry | None:
    """The worker's expiry from its settings; None keeps every entry (retention 0)."""
    s = settings.stream
    if not s.session_retention_seconds:
        return None
    return SessionExpiry(int(s.session_retention_seconds * 1000), s.session_watermark_events)
