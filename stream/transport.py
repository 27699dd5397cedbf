"""A Faust app with two changes to its Kafka consumer: a short fetch wait, a safe seek.

1. Faust's aiokafka driver fixes the consumer's fetch_max_wait_ms at 1500 ms. A Kafka
   broker answers a waiting fetch as soon as data arrives, so that only matters when idle;
   the embedded broker (Tansu 0.6) does not, and holds every fetch for the full wait:
   measured p50 ~410 ms from produce to consume at 1500 ms, ~7 ms at 20 ms. The consumer
   takes settings.stream.fetch_max_wait_ms instead.
2. After a rebalance Faust (0.15) resumes the stream partitions, with the flow already
   running when a table was recovered from its changelog, then seeks them to their
   committed offsets, then clears every stream queue. Records handed to a stream during
   the seek are dropped by that clear while the fetch position is already past them, so
   they were skipped until the next restart (seen after every unclean restart with a
   backlog: a worker "assigned but idle", commits stuck). `perform_seek` here stops the
   flow first (Faust resumes it right after the clear) and also rewinds the partitions
   that have no committed offset yet, so every cleared record is fetched again.

    app = ShopflowApp("id", broker="kafka://127.0.0.1:19092", fetch_max_wait_ms=25)
"""

from __future__ import annotations

from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka


def _transport_class(fetch_max_wait_ms: int) -> type:
    class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            # aiokafka passes this to its Fetcher in start(), which runs after this.
            consumer._fetch_max_wait_ms = fetch_max_wait_ms
            return consumer

    class ShopflowConsumer(faust_aiokafka.Consumer):
        def _new_consumer_thread(self) -> ConsumerThread:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

        async def perform_seek(self) -> None:
            # No record reaches a stream while positions move; both of Faust's callers
            # clear the stream queues and resume the flow right after this returns.
            self.stop_flow()
            await super().perform_seek()
            await self._rewind_uncommitted()

        async def _rewind_uncommitted(self) -> None:
            # aiokafka's seek_to_committed leaves a partition without a committed offset
            # (or at 0) where it is, possibly past records the clear is about to drop.
            if self.app.conf.consumer_auto_offset_reset != "earliest":
                return  # "latest" skips unread records by definition
            changelogs = self.app.tables.changelog_topics
            rewind = [tp for tp in self.assignment()
                      if tp.topic not in changelogs and not self._read_offset.get(tp)]
            if rewind:
                await self._thread.seek_to_beginning(*(faust_aiokafka.ensure_aiokafka_TP(tp) for tp in rewind))
                for tp in rewind:
                    self._read_offset[tp] = None

    class Transport(faust_aiokafka.Transport):
        Consumer = ShopflowConsumer

    return Transport


class ShopflowApp(faust.App):
    """faust.App whose consumer takes its fetch wait from settings and seeks safely."""

    def __init__(self, *args: Any, fetch_max_wait_ms: int, **kwargs: Any) -> None:
        self._transport_cls = _transport_class(fetch_max_wait_ms)
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> Any:
        return self._transport_cls(self.conf.broker_consumer, self)
