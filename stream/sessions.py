"""One user's entry in the worker's session table: the shared fold's state plus a compact
memory of the user's last events.

Delivery is at least once, so after a crash the worker reads again the events it had
folded but not committed. The memory lets such an event get the features it had the
first time instead of being folded into the session twice. It is kept small because
the whole entry goes to the table's changelog each time it changes (once per user per
micro-batch): each remembered event is one row of numbers, and its history lists are
rebuilt from `trail`, the user's last event types, items and categories.

    entry = {"v": 2,
             "state": SessionState,                      # shared.features
             "recent": [[event_id, session_start_ms, *SCALAR_FEATURES values], ...],
             "trail": [[event_type, item, category], ...]}

    entry, features, replayed = fold(entry, record)     # entry updated in place
    remembered_features(entry, user_id)                 # {event_id: features}
    key, value = changelog_record(user_id, entry)       # the table changelog's bytes
    key, None = tombstone_record(user_id)                # the entry removed (stream.expiry)
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from typing import Any

import orjson

from shared.features import HISTORY_LENGTH, SESSION_FEATURES, session_step

ENTRY_VERSION = 2
# How many of a user's last events are remembered by id. Events read again after a
# crash are those since the last commit (about a second of the stream).
RECENT_EVENTS_KEPT = 32
# The trail reaches HISTORY_LENGTH events further back than the memory, so the history
# of the oldest remembered event can be rebuilt.
TRAIL_KEPT = RECENT_EVENTS_KEPT + HISTORY_LENGTH
# The session features that are numbers, in schema order: one remembered row.
SCALAR_FEATURES: tuple[str, ...] = tuple(f.name for f in SESSION_FEATURES.fields if f.type in ("int64", "float64"))
_SCALAR_VALUES = operator.itemgetter(*SCALAR_FEATURES)
_HISTORY_LISTS = ("history_event_types", "history_item_ids", "history_category_ids")
_INDEX = 2 + SCALAR_FEATURES.index("session_event_index")
_EVENT_ID = operator.itemgetter(0)


def new_entry() -> dict[str, Any]:
    return {"v": ENTRY_VERSION, "state": None, "recent": [], "trail": []}


def _upgraded(entry: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(a current entry, features remembered by an older worker) of any stored entry.

    The first entry format remembered whole feature dicts: {"state", "recent":
    [[event_id, features]]}. Its state is the current one; its history seeds the trail.
    """
    if entry.get("v") == ENTRY_VERSION:
        return entry, {}  # type: ignore[return-value]
    state = entry.get("state")
    legacy = {eid: dict(features) for eid, features in entry.get("recent") or []}
    trail = [list(h) for h in state["history"]] if state else []
    return {"v": ENTRY_VERSION, "state": state, "recent": [], "trail": trail}, legacy


def _features(entry: Mapping[str, Any], position: int, user_id: str) -> dict[str, Any]:
    """The features of the remembered event at `position` in entry["recent"]."""
    recent, trail = entry["recent"], entry["trail"]
    row = recent[position]
    features: dict[str, Any] = {"session_key": f"{user_id}:{row[1]}"}
    features.update(zip(SCALAR_FEATURES, row[2:]))
    at = len(trail) - len(recent) + position  # this event's own place in the trail
    history = trail[max(0, at - min(HISTORY_LENGTH, row[_INDEX])) : at]
    for k, name in enumerate(_HISTORY_LISTS):
        features[name] = [h[k] for h in history]
    return features


def fold(
    entry: Mapping[str, Any] | None, record: Mapping[str, Any], features: dict[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """Fold one validated, pseudonymized event into the user's entry.

    Returns (entry, the event's session features, replayed): `replayed` says the event id
    was remembered and its first features were returned, the state left as it was. The
    entry is updated in place (a new one is made for None or an older format).
    `features`: a dict to write the features into instead of a new one.
    """
    entry, legacy = _upgraded(entry) if entry else (new_entry(), {})
    event_id = record["event_id"]
    recent = entry["recent"]
    if event_id in map(_EVENT_ID, recent):
        position = len(recent) - 1 - [row[0] for row in reversed(recent)].index(event_id)
        return entry, _into(features, _features(entry, position, record["user_id"])), True
    if event_id in legacy:
        return entry, _into(features, legacy[event_id]), True

    state, features = session_step(entry["state"], record, features)
    entry["state"] = state
    recent.append([event_id, state["session_start_ms"], *_SCALAR_VALUES(features)])
    if len(recent) > RECENT_EVENTS_KEPT:
        del recent[0]
    trail = entry["trail"]
    trail.append(state["history"][-1])
    if len(trail) > TRAIL_KEPT:
        del trail[0]
    return entry, features, False


def _into(features: dict[str, Any] | None, remembered: dict[str, Any]) -> dict[str, Any]:
    if features is None:
        return remembered
    features.update(remembered)
    return features


def remembered_features(entry: Mapping[str, Any], user_id: str) -> dict[str, dict[str, Any]]:
    """{event_id: features} of every event the entry remembers (tests and tools)."""
    current, legacy = _upgraded(entry)
    return {**legacy, **{row[0]: _features(current, i, user_id) for i, row in enumerate(current["recent"])}}


def changelog_record(user_id: str, entry: Mapping[str, Any]) -> tuple[bytes, bytes]:
    """(key, value) of the entry on the table's changelog: what Faust's json codec writes
    for `table[user_id] = entry` (tested equal), so Faust reads it back when it recovers
    the table. orjson takes a fifth of the standard library's time on these entries."""
    return orjson.dumps(user_id), orjson.dumps(entry)


def tombstone_record(user_id: str) -> tuple[bytes, None]:
    """(key, None): the changelog record that removes the user's entry (Faust reads a
    null value as a deletion when it recovers the table, and compaction drops the key)."""
    return orjson.dumps(user_id), None


def last_event_ms(entry: Mapping[str, Any]) -> int | None:
    """Epoch millis of the last event folded into a stored entry (None: no event yet)."""
    state = entry.get("state")
    return None if not state else state["last_ts_ms"]
