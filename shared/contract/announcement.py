"""Model announcements on `models.announce`: written by promotion, read by every worker.

    value = announcement_value(task="propensity", version=3, alias="champion", reason="...", announced_at=now)
    task, version = parse_announcement(value)    # (None, None) for what it does not say

An announcement only makes a worker ask the registry now instead of at its next poll;
the registry alias stays the truth. So the reader never fails: what it cannot read is
None, and the worker asks the registry anyway.
"""

from __future__ import annotations

import json
from datetime import datetime

from shared.contract import WIRE_VERSION, WIRE_VERSION_KEY
from shared.schemas import format_timestamp


def announcement_value(task: str, version: int, *, alias: str, reason: str, announced_at: datetime) -> bytes:
    """The announcement's wire bytes: `alias` of `task` now points at `version`."""
    payload = {
        WIRE_VERSION_KEY: WIRE_VERSION,
        "task": task,
        "version": int(version),
        "alias": alias,
        "reason": reason,
        "announced_at": format_timestamp(announced_at),
    }
    return json.dumps(payload).encode()


def parse_announcement(value: bytes | None) -> tuple[str | None, int | None]:
    """(task, version) of an announcement of any wire version; None for what it does not say (or not clearly)."""
    try:
        payload = json.loads(value or b"")
    except (ValueError, UnicodeDecodeError):
        return None, None
    if not isinstance(payload, dict):
        return None, None
    task, version = payload.get("task"), payload.get("version")
    return (
        task if isinstance(task, str) else None,
        version if isinstance(version, int) and not isinstance(version, bool) else None,
    )
