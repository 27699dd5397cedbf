"""Idle session entries expire (`stream.expiry`) without changing any event's features, by
a watermark one outlier cannot move; the bulk restore keeps only live entries."""

from __future__ import annotations

import random
from collections import namedtuple
from datetime import datetime, timedelta, timezone

import orjson
import pytest

from shared.errors import ConfigError
from shared.features import SESSION_GAP_SECONDS
from stream import sessions
from stream.expiry import SessionExpiry, Watermark
from stream.restore import apply_records, decode_pending
from tests.reference_features import fold_user_events

T0 = datetime(2017, 11, 26, 1, tzinfo=timezone.utc)
MS0 = int(T0.timestamp() * 1000)
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
Record = namedtuple("Record", "key value")


def test_the_watermark_waits_for_a_full_window_then_takes_a_low_quantile():
    mark = Watermark(window=100)
    mark.observe(range(MS0, MS0 + 99))
    assert mark.advance() is None
    mark.observe([MS0 + 99])
    assert mark.advance() == MS0 + 9  # the 10th lowest of the last 100
    mark.observe([MS0] * 20)  # late events never move it back
    assert mark.advance() == MS0 + 9


def test_one_event_a_day_ahead_does_not_move_the_watermark_nor_a_burst_of_them():
    mark = Watermark(window=100)
    mark.observe(range(MS0, MS0 + 100))
    before = mark.advance()
    mark.observe([MS0 + DAY_MS])
    assert mark.advance() == before + 1  # the window moved by one ordinary event
    mark.observe([MS0 + DAY_MS] * 80)
    assert mark.advance() < MS0 + HOUR_MS


def test_the_watermark_is_the_running_best_low_quantile_of_the_last_window_times():
    rng = random.Random(5)
    for _ in range(20):
        mark, seen, best = Watermark(window=10), [], None
        for _ in range(60):
            batch = [rng.randint(0, 10**6) for _ in range(rng.randint(0, 25))]  # some longer than the window
            seen += batch
            mark.observe(batch)
            if len(seen) >= 10:
                low = sorted(seen[-10:])[0]  # the 10th percentile of 10 times
                best = low if best is None else max(best, low)
            assert mark.advance() == best


def _steady(expiry: SessionExpiry, partition: int, users: int, start_ms: int, step_ms: int) -> int:
    """Events of `users` users one after another, `step_ms` apart; returns the last time."""
    ts = start_ms
    for i in range(users):
        ts += step_ms
        expiry.touch(partition, f"steady{i}", ts)
    return ts


def test_an_entry_expires_once_the_watermark_passes_its_last_event_by_the_retention():
    expiry = SessionExpiry(retention_ms=HOUR_MS, window=50)
    expiry.touch(0, "idle", MS0)
    _steady(expiry, 0, 200, MS0, 1000)  # 200 s of other users
    assert expiry.expired() == []
    expiry.touch(0, "active", MS0 + 20 * 60_000)
    end = _steady(expiry, 0, 50, MS0 + HOUR_MS + 5 * 60_000, 1000)
    expired = expiry.expired()
    assert (0, "idle") in expired
    assert (0, "active") not in expired
    assert expiry.watermark(0) < end  # a low quantile of the recent times
    # another partition has its own watermark: nothing expires there
    expiry.touch(1, "elsewhere", MS0)
    assert all(p == 0 for p, _ in expiry.expired())


def test_a_single_event_a_day_ahead_does_not_expire_the_partition():
    expiry = SessionExpiry(retention_ms=HOUR_MS, window=50)
    end = _steady(expiry, 0, 100, MS0, 1000)
    assert expiry.expired() == []
    expiry.touch(0, "clock-skewed", end + DAY_MS)
    expiry.touch(0, "next", end + 1000)
    assert expiry.expired() == []
    assert expiry.live() == 102


def test_the_retention_covers_at_least_the_session_gap():
    with pytest.raises(ConfigError):
        SessionExpiry(retention_ms=(SESSION_GAP_SECONDS - 1) * 1000, window=50)


def _event(i: int, user: str, ts: datetime, rng: random.Random) -> dict:
    return {
        "event_id": f"e{i}",
        "user_id": user,
        "session_id": None,
        "item_id": f"i{rng.randint(0, 9)}",
        "event_type": rng.choice(["view", "view", "add_to_cart", "favorite"]),
        "ts": ts,
        "query": None,
        "category_id": rng.choice(["c1", "c2", None]),
    }


def test_features_with_expiry_are_the_batch_features_and_users_return_after_expiry():
    """Four hours of a partition, users coming back after minutes or hours, folded as the
    worker does (one entry per user, expired entries removed per micro-batch); every
    event's features are the batch fold's (`fold_user_events`) of the user's events."""
    rng = random.Random(11)
    expiry = SessionExpiry(retention_ms=HOUR_MS, window=50)
    table: dict[str, dict] = {}
    events, features, expired_users = [], {}, set()
    ts = T0
    for i in range(6000):
        ts += timedelta(seconds=rng.randint(0, 5))
        events.append(_event(i, f"u{rng.randint(0, 400)}", ts, rng))
    for start in range(0, len(events), 100):  # micro-batches
        changed = {}
        for event in events[start : start + 100]:
            user = event["user_id"]
            if user in expired_users and user not in table:
                expired_users.discard(user)
                event["returned"] = True
            entry, feats, replayed = sessions.fold(table.get(user), event)
            assert not replayed
            table[user] = changed[user] = entry
            features[event["event_id"]] = feats
        for user, entry in changed.items():
            expiry.touch(0, user, sessions.last_event_ms(entry))
        for _, user in expiry.expired():
            del table[user]
            expired_users.add(user)
    by_user: dict[str, list[dict]] = {}
    for event in events:
        by_user.setdefault(event["user_id"], []).append(event)
    for user_events in by_user.values():
        expected = fold_user_events(user_events)
        assert [features[e["event_id"]] for e in user_events] == expected
    # The test has teeth only if many users came back after their entry expired.
    assert sum(1 for e in events if e.get("returned")) >= 50
    assert len(table) < 400  # and the table forgot the idle ones


def test_restored_entries_seed_the_watermark_and_already_expired_ones_are_left_out():
    expiry = SessionExpiry(retention_ms=HOUR_MS, window=50)
    last = {f"recent{i}": MS0 + 3 * HOUR_MS + i * 1000 for i in range(100)}
    last["old"] = MS0
    skipped = expiry.restored(2, last)
    assert skipped == ["old"]
    assert expiry.live() == 100
    assert expiry.expired() == [(2, "old")]  # its tombstone goes out with the next batch


def test_a_restore_applies_changelog_records_in_order_and_honours_tombstones():
    def entry(ts_ms: int) -> bytes:
        return orjson.dumps({"v": 2, "state": {"last_ts_ms": ts_ms}, "recent": [], "trail": []})

    records = [
        Record(*sessions.changelog_record("a", orjson.loads(entry(1)))),
        Record(b'"b"', entry(2)),
        Record(*sessions.tombstone_record("a")),
        Record(b'"b"', entry(3)),
        Record(*sessions.tombstone_record("c")),  # an entry this worker never restored
    ]
    table: dict = {"c": {"v": 2}, "d": {"v": 2}}  # entries restored before (a rebalance)
    pending: dict = {}
    apply_records(table, records, pending)
    assert decode_pending(table, pending) == {"b": 3}
    assert table == {"b": orjson.loads(entry(3)), "d": {"v": 2}}
