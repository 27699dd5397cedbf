"""The worker's dead letters: counted, logged, and sent through the same outbox as its other outputs.

An entry goes to the dead-letter topic on the partition of the record it describes,
through the `Outbox` (and producer) that also sends the scored events and the session
changelog; the caller awaits its acknowledgement with the batch's before the input
offsets are committed (at least once). The entry is bounded (`shared.contract.dead_letter`);
if the producer or the broker refuses it anyway, the minimal entry (where, size, hash, code; no
raw value) goes instead. Entries hold the record's redacted form, never its raw bytes, and
reasons that quote no sender value (`shared.redaction`); so does the log line. Only a refusal of the minimal entry (a few hundred bytes)
propagates: that is the broker, not the record, and it ends the process (status 70).

    dead_letters = DeadLetters(outbox, "clicks.dlq", metrics, redactor=Redactor(key), max_raw_bytes=65536,
                               max_reason_chars=512)
    ack = dead_letters.send(raw, "parse_validate", exc, topic="clicks", partition=0, offset=7, failed_at=now)
    await ack
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from shared.click_rules import excerpt
from shared.contract.dead_letter import dlq_entry, minimal_dlq_entry
from shared.redaction import Redactor
from stream import steps
from stream.metrics import WorkerMetrics
from stream.outbox import Outbox

log = logging.getLogger(__name__)


class DeadLetters:
    def __init__(
        self,
        outbox: Outbox,
        topic: str,
        metrics: WorkerMetrics,
        *,
        redactor: Redactor,
        max_raw_bytes: int,
        max_reason_chars: int,
    ) -> None:
        self._outbox = outbox
        self._redactor = redactor
        self._topic = topic
        self._metrics = metrics
        self._max_raw_bytes = max_raw_bytes
        self._max_reason_chars = max_reason_chars

    def send(
        self,
        raw: bytes | None,
        step: str,
        error: BaseException,
        *,
        topic: str,
        partition: int,
        offset: int,
        failed_at: datetime,
    ) -> asyncio.Future[None]:
        """Count and log the failure of the record read at `topic`[`partition`]@`offset`,
        and send its entry; returns the entry's delivery (done once acknowledged)."""
        code, reasons = steps.failure_reason(step, error)
        self._metrics.dlq.labels(step=step).inc()
        self._metrics.dlq_reasons.labels(reason_code=code).inc()
        log.info(
            "dead-lettered %s[%d]@%d at %s (%s, %d bytes): %s",
            topic,
            partition,
            offset,
            step,
            code,
            -1 if raw is None else len(raw),
            excerpt("; ".join(reasons)),
        )
        return asyncio.ensure_future(self._deliver(raw, reasons, code, step, topic, partition, offset, failed_at))

    async def _deliver(
        self,
        raw: bytes | None,
        reasons: list[str],
        code: str,
        step: str,
        topic: str,
        partition: int,
        offset: int,
        failed_at: datetime,
    ) -> None:
        """Send the bounded entry; if it is refused, the minimal one (see the module's doc)."""
        where = {"step": step, "topic": topic, "partition": partition, "offset": offset, "failed_at": failed_at}
        redactor = self._redactor
        try:
            entry = dlq_entry(
                raw,
                reasons,
                redactor=redactor,
                reason_code=code,
                max_raw_bytes=self._max_raw_bytes,
                max_reason_chars=self._max_reason_chars,
                **where,
            )
            await self._outbox.deliver(self._topic, (partition, None, entry))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any refusal of this entry: fall back
            log.warning(
                "dead-letter entry for %s[%d]@%d refused (%s); sending the minimal entry",
                topic,
                partition,
                offset,
                excerpt(f"{type(exc).__name__}: {exc}"),
            )
            minimal = minimal_dlq_entry(raw, redactor=redactor, reason_code=code, **where)
            await self._outbox.deliver(self._topic, (partition, None, minimal))
