"""Promotion, the one way a model goes live: verify the version, flip the alias
atomically, announce it on `models.announce` so running workers reload now.

`shopflow train --promote`, `shopflow models promote` and the retrain job all call
`promote`. The registry alias is the truth; the announcement only saves workers the wait
until their next registry poll, so a broker that is down is one logged line, not a failure.
The listening side lives with the stream workers.

    result = promote(settings, "propensity", 3, reason="beats v2 on roc_auc")
    result.announced   # False when no broker answered
"""

from __future__ import annotations

import json
import logging
import socket
from dataclasses import dataclass
from datetime import datetime, timezone

from shared.errors import BrokerError
from shared.manifest import Manifest
from shared.registry import ModelRegistry
from shared.schemas import format_timestamp
from shared.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PromotionResult:
    task: str
    alias: str
    version: int
    previous: int | None  # the version the alias pointed at before, if any
    reason: str
    topic: str
    announced: bool
    # Why it was not announced (one line for a person), or None.
    announce_error: str | None
    manifest: Manifest

    def summary(self) -> str:
        head = f"{self.task}: {self.alias} -> v{self.version}"
        if self.announced:
            return f"{head}; announced on {self.topic}: running workers reload now"
        return f"{head}; not announced ({self.announce_error}): running workers reload at their next registry poll"


def promote(
    settings: Settings,
    task: str,
    version: int,
    *,
    reason: str,
    alias: str = "champion",
    announce_timeout_s: float = 10.0,
) -> PromotionResult:
    """Verify `version`, point `alias` at it, announce it; raises CorruptCheckpointError
    (alias untouched) when the version fails verification."""
    registry = ModelRegistry(settings.models.registry_root)
    previous = registry.resolve(task, alias)
    manifest = registry.flip_alias(task, version, alias)
    log.info("promoted %s %s -> v%d (was %s): %s", task, alias, version, previous, reason)
    error: str | None = None
    try:
        announce(settings, task=task, version=version, alias=alias, reason=reason, timeout_s=announce_timeout_s)
    except BrokerError as exc:
        error = str(exc)
        log.info("not announced: %s", exc)  # the caller reports it (PromotionResult)
    return PromotionResult(
        task=task,
        alias=alias,
        version=int(version),
        previous=previous,
        reason=reason,
        topic=settings.kafka.models_topic,
        announced=error is None,
        announce_error=error,
        manifest=manifest,
    )


def announce(
    settings: Settings,
    *,
    task: str,
    version: int,
    alias: str = "champion",
    reason: str = "",
    timeout_s: float = 10.0,
) -> None:
    """Tell running workers that `alias` of `task` now points at `version` (raises BrokerError)."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    servers = settings.kafka.bootstrap_servers
    _probe(servers)
    payload = {
        "task": task,
        "version": int(version),
        "alias": alias,
        "reason": reason,
        "announced_at": format_timestamp(datetime.now(timezone.utc)),
    }
    try:
        producer = KafkaProducer(bootstrap_servers=servers, acks="all")
        try:
            producer.send(settings.kafka.models_topic, key=task.encode(), value=json.dumps(payload).encode()).get(
                timeout=timeout_s
            )
        finally:
            producer.close(timeout=5)
    except KafkaError as exc:
        raise BrokerError(f"announcing {task} v{version} on {settings.kafka.models_topic} failed: {exc}") from exc


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
    raise BrokerError(f"no Kafka broker answers at {bootstrap_servers}")
