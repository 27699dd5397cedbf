"""The Faust app factory: topics, the session table, agents and timers, registered here.

Nothing happens at import time; `create_app(settings)` builds a fresh app each call
(tests build several). Run it with `shopflow worker` (see `stream.worker`).

    app = create_app(get_settings())
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import faust

from shared.brokers import broker_accepts_connections_async
from shared.errors import BrokerError
from shared.settings import Settings
from stream.announce import listen_for_announcements
from stream.expiry import session_expiry
from stream.metrics import WorkerMetrics
from stream.outbox import Outbox
from stream.pipeline import Pipeline, die
from stream.restore import SessionRestorer
from stream.scoring import ModelHolder
from stream.sessions import changelog_record
from stream.topics import CHANGELOG_CONFIGS, SESSION_TABLE
from stream.transport import ShopflowApp, aiokafka_producer

log = logging.getLogger(__name__)

# (resolve, load[, fingerprint]): see stream.champion.
ChampionFunctions = tuple[Callable[..., Any], ...]


class _CommitSensor(faust.Sensor):
    """Records when Faust committed offsets, for the commit-age gauge."""

    def __init__(self, metrics: WorkerMetrics) -> None:
        super().__init__()
        self._metrics = metrics

    def on_commit_completed(self, consumer: Any, state: Any) -> None:
        self._metrics.committed()


def create_app(settings: Settings, champion: ChampionFunctions | None = None) -> faust.App:
    """Build the worker app. `champion` overrides the registry's (resolve, load, fingerprint)."""
    k, s = settings.kafka, settings.stream
    # Faust keeps its own small state files here and refuses to start without the folder.
    (s.run_dir / "faust").mkdir(parents=True, exist_ok=True)
    app = ShopflowApp(
        s.app_id,
        fetch_max_wait_ms=s.fetch_max_wait_ms,
        broker=[f"kafka://{server.strip()}" for server in k.bootstrap_servers.split(",")],
        datadir=str(s.run_dir / "faust"),
        store="memory://",  # the changelog topic is the table's durable copy
        web_enabled=False,  # metrics come from prometheus-client on their own port
        topic_partitions=k.partitions,
        topic_replication_factor=1,
        table_standby_replicas=0,
        broker_session_timeout=k.session_timeout_ms / 1000,
        broker_heartbeat_interval=k.heartbeat_interval_ms / 1000,
        broker_commit_interval=s.commit_interval_seconds,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_max_batch_size=s.producer_max_batch_bytes,
    )
    raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
    clicks = app.topic(k.clicks_topic, **raw)
    sessions = app.Table(
        SESSION_TABLE,
        default=None,
        partitions=k.partitions,
        key_type=str,  # the pseudonymized user id; values are JSON dicts (app default)
        # Faust sets cleanup.policy itself; these make compaction effective (stream.topics)
        extra_topic_configs={k: v for k, v in CHANGELOG_CONFIGS.items() if k != "cleanup.policy"},
    )

    metrics = WorkerMetrics()
    app.sensors.add(_CommitSensor(metrics))
    # Idle users' entries expire (stream.expiry); the table is restored in bulk (stream.restore).
    expiry = session_expiry(settings)
    app.changelog_restorers[sessions.changelog_topic_name] = SessionRestorer(sessions, expiry, metrics).restore

    def on_broker_data_lost(where: str, tps: list[Any]) -> None:
        metrics.broker_data_lost.labels(where=where).inc()
        if where == "input":  # the lag gauge counts from the new logs' beginning
            for tp in tps:
                pipeline.last_offsets.pop(tp.partition, None)

    app.broker_loss.subscribe(on_broker_data_lost)
    # Every output (scored events, session entries, dead letters) leaves through the
    # outbox, on Faust's producer: one produce request per partition.
    outbox = Outbox(lambda: aiokafka_producer(app))
    app.broker_loss.subscribe(lambda where, tps: outbox.forget_partitions())

    if champion is None:
        from stream.champion import champion_functions

        champion = champion_functions(settings)
    resolve, load, *rest = champion

    def on_model_event(what: str, version: str) -> None:
        metrics.model_events.labels(outcome=what).inc()

    holder = ModelHolder(resolve, load, on_event=on_model_event, fingerprint=rest[0] if rest else None)
    pipeline = Pipeline(
        settings,
        outbox=outbox,
        scored_topic=k.scored_topic,
        changelog_topic=sessions.changelog_topic_name,
        dlq_topic=k.dlq_topic,
        changelog_record=changelog_record,
        sessions=sessions,
        holder=holder,
        metrics=metrics,
        expiry=expiry,
    )

    async def score_clicks(stream: faust.StreamT) -> None:
        # Faust's default on agent error is to log and leave the process up with the
        # partitions stalled; every exit path here ends the process instead.
        try:
            async for events in stream.take_events(s.batch_max_events, within=s.batch_max_wait_ms / 1000):
                await pipeline.process_events(events)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            die("agent score_clicks", exc)

    app.agent(clicks, name="score_clicks")(score_clicks)

    async def start_pipeline() -> None:
        try:
            import torch  # loaded by the champion already

            metrics.torch_threads.set(torch.get_num_threads())
            metrics.serve(s.metrics_host, s.metrics_port)
            await pipeline.start()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # no metrics or no snapshot: do not run half a worker
            die("start_pipeline", exc)

    app.task(start_pipeline, on_leader=False)

    async def poll_registry() -> None:
        await pipeline.wait_ready()
        await holder.refresh()

    app.timer(s.model_poll_seconds, name="poll_registry")(poll_registry)

    async def poll_item_snapshot() -> None:
        await pipeline.refresh_items()

    app.timer(s.model_poll_seconds, name="poll_item_snapshot")(poll_item_snapshot)

    async def announcements() -> None:
        async def on_announce(task: str | None, version: int | None) -> None:
            if task in (None, s.model_task):
                await holder.refresh(retry=version)

        await listen_for_announcements(settings, on_announce)

    app.task(announcements, on_leader=False)

    seen_assignment: list[set] = [set()]

    async def observe() -> None:
        metrics.update_commit_age()
        metrics.model_mismatch.set(holder.mismatch_seconds())
        assigned = [tp for tp in app.consumer.assignment() if tp.topic == k.clicks_topic]
        if set(assigned) != seen_assignment[0]:
            seen_assignment[0] = set(assigned)
            log.info("assigned %s partitions %s", k.clicks_topic, sorted(tp.partition for tp in assigned) or "none")
        for tp in assigned:
            try:
                highwater = app.consumer.highwater(tp)
            except Exception:  # no fetch yet for this partition: nothing to report
                continue
            if highwater is None:
                continue
            done = pipeline.last_offsets.get(tp.partition, -1)
            metrics.lag.labels(partition=str(tp.partition)).set(max(0, highwater - done - 1))

    app.timer(1.0, name="observe")(observe)

    down_since: list[float | None] = [None]

    async def watch_broker() -> None:
        # The Kafka clients retry a vanished broker forever; a worker that cannot reach
        # one for broker_lost_exit_seconds exits so that someone notices.
        if await broker_accepts_connections_async(k.bootstrap_servers, timeout_s=2.0):
            if down_since[0] is not None:
                log.info("the Kafka broker at %s accepts connections again", k.bootstrap_servers)
            down_since[0] = None
            return
        now = time.monotonic()
        if down_since[0] is None:
            down_since[0] = now
            log.warning(
                "no Kafka broker accepts connections at %s; exiting with status 70 unless one does within %.0f s",
                k.bootstrap_servers,
                s.broker_lost_exit_seconds,
            )
        elif now - down_since[0] >= s.broker_lost_exit_seconds:
            die(
                "watch_broker",
                BrokerError(
                    f"no Kafka broker accepted a connection at {k.bootstrap_servers} for {now - down_since[0]:.0f} s"
                ),
            )

    app.timer(2.0, name="watch_broker")(watch_broker)

    @app.on_before_shutdown.connect
    async def _close(app_: Any, **_: Any) -> None:
        pipeline.close()

    # Handles for tests and the bench: the same objects the agents use.
    app.shopflow = {"pipeline": pipeline, "holder": holder, "metrics": metrics}  # type: ignore[attr-defined]
    return app
