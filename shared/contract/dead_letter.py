"""Dead-letter entries on `clicks.dlq`: written by the stream worker, read by the fold.

    redactor = Redactor(key)                      # once per worker (settings.pseudonymization_key)
    value = dlq_entry(raw, ["not JSON"], redactor=redactor, step="parse_validate", reason_code="not_json",
                      topic="clicks", partition=0, offset=7, failed_at=now, max_raw_bytes=65536)
    row = dlq_row(value, Position("clicks.dlq", 0, 3), redactor=redactor, batch_id="...", folded_at=now,
                  max_raw_bytes=65536)

An entry holds no raw identifier: raw identifiers stop at the input topic. Its `raw` is
the record's redacted form (`shared.redaction`) as JSON text: a value that parses keeps
its declared fields with personal ones pseudonymized and unknown ones dropped
(`raw_encoding` "redacted-json"); one that does not parse (not UTF-8, not JSON, or cut at
`max_raw_bytes`) keeps only its size, keyed hash and a redacted outline
("redacted-summary"). Reasons quote no sender value (`shared.redaction.safe_failure_reason`).

An entry is bounded whatever the record: the redacted form (declared fields, each cut),
at most MAX_DLQ_REASONS reasons each cut at `max_reason_chars`, and the failure's
envelope: the step, a stable reason code, the input record's position, when, and the
whole raw value's size and keyed hash `raw_hmac_sha256` (HMAC-SHA256 with the
pseudonymization key, so a cut entry still identifies it and a small value cannot be
found by hashing guesses). When even that entry is refused, the worker sends
`minimal_dlq_entry`: the envelope without `raw`.

The fold reads entries tolerantly: fields a newer or older worker adds or omits
(reason_code, raw_size, raw_hmac_sha256, raw_truncated, source, wire_version) are null
when absent; an entry of wire version 1 or 2 (raw bytes as latin-1 text, an unkeyed
`raw_sha256`, reasons that may quote values) is redacted as it is folded
(`shared.redaction.redact_legacy_dlq_entry`); a value that is not an entry at all is
quarantined as unreadable, summarized.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from shared.contract import WIRE_VERSION, WIRE_VERSION_KEY, wire_version_of
from shared.contract.folded import Position, quarantine_row, unreadable_row
from shared.redaction import REDACTED_ENCODINGS, Redactor, redact_legacy_dlq_entry
from shared.schemas import format_timestamp, parse_timestamp

# At most this many reasons go into one dead-letter entry (a record can have many fields).
MAX_DLQ_REASONS = 20
# The quarantine reason of a dead-letter value the fold cannot read.
UNREADABLE_DLQ = "unreadable_dlq_entry"
# The first wire version whose entries are written redacted.
REDACTED_SINCE_VERSION = 3


def _bounded_reasons(reasons: list[str], max_chars: int) -> list[str]:
    kept = [r if len(r) <= max_chars else r[: max_chars - 3] + "..." for r in reasons[:MAX_DLQ_REASONS]]
    if len(reasons) > MAX_DLQ_REASONS:
        kept.append(f"... and {len(reasons) - MAX_DLQ_REASONS} more")
    return kept


def _failure_envelope(
    raw: bytes | None,
    redactor: Redactor,
    step: str,
    reason_code: str,
    topic: str,
    partition: int,
    offset: int,
    failed_at: datetime,
) -> dict[str, Any]:
    """What every entry says of the failure: which step, why (code), the input's position,
    when, and the raw value's size and keyed hash."""
    return {
        "step": step,
        "reason_code": reason_code,
        "source": {"topic": topic, "partition": partition, "offset": offset},
        "failed_at": format_timestamp(failed_at),
        "raw_size": None if raw is None else len(raw),
        "raw_hmac_sha256": None if raw is None else redactor.keyed_hash(raw),
    }


def dlq_entry(
    raw: bytes | None,
    reasons: list[str],
    *,
    redactor: Redactor,
    step: str,
    topic: str,
    partition: int,
    offset: int,
    failed_at: datetime,
    reason_code: str,
    max_raw_bytes: int,
    max_reason_chars: int = 512,
) -> bytes:
    """A bounded dead-letter entry: the redacted form of the raw bytes (those past
    `max_raw_bytes` are not read: a cut value is summarized), why (each reason cut at
    `max_reason_chars`; the caller's reasons quote no value), and the failure's envelope."""
    truncated = raw is not None and len(raw) > max_raw_bytes
    text, encoding = redactor.dead_letter_raw(None if raw is None else raw[:max_raw_bytes], truncated=truncated)
    entry = {
        WIRE_VERSION_KEY: WIRE_VERSION,
        "raw": text,
        "raw_encoding": encoding,
        "raw_truncated": truncated,
        "reasons": _bounded_reasons([str(r) for r in reasons], max_reason_chars),
        **_failure_envelope(raw, redactor, step, reason_code, topic, partition, offset, failed_at),
    }
    return json.dumps(entry, separators=(",", ":")).encode("utf-8")


def minimal_dlq_entry(
    raw: bytes | None,
    *,
    redactor: Redactor,
    step: str,
    reason_code: str,
    topic: str,
    partition: int,
    offset: int,
    failed_at: datetime,
) -> bytes:
    """The entry sent when the full one could not be: where, size, keyed hash, code; no `raw`."""
    entry = {
        WIRE_VERSION_KEY: WIRE_VERSION,
        "raw": None,
        "raw_encoding": None,
        "raw_truncated": raw is not None,
        "reasons": [],
        **_failure_envelope(raw, redactor, step, reason_code, topic, partition, offset, failed_at),
    }
    return json.dumps(entry, separators=(",", ":")).encode("utf-8")


def dlq_row(
    value: bytes | None,
    pos: Position,
    *,
    redactor: Redactor,
    max_raw_bytes: int,
    batch_id: str,
    folded_at: datetime,
) -> dict[str, Any]:
    """One quarantine-table row from a dead-letter entry of any version; never raises.
    An entry written before entries were redacted is redacted here (`redactor`: the
    workers' key). `max_raw_bytes` bounds what is read of a value that is not an entry
    at all (it is kept only in its redacted form)."""
    try:
        entry = json.loads((value or b"").decode("utf-8"))
        if not isinstance(entry, dict):
            raise ValueError(f"expected a JSON object, got {type(entry).__name__}")
    except (UnicodeDecodeError, ValueError) as exc:
        # The exception's text may quote the value's bytes: only its type is kept.
        return unreadable_row(
            value,
            pos,
            redactor=redactor,
            reason=UNREADABLE_DLQ,
            detail=f"the dead-letter entry itself is unreadable ({type(exc).__name__})",
            max_raw_bytes=max_raw_bytes,
            batch_id=batch_id,
            folded_at=folded_at,
        )
    version = wire_version_of(entry)
    if version is None or version < REDACTED_SINCE_VERSION:
        entry = redact_legacy_dlq_entry(entry, redactor)
    elif entry.get("raw_encoding") not in REDACTED_ENCODINGS:
        entry = {**entry, "raw": None}  # not a form this reader knows to be safe
    source = entry.get("source")
    source = source if isinstance(source, dict) else {}
    try:
        source_pos = Position(str(source["topic"]), int(source["partition"]), int(source["offset"]))
    except (KeyError, TypeError, ValueError):
        source_pos = None
    reasons = entry.get("reasons")
    reasons = [str(r) for r in reasons] if isinstance(reasons, list) else ([] if reasons is None else [str(reasons)])
    step = None if entry.get("step") is None else str(entry["step"])
    code = None if entry.get("reason_code") is None else str(entry["reason_code"])
    try:
        failed_at = None if entry.get("failed_at") in (None, "") else parse_timestamp(entry["failed_at"])
    except (ValueError, TypeError, OverflowError, OSError):
        failed_at = None
    raw_size = entry.get("raw_size")
    return quarantine_row(
        reason=code or step or "unknown",
        detail="; ".join(reasons),
        record=entry.get("raw"),
        step=step,
        reason_code=code,
        raw_size=raw_size if isinstance(raw_size, int) and not isinstance(raw_size, bool) else None,
        raw_hmac_sha256=entry.get("raw_hmac_sha256"),
        raw_truncated=entry.get("raw_truncated") if isinstance(entry.get("raw_truncated"), bool) else None,
        source=source_pos,
        failed_at=failed_at,
        pos=pos,
        batch_id=batch_id,
        folded_at=folded_at,
        wire_version=version,
    )
