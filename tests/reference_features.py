"""The session features of one user's events, folded in plain Python: the reference the
stream's session table (`stream.sessions`) and the Spark fold (`batch.featurize.sessions`)
are checked against. Only tests use it: both paths run `shared.features.session_step`.

    features = fold_user_events(events_of_one_user_sorted_by_ts_and_id)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.features import SessionState, session_step


def fold_user_events(events: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Session features of one user's events, which must be sorted by (ts, event_id)."""
    state: SessionState | None = None
    out = []
    for event in events:
        state, features = session_step(state, event)
        out.append(features)
    return out
