"""The session table's entry: the shared fold plus a compact memory for replayed events."""

from __future__ import annotations

import copy
import json
import random
from datetime import datetime, timedelta, timezone

from shared.features import HISTORY_LENGTH, SESSION_GAP_SECONDS, session_step
from stream import sessions
from tests.reference_features import fold_user_events

T0 = datetime(2017, 11, 26, 1, tzinfo=timezone.utc)


def _events(n: int, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    ts, out = T0, []
    for i in range(n):
        # Mostly seconds apart, sometimes a gap that starts a new session.
        ts += timedelta(seconds=SESSION_GAP_SECONDS + 5 if rng.random() < 0.08 else rng.randint(0, 90))
        out.append(
            {
                "event_id": f"e{i}",
                "user_id": "u1",
                "session_id": None,
                "item_id": f"i{rng.randint(0, 6)}",
                "event_type": rng.choice(["view", "view", "view", "add_to_cart", "favorite", "purchase"]),
                "ts": ts,
                "query": None,
                "category_id": rng.choice(["c1", "c2", None]),
            }
        )
    return out


def test_fold_gives_the_batch_features_and_remembers_the_last_events_exactly():
    events = _events(150)
    expected = fold_user_events(copy.deepcopy(events))
    entry, seen = None, []
    for event in events:
        entry, features, replayed = sessions.fold(entry, event)
        assert not replayed
        seen.append(features)
        entry = json.loads(json.dumps(entry))  # how the table's changelog stores it
    assert seen == expected
    remembered = sessions.remembered_features(entry, "u1")
    assert list(remembered) == [e["event_id"] for e in events[-sessions.RECENT_EVENTS_KEPT :]]
    for event, features in zip(events[-sessions.RECENT_EVENTS_KEPT :], expected[-sessions.RECENT_EVENTS_KEPT :]):
        assert remembered[event["event_id"]] == features
    # The test has teeth only if remembered events have full histories across sessions.
    assert any(len(f["history_item_ids"]) == HISTORY_LENGTH for f in remembered.values())
    assert any(f["session_event_index"] == 0 for f in remembered.values())


def test_a_replayed_event_gets_its_first_features_and_leaves_the_state_alone():
    events = _events(40, seed=3)
    entry, first = None, {}
    for event in events:
        entry, features, _ = sessions.fold(entry, event)
        first[event["event_id"]] = features
    before = json.dumps(entry)
    for event in events[-sessions.RECENT_EVENTS_KEPT :]:
        entry, features, replayed = sessions.fold(entry, event)
        assert replayed and features == first[event["event_id"]]
    assert json.dumps(entry) == before
    # An event older than the memory is folded again, as a new event.
    _, _, replayed = sessions.fold(entry, events[0])
    assert not replayed


def test_the_entry_stays_small():
    entry = None
    for event in _events(500, seed=5):
        entry, _, _ = sessions.fold(entry, event)
    assert len(entry["recent"]) == sessions.RECENT_EVENTS_KEPT
    assert len(entry["trail"]) == sessions.TRAIL_KEPT
    assert len(json.dumps(entry)) < 6_000


def test_an_entry_of_the_first_format_is_upgraded_and_its_memory_used():
    events = _events(12, seed=11)
    state, legacy_recent = None, []
    for event in events[:10]:
        state, features = session_step(copy.deepcopy(state), event)
        legacy_recent.append([event["event_id"], features])
    legacy = json.loads(json.dumps({"state": state, "recent": legacy_recent}))
    entry, features, replayed = sessions.fold(copy.deepcopy(legacy), events[9])
    assert replayed and features == legacy_recent[9][1]
    entry, features, replayed = sessions.fold(copy.deepcopy(legacy), events[10])
    assert not replayed and entry["v"] == sessions.ENTRY_VERSION
    assert features == fold_user_events(copy.deepcopy(events))[10]
    entry, features, _ = sessions.fold(entry, events[11])
    assert features == fold_user_events(copy.deepcopy(events))[11]
    assert sessions.remembered_features(entry, "u1")[events[11]["event_id"]] == features


def test_changelog_records_are_what_faust_writes_for_the_table():
    import faust

    app = faust.App("changelog-codec", broker="kafka://127.0.0.1:1")
    table = app.Table("sessions", default=None, partitions=4, key_type=str)
    topic = table.changelog_topic
    entry = None
    for event in _events(50, seed=2):
        entry, _, _ = sessions.fold(entry, {**event, "user_id": "5f0c9e\u00e9"})
    key, value = sessions.changelog_record("5f0c9e\u00e9", entry)
    # Pseudonyms are hex: byte for byte Faust's key. Any other text decodes the same.
    pseudonym = "0123456789abcdef0123456789abcdef"
    assert sessions.changelog_record(pseudonym, entry)[0] == app.serializers.dumps_key(
        topic.key_type, pseudonym, serializer=table.key_serializer
    )
    assert json.loads(value) == json.loads(
        app.serializers.dumps_value(topic.value_type, entry, serializer=table.value_serializer)
    )
    # Faust's recovery reads them with its own codec.
    assert app.serializers.loads_key(topic.key_type, key, serializer=table.key_serializer) == "5f0c9e\u00e9"
    assert app.serializers.loads_value(topic.value_type, value, serializer=table.value_serializer) == json.loads(value)
