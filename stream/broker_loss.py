"""When the broker lost its data: notice it, say so once, and carry on from what is there.

The embedded broker (Tansu) keeps topics, records and committed offsets in memory, so a
broker restart under a running worker leaves every topic empty and the consumer group
unknown. Positions the worker still holds then point past the end of the new logs, and
Faust (0.15) trusts them:

* its table recovery compares the changelog offset it read last with the new high
  watermark and raises `ConsistencyError` ("persisted offset N > highwater -1"), which
  ended the worker with status 1 whenever it had recovered its session table from a
  non-empty changelog;
* its consumer drops fetched records below the offset it read last, and never commits
  an offset below the one it committed last, so the first records of the new logs
  would be skipped and commits would stall.

Lost data is recognised the same way on any broker: a position the worker knows of (an
offset read or committed, a changelog offset recovered) lies past the partition's end,
or the group's committed offset is gone. The remedy, applied by `ShopflowRecovery` here
and by the consumer in `stream.transport`: forget those positions, so the partitions
are read from the beginning of the new logs, and report it through `BrokerLossReport`
(one WARNING line per rebalance, and a metric).

The session table is kept as it is in memory: sessions carry on and an event sent again
gets the features it had the first time. Its changelog only holds the updates written
after the loss, so a worker restarted later starts the earlier sessions afresh, as a
worker started on the new broker would.

    app = ShopflowApp(...)      # stream.transport: uses ShopflowTableManager, has .broker_loss
    app.broker_loss.subscribe(lambda where, tps: metrics.broker_data_lost.labels(where=where).inc())
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from aiokafka.errors import KafkaError
from faust.tables import TableManager
from faust.tables.recovery import Recovery

log = logging.getLogger(__name__)

# How long table recovery retries a broker that does not answer before giving up (the
# worker then exits with status 70). A restart of the embedded broker takes ~1 s.
RECOVERY_RETRY_SECONDS = 60.0

OnLoss = Callable[[str, list[Any]], None]  # (where: "input" | "changelog", topic-partitions)
# (a new consumer without a group, {tp: (first, last offset)}) -> {tp: last offset applied}
Restorer = Callable[[Callable[[], Any], Mapping[Any, tuple[int, int]]], Awaitable[Mapping[Any, int]]]


def lost_positions(known: Mapping[Any, int | None], ends: Mapping[Any, int | None]) -> dict[Any, tuple[int, int]]:
    """Partitions whose known next offset lies past the end of the log: {tp: (known, end)}.

    `known` and `ends` are both "next offset" numbers (last offset + 1); a partition with
    no known position or no end is never lost.
    """
    lost = {}
    for tp, position in known.items():
        end = ends.get(tp)
        if position is not None and end is not None and position > end:
            lost[tp] = (position, end)
    return lost


class BrokerLossReport:
    """Logs a loss once per rebalance generation and tells every subscriber each time."""

    def __init__(self) -> None:
        self._subscribers: list[OnLoss] = []
        self._logged_generation: int | None = None

    def subscribe(self, on_loss: OnLoss) -> None:
        self._subscribers.append(on_loss)

    def report(self, where: str, lost: Mapping[Any, tuple[int, int | None]], generation: int) -> None:
        described = ", ".join(
            f"{tp.topic}[{tp.partition}] {known}>{'none' if end is None else end}"
            for tp, (known, end) in sorted(lost.items(), key=lambda item: (item[0].topic, item[0].partition))
        )
        if self._logged_generation != generation:
            self._logged_generation = generation
            log.warning(
                "the Kafka broker lost its data (a restarted in-memory broker?): %s positions past "
                "the end of the log or committed offsets gone (%s); reading from the new logs' "
                "beginning, session table kept in memory",
                where,
                described,
            )
        else:
            log.info("broker data lost, %s too: %s", where, described)
        tps = list(lost)
        for on_loss in self._subscribers:
            on_loss(where, tps)


class ShopflowRecovery(Recovery):
    """Faust's table recovery, minus the crash on a changelog that lost its records and
    on a broker that goes away while recovery asks it for offsets (it crashed the worker
    when the broker restarted during a rebalance): those requests are retried until the
    broker answers or the next rebalance starts (Faust's `_wait` then restarts recovery)."""

    async def _retrying(self, what: str, call: Callable[[], Awaitable[None]]) -> None:
        deadline = time.monotonic() + RECOVERY_RETRY_SECONDS
        delay = 0.25
        while True:
            try:
                return await call()
            except (KafkaError, OSError) as exc:
                if time.monotonic() >= deadline:
                    raise
                log.warning("table recovery: %s failed (%s); retrying in %.2f s", what, exc, delay)
                await asyncio.sleep(delay)
                delay = min(2 * delay, 4.0)

    async def _build_offsets(self, consumer: Any, tps: Any, destination: Any, title: str) -> None:
        await self._retrying(
            f"reading {title} start offsets",
            lambda: super(ShopflowRecovery, self)._build_offsets(consumer, tps, destination, title),
        )

    async def _wait(self, coro: Any, timeout: Any = None) -> None:
        # Faust bounds its seek step by the broker request timeout; the tables restored in
        # that step (`_restore`) can take longer, and `stream.restore` gives up on its own
        # when the broker stops answering. A new rebalance still interrupts it.
        if getattr(getattr(coro, "cr_code", None), "co_name", None) == "_seek_offsets":
            timeout = None
        await super()._wait(coro, timeout=timeout)

    async def _seek_offsets(self, consumer: Any, tps: Any, offsets: Any, title: str) -> None:
        if title == "active":
            await self._retrying(f"restoring {title} tables", lambda: self._restore(consumer, tps, offsets))
        await self._retrying(
            f"seeking {title} changelogs",
            lambda: super(ShopflowRecovery, self)._seek_offsets(consumer, tps, offsets, title),
        )

    async def _restore(self, consumer: Any, tps: Any, offsets: Any) -> None:
        # Tables with a restorer of their own (`stream.restore`) are read to their end
        # here, before Faust reads them record by record; it then finds nothing left.
        restorers: Mapping[str, Restorer] = getattr(self.app, "changelog_restorers", {})
        by_topic: dict[str, dict[Any, tuple[int, int]]] = {}
        for tp in tps:
            last = self.active_highwaters.get(tp)
            if tp.topic in restorers and last is not None:
                by_topic.setdefault(tp.topic, {})[tp] = ((offsets[tp] if offsets[tp] is not None else -1) + 1, last)
        for topic, ranges in by_topic.items():
            done = await restorers[topic](lambda: consumer._thread._create_client_consumer(consumer.transport), ranges)
            for tp, last in done.items():
                offsets[tp] = max(last, offsets[tp] if offsets[tp] is not None else -1)

    async def _build_highwaters(self, consumer: Any, tps: Any, destination: Any, title: str) -> None:
        await self._retrying(
            f"reading {title} end offsets",
            lambda: super(ShopflowRecovery, self)._build_highwaters(consumer, tps, destination, title),
        )
        if destination is not self.active_highwaters:
            return  # standbys are not used (table_standby_replicas=0)
        # Both are "last offset" numbers here (Faust subtracts 1 from the end offset).
        known = {tp: _plus_one(self.active_offsets.get(tp)) for tp in tps}
        ends = {tp: _plus_one(destination.get(tp)) for tp in tps}
        lost = lost_positions(known, ends)
        if not lost:
            return
        for tp in lost:
            # None: `_build_offsets` starts the partition at the new log's beginning.
            self.active_offsets[tp] = None  # type: ignore[assignment]
        self.app.broker_loss.report("changelog", lost, self.app.consumer_generation_id)


def _plus_one(offset: int | None) -> int | None:
    return None if offset is None else offset + 1


class ShopflowTableManager(TableManager):
    """Faust's table manager with `ShopflowRecovery`."""

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = ShopflowRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery


def known_next_offsets(
    *sources: Mapping[Any, int | None], plus_one: Iterable[Mapping[Any, int | None]] = ()
) -> dict[Any, int]:
    """The highest "next offset" per partition over `sources` (next offsets) and
    `plus_one` (last offsets read); None and 0 entries carry no knowledge."""
    known: dict[Any, int] = {}
    for source in sources:
        for tp, offset in source.items():
            if offset:
                known[tp] = max(known.get(tp, 0), offset)
    for source in plus_one:
        for tp, offset in source.items():
            if offset is not None:
                known[tp] = max(known.get(tp, 0), offset + 1)
    return known
