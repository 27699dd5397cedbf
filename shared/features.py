"""Feature code shared by the batch jobs and the stream worker: one implementation each.

Session features are a fold over one user's events in time order: `session_step(state,
event)` returns the event's features (computed from what came *before* it, so they are
point-in-time correct by construction) and the user's next state. Batch runs the fold
per user inside Spark (`applyInPandas`); the stream worker keeps the state in a Faust
table and calls the same function per event.

Item features are smoothed rates over an item's event counts; `item_rate_features`
works on scalars and on pandas columns alike, so batch applies it to whole partitions
and the stream to one snapshot row.

    state, feats = session_step(None, {"user_id": "u1", "item_id": "i9", ...})
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, TypedDict

import numpy as np

from shared.schemas import FieldSpec, RecordSchema

SESSION_GAP_SECONDS = 30 * 60
HISTORY_LENGTH = 8
# Beta prior for smoothed rates: an unseen item starts at the platform-wide base rate.
PRIOR_WEIGHT = 20.0
PRIOR_CART_RATE = 0.06
PRIOR_PURCHASE_RATE = 0.025


SESSION_FEATURES = RecordSchema(
    "session_features",
    (
        FieldSpec("session_key", "string", doc="user_id:session start millis"),
        FieldSpec("session_event_index", "int64"),
        FieldSpec("seconds_since_session_start", "float64"),
        FieldSpec("seconds_since_prev_event", "float64", doc="-1 for a session's first event"),
        FieldSpec("prior_views", "int64"),
        FieldSpec("prior_carts", "int64"),
        FieldSpec("prior_favorites", "int64"),
        FieldSpec("prior_purchases", "int64"),
        FieldSpec("prior_searches", "int64"),
        FieldSpec("prior_item_interactions", "int64"),
        FieldSpec("prior_category_interactions", "int64"),
        FieldSpec("distinct_items_before", "int64"),
        FieldSpec("hour_of_day", "int64"),
        FieldSpec("history_event_types", "string_list", doc=f"last {HISTORY_LENGTH} events"),
        FieldSpec("history_item_ids", "string_list"),
        FieldSpec("history_category_ids", "string_list"),
    ),
)

ITEM_FEATURES = RecordSchema(
    "item_rate_features",
    (
        FieldSpec("item_views", "float64"),
        FieldSpec("item_carts", "float64"),
        FieldSpec("item_purchases", "float64"),
        FieldSpec("item_cart_rate", "float64"),
        FieldSpec("item_purchase_rate", "float64"),
    ),
)


class SessionState(TypedDict):
    """What the fold remembers about one user between events: plain JSON-ready data, so
    the stream's session table stores it as is and the fold copies nothing per event."""

    session_start_ms: int
    last_ts_ms: int
    source_session_id: str | None
    type_counts: dict[str, int]
    item_counts: dict[str, int]
    category_counts: dict[str, int]
    history: list[list[str]]  # [event_type, item, category], the session's last events
    events_in_session: int


def new_session_state(session_start_ms: int = -1, source_session_id: str | None = None) -> SessionState:
    return {
        "session_start_ms": session_start_ms,
        "last_ts_ms": -1,
        "source_session_id": source_session_id,
        "type_counts": {},
        "item_counts": {},
        "category_counts": {},
        "history": [],
        "events_in_session": 0,
    }


def _millis(ts: datetime | int | float) -> int:
    if isinstance(ts, datetime):
        if ts.tzinfo is None:  # Spark hands naive UTC datetimes to pandas UDFs
            ts = ts.replace(tzinfo=timezone.utc)
        return int(round(ts.timestamp() * 1000))
    return int(ts)


def _starts_new_session(state: SessionState, ts_ms: int, source_session: str | None) -> bool:
    if state["last_ts_ms"] < 0:
        return True
    if source_session is not None and source_session != state["source_session_id"]:
        return True
    return ts_ms - state["last_ts_ms"] > SESSION_GAP_SECONDS * 1000


def session_step(
    state: SessionState | None, event: Mapping[str, Any], features: dict[str, Any] | None = None
) -> tuple[SessionState, dict[str, Any]]:
    """Fold one event into a user's state; returns (the state, this event's features).

    The state is updated in place (a new session gets a new one): the fold owns it, and
    a caller that needs the state as it was keeps a copy. `event` needs user_id, item_id,
    event_type and ts (datetime or epoch millis), and may have session_id and
    category_id. Events must arrive in time order per user. `features`: a dict to write
    the features into (the stream writes them into the event's scoring record) instead
    of a new one.
    """
    ts_ms = _millis(event["ts"])
    item = str(event["item_id"])
    category = event.get("category_id")
    category = None if category is None else str(category)
    source_session = event.get("session_id")

    if state is None or _starts_new_session(state, ts_ms, source_session):
        state = new_session_state(ts_ms, source_session)

    counts, items, categories, history = (
        state["type_counts"],
        state["item_counts"],
        state["category_counts"],
        state["history"],
    )
    in_session = state["events_in_session"]
    if features is None:
        features = {}
    features["session_key"] = f"{event['user_id']}:{state['session_start_ms']}"
    features["session_event_index"] = in_session
    features["seconds_since_session_start"] = (ts_ms - state["session_start_ms"]) / 1000.0
    features["seconds_since_prev_event"] = -1.0 if in_session == 0 else (ts_ms - state["last_ts_ms"]) / 1000.0
    features["prior_views"] = counts.get("view", 0)
    features["prior_carts"] = counts.get("add_to_cart", 0)
    features["prior_favorites"] = counts.get("favorite", 0)
    features["prior_purchases"] = counts.get("purchase", 0)
    features["prior_searches"] = counts.get("search", 0)
    features["prior_item_interactions"] = items.get(item, 0)
    features["prior_category_interactions"] = categories.get(category, 0) if category else 0
    features["distinct_items_before"] = len(items)
    # Whole hours since the epoch, mod 24: the UTC hour, without a datetime per event.
    features["hour_of_day"] = (ts_ms // 3_600_000) % 24
    if history:
        types, items_before, categories_before = (list(column) for column in zip(*history))
    else:
        types, items_before, categories_before = [], [], []
    features["history_event_types"] = types
    features["history_item_ids"] = items_before
    features["history_category_ids"] = categories_before

    kind = str(event["event_type"])
    counts[kind] = counts.get(kind, 0) + 1
    items[item] = items.get(item, 0) + 1
    if category:
        categories[category] = categories.get(category, 0) + 1
    history.append([kind, item, category or ""])
    if len(history) > HISTORY_LENGTH:
        del history[0]
    state["events_in_session"] = in_session + 1
    state["last_ts_ms"] = ts_ms
    return state, features


def smoothed_rate(positives: Any, total: Any, prior_rate: float) -> Any:
    """(positives + prior) / (total + prior weight): scalars or numpy/pandas columns."""
    return (np.asarray(positives, dtype="float64") + prior_rate * PRIOR_WEIGHT) / (
        np.asarray(total, dtype="float64") + PRIOR_WEIGHT
    )


def item_rate_features(views: Any, carts: Any, purchases: Any) -> dict[str, Any]:
    """Item features from event counts (as-of counts in training, a snapshot online)."""
    views_f = np.asarray(views, dtype="float64")
    return {
        "item_views": views_f,
        "item_carts": np.asarray(carts, dtype="float64"),
        "item_purchases": np.asarray(purchases, dtype="float64"),
        "item_cart_rate": smoothed_rate(carts, views, PRIOR_CART_RATE),
        "item_purchase_rate": smoothed_rate(purchases, views, PRIOR_PURCHASE_RATE),
    }
