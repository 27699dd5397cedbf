"""The fold's Kafka side: a group consumer of the scored and dead-letter topics that
resumes every partition from the offset Delta holds, and knows when it has read them all.

    consumer = FoldConsumer(settings, batch_records=5000, tables={topic: table_path, ...})
    consumer.poll(); consumer.caught_up(); consumer.close()

Delta is the truth of what was folded (`jobs.fold_delta.folded_offset`): on assignment a
partition is sought to its app-transaction version, and a drain run ends when every
assigned partition is read to its confirmed end and Delta holds it all. The consumer
group's own offsets are committed for monitoring only. A partition whose offset Delta
stored from another topic of the same name (another Kafka topic id: the topic was
deleted and created again) is read from its beginning, however far the new log has
grown; where the broker gives no topic ids, a log that ends below Delta's offset is the
only sign of a recreated topic.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jobs.fold_delta import folded_identity, folded_offset, snapshot_of, topic_identity
from shared.brokers import confirmed_end
from shared.errors import BrokerError
from shared.settings import Settings

log = logging.getLogger("jobs.fold")


class FoldConsumer:
    """The group consumer, what it polled and not committed yet, and where each partition stands.

    `expected[tp]`: the offset this fold's next record of tp continues from (Delta's
    view); `recreated`: partitions whose topic was recreated since Delta's offset (another
    topic id, or a log that restarted below the offset); `identities`: each topic's id.
    """

    def __init__(self, settings: Settings, batch_records: int, tables: Mapping[str, Path]) -> None:
        self.settings = settings
        self.batch_records = batch_records
        self.tables = dict(tables)  # topic -> the Delta table its rows go to
        self.expected: dict[Any, int | None] = {}
        self.pending: dict[Any, list[Any]] = {}  # polled, not committed yet
        self.recreated: set[Any] = set()
        self.identities: dict[str, int | None] = {}  # topic -> its id on the broker (fold_delta.topic_identity)
        self.probe: Any = None  # a group-less consumer that confirms end offsets
        self.consumer = self._consumer()

    def _consumer(self) -> Any:
        from kafka import ConsumerRebalanceListener, KafkaConsumer

        fold = self

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked: Any) -> None:
                # Records not committed yet are the next owner's to fold (from Delta's offsets).
                for tp in revoked:
                    fold.pending.pop(tp, None)
                log.info("partitions revoked: %s", _names(revoked))

            def on_partitions_assigned(self, assigned: Any) -> None:
                fold.seek_to_folded(assigned)

        k, f = self.settings.kafka, self.settings.fold
        try:
            consumer = KafkaConsumer(
                bootstrap_servers=k.bootstrap_servers,
                group_id=f.group_id,
                client_id="shopflow-fold",
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                session_timeout_ms=k.session_timeout_ms,
                heartbeat_interval_ms=k.heartbeat_interval_ms,
                fetch_max_wait_ms=f.fetch_max_wait_ms,
                max_poll_records=self.batch_records,
            )
            consumer.subscribe([k.scored_topic, k.dlq_topic], listener=Listener())
        except Exception as exc:  # kafka-python raises several unrelated types here
            raise BrokerError(f"cannot consume from {k.bootstrap_servers}: {exc}") from exc
        return consumer

    # ------------------------------------------------------------------ reading

    def poll(self) -> bool:
        """Poll once into `pending`; whether any record came."""
        polled = self.consumer.poll(timeout_ms=self.settings.fold.poll_timeout_ms, max_records=self.batch_records)
        for tp, records in polled.items():
            self.pending.setdefault(tp, []).extend(records)
        return bool(polled)

    def held(self) -> int:
        """Records polled and not committed yet."""
        return sum(len(r) for r in self.pending.values())

    def assigned(self) -> bool:
        return bool(self.consumer.assignment())

    def resume_from(self, tp: Any, stored: int | None) -> None:
        """Read `tp` again from `stored` (Delta's next offset; None: from the beginning)."""
        self.expected[tp] = stored
        if stored is None:
            self.consumer.seek_to_beginning(tp)
        else:
            self.consumer.seek(tp, stored)

    def reread_from(self, tp: Any, stored: int) -> None:
        """Delta holds `stored` for tp, not where this fold's records continue (another member
        folded them): read from there, while tp is still this fold's."""
        if tp in self.consumer.assignment():
            self.consumer.seek(tp, stored)
        self.expected[tp] = stored

    def seek_to_folded(self, assigned: Any) -> None:
        """Resume each partition from its app-transaction version in Delta, not the group's
        offset; from the beginning where Delta's offset was read from another topic of the
        same name (a recreated one: its topic id differs)."""
        self.identities = self.topic_identities()
        for tp in assigned:
            snapshot = snapshot_of(self.tables[tp.topic])
            stored = folded_offset(snapshot, tp.topic, tp.partition)
            folded_from = folded_identity(snapshot, tp.topic, tp.partition)
            now = self.identities.get(tp.topic)
            if stored is not None and None not in (folded_from, now) and folded_from != now:
                log.warning(
                    "%s[%d]: Delta's offset %d was read from another topic of this name (its topic id "
                    "changed): the topic was recreated; reading it from the beginning",
                    tp.topic,
                    tp.partition,
                    stored,
                )
                self.resume_from(tp, None)
                self.recreated.add(tp)
                continue
            self.resume_from(tp, stored)
            log.info(
                "assigned %s[%d]: resuming at %s (Delta app transaction)",
                tp.topic,
                tp.partition,
                "the beginning" if stored is None else stored,
            )

    # -------------------------------------------------------------- the ends

    def caught_up(self) -> bool:
        """Whether every assigned partition is read to its confirmed end and all of it is in Delta."""
        assignment = self.consumer.assignment()
        if not assignment:
            return False
        for tp in assignment:
            end, position = self.consumer.highwater(tp), self.consumer.position(tp)
            if end is None or position < end:
                return False
        # The group consumer's high watermarks said so; confirm each end with a fetch at
        # the listed end (shared.brokers.confirmed_end: Tansu's answers fall short).
        ends = self.confirmed_ends(list(assignment))
        snapshots = {topic: snapshot_of(path) for topic, path in self.tables.items()}
        for tp in assignment:
            position = self.consumer.position(tp)
            stored = folded_offset(snapshots[tp.topic], tp.topic, tp.partition)
            if position == ends[tp] and (stored or 0) < ends[tp]:
                # Read to the end but not all of it is in Delta: records polled before a
                # rebalance were dropped uncommitted and the partition stayed here. Drain is
                # judged by Delta's offsets, so read them again from there.
                log.info(
                    "%s[%d]: read to %d but Delta holds %s; re-reading from there",
                    tp.topic,
                    tp.partition,
                    position,
                    stored,
                )
                self.resume_from(tp, stored)
                return False
            if position > ends[tp]:
                # Past the log's end: the topic was recreated (see jobs.fold_delta); read it from the start.
                log.warning(
                    "%s[%d] ends at %d, below the %d already folded: the topic was recreated; "
                    "reading it from the beginning",
                    tp.topic,
                    tp.partition,
                    ends[tp],
                    position,
                )
                self.consumer.seek_to_beginning(tp)
                self.recreated.add(tp)
                return False
            if position < ends[tp]:
                return False
        return True

    def topic_identities(self) -> dict[str, int | None]:
        """Each folded topic's identity on the broker (its Kafka topic id, KIP-516); empty
        where the broker gives none, and the fold falls back to the log-length rule."""
        from kafka.admin import KafkaAdminClient

        try:
            admin = KafkaAdminClient(bootstrap_servers=self.settings.kafka.bootstrap_servers, client_id="shopflow-fold")
            try:
                described = admin.describe_topics(list(self.tables))
            finally:
                admin.close()
        except Exception as exc:  # kafka-python raises several unrelated types here
            log.warning("topic ids unavailable (%s): a recreated topic is found by its length only", exc)
            return {}
        return {d["name"]: topic_identity(d.get("topic_id")) for d in described if not d.get("error_code")}

    def confirmed_ends(self, tps: list[Any]) -> dict[Any, int]:
        """The end offset of each of `tps` (`shared.brokers.confirmed_end`), from a fetch of
        the last listed record by a group-less consumer. The worker applies the same rule
        with aiokafka inside Faust's event loop (`stream.transport.confirmed_end_offsets`);
        this blocking consumer keeps kafka-python, the fold's one client."""
        from kafka import KafkaConsumer

        if self.probe is None:
            self.probe = KafkaConsumer(
                bootstrap_servers=self.settings.kafka.bootstrap_servers,
                group_id=None,
                enable_auto_commit=False,
                fetch_max_wait_ms=self.settings.fold.fetch_max_wait_ms,
            )
        listed = self.probe.end_offsets(tps)
        self.probe.assign(tps)
        for tp in tps:
            self.probe.seek(tp, max(listed[tp] - 1, 0))
        deadline = time.monotonic() + 10
        while any(self.probe.highwater(tp) is None for tp in tps) and time.monotonic() < deadline:
            self.probe.poll(timeout_ms=100)
        return {tp: confirmed_end(listed[tp], self.probe.highwater(tp)) for tp in tps}

    # ------------------------------------------------------------ bookkeeping

    def commit_group_offsets(self, committed: Mapping[Any, int]) -> None:
        """Monitoring only (lag dashboards); the fold itself resumes from Delta."""
        from kafka.structs import OffsetAndMetadata

        if not committed:
            return
        try:
            self.consumer.commit({tp: OffsetAndMetadata(nxt, "", -1) for tp, nxt in committed.items()})
        except Exception as exc:  # a rebalance in progress, say: harmless here
            log.debug("group offset commit skipped: %s", exc)

    def close(self) -> None:
        for consumer in (self.consumer, self.probe):
            try:
                if consumer is not None:
                    consumer.close(autocommit=False)
            except Exception as exc:
                log.debug("consumer close: %s", exc)


def _names(tps: Any) -> str:
    return ", ".join(sorted(f"{tp.topic}[{tp.partition}]" for tp in tps)) or "-"
