"""Model announcements on the `models.announce` topic: publish one, or listen for them.

Every worker must see every announcement, so the listener reads the topic without a
consumer group (each worker reads all partitions from the end). An announcement only
makes the worker ask the registry now instead of at its next poll; the registry alias
stays the truth, so a lost announcement delays a reload by one poll interval at most.

    announce(get_settings(), task="propensity", version=3)     # after a promotion
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable

from shared.errors import BrokerError
from shared.schemas import format_timestamp
from shared.settings import Settings

log = logging.getLogger(__name__)


def announce(settings: Settings, *, task: str, version: int, alias: str = "champion") -> None:
    """Tell running workers that `alias` of `task` now points at `version`."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    payload = {"task": task, "version": int(version), "alias": alias,
               "announced_at": format_timestamp(datetime.now(timezone.utc))}
    try:
        producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
        try:
            producer.send(settings.kafka.models_topic, key=task.encode(),
                          value=json.dumps(payload).encode()).get(timeout=10)
        finally:
            producer.close(timeout=5)
    except KafkaError as exc:
        raise BrokerError(
            f"announcing {task} v{version} on {settings.kafka.models_topic} failed: {exc}; "
            "workers still pick the new champion up at their next registry poll"
        ) from exc


def _probe(bootstrap_servers: str, timeout: float = 2.0) -> None:
    """Fail fast when no bootstrap server accepts a connection (the Kafka client would
    retry for half a minute before giving up)."""
    for server in bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
            return
        except (OSError, ValueError):
            continue
    raise BrokerError(f"no Kafka broker answers at {bootstrap_servers}; workers pick the new "
                      "champion up at their next registry poll")


def announce_promotion(settings: Settings, *, task: str, version: int, alias: str = "champion") -> bool:
    """Best-effort `announce` after a promotion: a broker that cannot be reached only
    delays the reload to the workers' next registry poll, so it is a warning, not a failure."""
    try:
        _probe(settings.kafka.bootstrap_servers)
        announce(settings, task=task, version=version, alias=alias)
    except BrokerError as exc:
        log.warning("%s", exc)
        return False
    log.info("announced %s %s -> v%d on %s", task, alias, version, settings.kafka.models_topic)
    return True


def parse_announcement(value: bytes | None) -> tuple[str | None, int | None]:
    """(task, version) of an announcement; None for what it does not say (or not clearly)."""
    try:
        payload = json.loads(value or b"")
    except (ValueError, UnicodeDecodeError):
        return None, None
    if not isinstance(payload, dict):
        return None, None
    task, version = payload.get("task"), payload.get("version")
    return (task if isinstance(task, str) else None,
            version if isinstance(version, int) and not isinstance(version, bool) else None)


async def listen_for_announcements(
    settings: Settings, on_announce: Callable[[str | None, int | None], Awaitable[Any]]
) -> None:
    """Call `on_announce(task, version)` for each announcement (None where the payload
    does not say); reconnects after broker errors, forever."""
    from aiokafka import AIOKafkaConsumer

    while True:
        consumer = AIOKafkaConsumer(
            settings.kafka.models_topic,
            bootstrap_servers=settings.kafka.bootstrap_servers,
            group_id=None,
            auto_offset_reset="latest",
            enable_auto_commit=False,
        )
        try:
            await consumer.start()
            async for message in consumer:
                log.info("model announcement: %r", (message.value or b"")[:200])
                await on_announce(*parse_announcement(message.value))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # broker gone or restarted: listen again shortly
            log.warning("announcement listener: %s; retrying in 2 s", exc)
            await asyncio.sleep(2.0)
        finally:
            try:
                await consumer.stop()
            except Exception as exc:  # stopping a consumer whose broker vanished can fail too
                log.debug("stopping the announcement consumer: %s", exc)
