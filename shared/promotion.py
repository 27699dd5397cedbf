"""Promotion, the one way a model goes live: verify the version, check the baseline gate
(shared.gate), flip the alias atomically, announce it on `models.announce` so running
workers reload now.

`shopflow train --promote`, `shopflow models promote` and the retrain job all call
`promote`. The registry alias is the truth; the announcement only saves workers the wait
until their next registry poll, so a broker that is down is one logged line, not a failure.
The listening side lives with the stream workers.

A version the gate refuses raises GateRefusedError and the alias stays as it was; the
attempt is recorded in the version's manifest (`promotions`), as is every promotion,
and `force=True` (`shopflow models promote --force`) overrides on the record: who, when, why.

    result = promote(settings, "propensity", 3, reason="beats v2 on roc_auc")
    result.announced   # False when no broker answered
"""

from __future__ import annotations

import getpass
import logging
from dataclasses import dataclass
from datetime import datetime, timezone

from shared.brokers import broker_accepts_connections
from shared.contract.announcement import announcement_value
from shared.errors import BrokerError, GateRefusedError
from shared.gate import gate_allows, model_kind
from shared.manifest import Manifest
from shared.registry import ModelRegistry
from shared.settings import Settings
from shared.tracking import mirror_aliases

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
    force: bool = False,
    announce_timeout_s: float = 10.0,
) -> PromotionResult:
    """Verify `version`, check the baseline gate, point `alias` at it, announce it.

    Raises CorruptCheckpointError when the version fails verification, GateRefusedError
    when the gate refuses it and `force` is False; the alias is untouched either way."""
    registry = ModelRegistry(settings.models.registry_root)
    checked = registry.verify(task, version)
    allowed, why = gate_allows(checked, tolerance=settings.models.baseline_tolerance)
    if not allowed and not force:
        _record(registry, task, version, outcome="refused", alias=alias, reason=reason, gate=why)
        raise GateRefusedError(
            f"{task} v{version} refused by the baseline gate: {why}; the {alias} stays "
            f"{'v' + str(registry.resolve(task, alias)) if registry.resolve(task, alias) else 'unset'} "
            f"(`shopflow models promote {task} {version} --force --reason ...` overrides, on the record)"
        )
    previous = registry.resolve(task, alias)
    registry.flip_alias(task, version, alias)
    mirror_aliases(settings, task)  # MLflow's alias follows; a store that is down catches up later
    outcome = "promoted" if allowed else "forced"
    manifest = _record(registry, task, version, outcome=outcome, alias=alias, reason=reason, gate=why)
    log.info("%s %s %s -> v%d (%s, was %s): %s", outcome, task, alias, version, model_kind(manifest), previous, reason)
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


def _record(registry: ModelRegistry, task: str, version: int, *, outcome: str, **fields: str) -> Manifest:
    """Append one promotion attempt to the version's manifest (`promotions`)."""
    entry = {
        "outcome": outcome,  # promoted | refused | forced
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "by": _who(),
        **fields,
    }

    def append(manifest: Manifest) -> Manifest:
        return manifest.with_fields(promotions=[*manifest.extra.get("promotions", []), entry])

    return registry.update_manifest(task, version, append)


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in a bare container
        return "unknown"


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
    # Fail fast: the Kafka client would retry for half a minute before giving up.
    if not broker_accepts_connections(servers, timeout_s=2.0):
        raise BrokerError(f"no Kafka broker answers at {servers}")
    value = announcement_value(task, version, alias=alias, reason=reason, announced_at=datetime.now(timezone.utc))
    try:
        producer = KafkaProducer(bootstrap_servers=servers, acks="all")
        try:
            producer.send(settings.kafka.models_topic, key=task.encode(), value=value).get(timeout=timeout_s)
        finally:
            producer.close(timeout=5)
    except KafkaError as exc:
        raise BrokerError(f"announcing {task} v{version} on {settings.kafka.models_topic} failed: {exc}") from exc
