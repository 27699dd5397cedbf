"""A Faust app whose Kafka consumer waits briefly, seeks safely and checks end offsets.

1. Faust's aiokafka driver fixes the consumer's fetch_max_wait_ms at 1500 ms. A Kafka
   broker answers a waiting fetch as soon as data arrives, so that only matters when idle;
   the embedded broker (Tansu 0.6) does not, and holds every fetch for the full wait:
   measured p50 ~410 ms from produce to consume at 1500 ms, ~7 ms at 20 ms. The consumer
   takes settings.stream.fetch_max_wait_ms instead.
2. After a rebalance Faust (0.15) resumes the stream partitions, with the flow already
   running when a table was recovered from its changelog, then seeks them to their
   committed offsets, then clears every stream queue. Records handed to a stream during
   the seek are dropped by that clear while the fetch position is already past them, so
   they were skipped until the next restart (about one restart in three with a backlog:
   a worker "assigned but idle", its commits stuck). `perform_seek` here stops the
   flow first (Faust resumes it right after the clear) and also rewinds the partitions
   that have no committed offset yet, so every cleared record is fetched again.
   It also forgets the positions a broker that lost its data no longer has (see
   `stream.broker_loss`), so a worker carries on after a restart of the in-memory broker.
3. Tansu answers ListOffsets(latest) with the base offset of a partition's last record
   batch plus one, short of the real end when that batch holds several records. Faust
   reads a table's changelog up to that answer when it recovers the table, so a
   restarted worker lost the last updates of some users' sessions. End offsets are
   confirmed here by a fetch, whose high watermark is right (on Kafka the two agree and
   this costs one fetch per rebalance).

4. Faust's Monitor sensor is not attached (see `ShopflowApp.on_init_dependencies`).

    app = ShopflowApp("id", broker="kafka://127.0.0.1:19092", fetch_max_wait_ms=25)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import aiokafka
import faust
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition
from faust.transport.drivers import aiokafka as faust_aiokafka

from shared.brokers import confirmed_end
from stream.broker_loss import (
    BrokerLossReport,
    Restorer,
    ShopflowTableManager,
    known_next_offsets,
    lost_positions,
)

log = logging.getLogger(__name__)


async def confirmed_end_offsets(
    probe: aiokafka.AIOKafkaConsumer, listed: Mapping[Any, int], timeout_s: float
) -> dict[Any, int]:
    """`listed` end offsets raised to the high watermark a fetch from each one reports
    (the rule is `shared.brokers.confirmed_end`).

    `probe` is a new, unstarted consumer without a group; it is started and stopped here.
    Keys are whatever `listed` uses (Faust or aiokafka topic-partitions). The fold applies
    the same rule with kafka-python (`jobs.fold_kafka`): this one runs inside Faust's
    event loop on aiokafka, that one in a blocking consumer, so each keeps its client.
    """
    if not listed:
        return {}
    keys = {TopicPartition(tp.topic, tp.partition): tp for tp in listed}
    await probe.start()
    try:
        probe.assign(list(keys))
        for tp, key in keys.items():
            probe.seek(tp, listed[key])
        deadline = time.monotonic() + timeout_s
        while any(probe.highwater(tp) is None for tp in keys) and time.monotonic() < deadline:
            await probe.getmany(timeout_ms=100)
        return {key: confirmed_end(listed[key], probe.highwater(tp)) for tp, key in keys.items()}
    finally:
        await probe.stop()


def _key(tp: Any) -> tuple[str, int]:
    """Faust's and aiokafka's topic-partition types as one plain key."""
    return (tp.topic, tp.partition)


def _transport_class(fetch_max_wait_ms: int) -> type:
    class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            # aiokafka passes this to its Fetcher in start(), which runs after this.
            consumer._fetch_max_wait_ms = fetch_max_wait_ms
            return consumer

        async def _highwaters(self, partitions: Any) -> Mapping[Any, int]:
            listed = await super()._highwaters(partitions)
            if self.consumer.in_transaction:
                return listed
            probe = self._create_client_consumer(self.transport)
            probe._fetch_max_wait_ms = fetch_max_wait_ms
            return await confirmed_end_offsets(probe, listed, self.app.conf.broker_request_timeout)

    class ShopflowConsumer(faust_aiokafka.Consumer):
        def _new_consumer_thread(self) -> ConsumerThread:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

        def _positions(self) -> tuple[dict, dict]:
            # (next offsets read of partitions Faust forgot when they were revoked,
            #  offsets the broker confirmed as committed), by (topic, partition): what the
            # worker knows of the logs, to tell a broker that lost its data.
            if not hasattr(self, "_read_before_revoke"):
                self._read_before_revoke: dict = {}
                self._confirmed_commits: dict = {}
            return self._read_before_revoke, self._confirmed_commits

        async def on_partitions_revoked(self, revoked: Any) -> None:
            read, _ = self._positions()
            read.update(known_next_offsets(plus_one=[{_key(tp): self._read_offset.get(tp) for tp in revoked}]))
            await super().on_partitions_revoked(revoked)

        async def _commit(self, offsets: Mapping[Any, int]) -> bool:
            did_commit = await super()._commit(offsets)
            if did_commit:  # Faust records its own offsets even when a commit failed
                self._positions()[1].update({_key(tp): offset for tp, offset in offsets.items()})
            return did_commit

        async def seek_to_committed(self) -> Mapping[Any, int]:
            committed = await super().seek_to_committed()
            self._committed_answer = {_key(tp): offset for tp, offset in committed.items() if offset}
            return committed

        async def perform_seek(self) -> None:
            # No record reaches a stream while positions move; both of Faust's callers
            # clear the stream queues and resume the flow right after this returns.
            self.stop_flow()
            read, _ = self._positions()
            read_before = known_next_offsets(read, plus_one=[{_key(tp): o for tp, o in self._read_offset.items()}])
            self._committed_answer = None
            try:
                await super().perform_seek()
            except KafkaError as exc:
                # The broker went away mid-rebalance (it crashed the worker): when it is
                # back the group rejoins, and the next assignment seeks again.
                log.warning("seeking to the committed offsets failed (%s); the next rebalance seeks again", exc)
                return
            if self._committed_answer is not None:
                await self._forget_lost_positions(read_before, self._committed_answer)
            await self._rewind_uncommitted()

        async def _forget_lost_positions(self, read_before: dict, answer: dict) -> None:
            read, confirmed = self._positions()
            changelogs = self.app.tables.changelog_topics
            tps = [tp for tp in self.assignment() if tp.topic not in changelogs]
            # A group whose committed offsets vanished lost its data (Kafka keeps them while
            # the group lives); so did a log whose end lies before a position we know.
            lost = {
                tp: (confirmed[_key(tp)], None) for tp in tps if confirmed.get(_key(tp)) and not answer.get(_key(tp))
            }
            known = {
                tp: max(read_before.get(_key(tp), 0), confirmed.get(_key(tp), 0), answer.get(_key(tp), 0))
                for tp in tps
                if tp not in lost
            }
            check = [tp for tp in known if known[tp]]
            if check:
                try:
                    ends = await self.highwaters(*check)
                except Exception as exc:  # noqa: BLE001 - a broker going away again: the next rebalance checks
                    log.warning("could not read end offsets to check for lost broker data: %s", exc)
                else:
                    lost.update(lost_positions({tp: known[tp] for tp in check}, ends))
            for tp in lost:
                # Faust drops fetched records below _read_offset and ignores acks below
                # _committed_offset: forget both, so the new log is read from its start.
                self._read_offset[tp] = None
                self._committed_offset[tp] = None
                self._acked.pop(tp, None)
                self._acked_index.pop(tp, None)
                self._gap.pop(tp, None)
                read.pop(_key(tp), None)
                confirmed.pop(_key(tp), None)
            confirmed.update({k: v for k, v in answer.items() if k not in {_key(tp) for tp in lost}})
            if lost:
                self.app.broker_loss.report("input", lost, self.app.consumer_generation_id)

        async def _rewind_uncommitted(self) -> None:
            # aiokafka's seek_to_committed leaves a partition without a committed offset
            # (or at 0) where it is, possibly past records the clear is about to drop.
            if self.app.conf.consumer_auto_offset_reset != "earliest":
                return  # "latest" skips unread records by definition
            changelogs = self.app.tables.changelog_topics
            rewind = [tp for tp in self.assignment() if tp.topic not in changelogs and not self._read_offset.get(tp)]
            if rewind:
                await self._thread.seek_to_beginning(*(faust_aiokafka.ensure_aiokafka_TP(tp) for tp in rewind))
                for tp in rewind:
                    self._read_offset[tp] = None

    class Transport(faust_aiokafka.Transport):
        Consumer = ShopflowConsumer

    return Transport


class ShopflowApp(faust.App):
    """faust.App with the consumer described in this module's docstring."""

    def __init__(self, *args: Any, fetch_max_wait_ms: int, **kwargs: Any) -> None:
        self._transport_cls = _transport_class(fetch_max_wait_ms)
        self.broker_loss = BrokerLossReport()
        # changelog topic -> its table's own restore (`stream.restore`), used by the recovery
        self.changelog_restorers: dict[str, Restorer] = {}
        super().__init__(*args, TableManager=ShopflowTableManager, **kwargs)

    def _new_transport(self) -> Any:
        return self._transport_cls(self.conf.broker_consumer, self)

    def on_init_dependencies(self) -> Any:
        dependencies = super().on_init_dependencies()
        # Faust's Monitor keeps per-message statistics for its web views, which the
        # worker does not serve (its metrics are stream.metrics); a few % of a busy worker.
        self.sensors.remove(self.monitor)
        return dependencies


def aiokafka_producer(app: faust.App) -> aiokafka.AIOKafkaProducer:
    """The aiokafka producer under Faust's, for its batch API (`create_batch`/`send_batch`)."""
    return app.producer._ensure_producer()
