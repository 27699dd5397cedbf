"""Listening for model announcements on the `models.announce` topic (they are sent by
`shared.promotion.promote`, the one place a model goes live; their format is
`shared.contract.announcement`).

Every worker must see every announcement, so the listener reads the topic without a
consumer group (each worker reads all partitions from the end). An announcement only
makes the worker ask the registry now instead of at its next poll; the registry alias
stays the truth, so a lost announcement delays a reload by one poll interval at most.

    await listen_for_announcements(settings, on_announce)  # on_announce(task, version)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from shared.contract.announcement import parse_announcement
from shared.settings import Settings

log = logging.getLogger(__name__)


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
