"""A scored event read back from `clicks.scored`, checked against the contract: the wire
version this worker writes, its click event part by the click rules (`shared.click_rules`),
the fields scoring adds by SCORED_EVENT. The check raises on the first thing out of contract.

    scored = check_scored(wire)     # bytes, text or a decoded dict -> typed dict
"""

from __future__ import annotations

import json
import math
from typing import Any

from shared.click_rules import check_click
from shared.contract import WIRE_VERSION, WIRE_VERSION_KEY
from shared.schemas import CLICK_EVENT, SCORED_EVENT, parse_timestamp

SCORED_FIELDS = tuple(name for name in SCORED_EVENT.names if name not in CLICK_EVENT.names)


def check_scored(wire: bytes | str | dict[str, Any]) -> dict[str, Any]:
    """The typed scored event; ClickRejected for a click part the rules reject,
    AssertionError for a missing, unknown or mistyped scored field."""
    event = json.loads(wire) if isinstance(wire, (bytes, str)) else dict(wire)
    assert isinstance(event, dict), f"a scored event is a JSON object, got {type(event).__name__}"
    version = event.pop(WIRE_VERSION_KEY, None)
    assert version == WIRE_VERSION, f"{WIRE_VERSION_KEY}: expected {WIRE_VERSION}, got {version!r}"
    assert set(event) <= set(SCORED_EVENT.names), f"unknown fields: {sorted(set(event) - set(SCORED_EVENT.names))}"
    missing = [f.name for f in SCORED_EVENT.fields if f.required and event.get(f.name) in (None, "")]
    assert not missing, f"required fields missing: {missing}"
    click = check_click({name: event[name] for name in CLICK_EVENT.names if name in event})
    for name in ("model_name", "model_version"):
        assert isinstance(event[name], str), f"{name}: expected a string, got {type(event[name]).__name__}"
    score = event.get("score")
    assert score is None or (
        isinstance(score, (int, float)) and not isinstance(score, bool) and math.isfinite(score)
    ), f"score: expected a finite number or null, got {score!r}"
    snapshot = event.get("item_snapshot_version")
    assert snapshot is None or (type(snapshot) is int and snapshot >= 0), (
        f"item_snapshot_version: expected a Delta version or null, got {snapshot!r}"
    )
    return {
        **click,
        "model_name": event["model_name"],
        "model_version": event["model_version"],
        "score": None if score is None else float(score),
        "received_at": parse_timestamp(event["received_at"]),
        "scored_at": parse_timestamp(event["scored_at"]),
        "item_snapshot_version": snapshot,
    }
