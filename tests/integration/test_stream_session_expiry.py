"""Idle sessions expire on the real broker and worker: tombstones on the changelog, users
who return after their entry expired get the batch fold's features, and the worker's
restore keeps only the live entries. (A restarted worker restoring its table is
test_stream_parity.py's restart test, which goes through the same restore.)"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from types import SimpleNamespace

import pytest

from shared.features import SESSION_FEATURES
from shared.pseudonymize import pseudonymize
from stream.replay import replay
from stream.sessions import remembered_features
from stream.topics import changelog_topic
from tests.integration import kit
from tests.reference_features import fold_user_events

pytestmark = pytest.mark.integration


def test_expired_sessions_leave_tombstones_returning_users_get_batch_features_and_a_restore_keeps_live_ones(
    stream_env, taobao_events, tmp_path
):
    env = {**stream_env, "SHOPFLOW_STREAM__SESSION_WATERMARK_EVENTS": "10"}  # small partitions here
    settings = kit.settings_from(env)
    key = settings.pseudonymization_key.get_secret_value().encode()
    port = int(env["SHOPFLOW_STREAM__METRICS_PORT"])
    template, t0 = taobao_events[0], taobao_events[0]["ts"]

    def event(n: int, user: str, at: timedelta) -> dict:
        return {**template, "event_id": f"x{n}", "user_id": user, "session_id": None, "ts": t0 + at}

    # Early users, then two hours later other users: the early ones' entries expire.
    early = [event(i, f"early{i}", timedelta(seconds=3 * i)) for i in range(120)]
    late = [event(1000 + i, f"late{i}", timedelta(hours=2, seconds=2 * i)) for i in range(300)]
    # Then early users return (a new session) and late ones continue theirs.
    back = [event(2000 + i, f"early{i}", timedelta(hours=2, minutes=20)) for i in range(40)]
    back += [event(3000 + i, f"late{i}", timedelta(hours=2, minutes=12)) for i in range(40)]

    def scored() -> float:
        return kit.metric_value(kit.metrics_text(port), "shopflow_stream_scored_total")

    worker = kit.start_worker(env, tmp_path / "worker.log")
    try:
        kit.wait_serving(port, worker)
        replay(early + late, settings, speed=None, progress=False)
        kit.wait_for(lambda: scored() >= len(early + late), 60, what="the first events scored")
        page = kit.metrics_text(port)
        assert kit.metric_value(page, "shopflow_stream_sessions_expired_total") == len(early)
        assert kit.metric_value(page, "shopflow_stream_session_entries") == len(late)
        replay(back, settings, speed=None, progress=False)
        kit.wait_for(lambda: scored() >= len(early + late + back), 60, what="the returning users scored")
    finally:
        assert kit.stop_worker(worker) == 0

    # The changelog: each early user's entry, then its tombstone (the embedded broker
    # compacts nothing, so both stay).
    changelog = kit.read_topic(settings, changelog_topic(settings), expect=2 * len(early) + len(late), timeout=10)
    pseudonym = {u: pseudonymize(u, "user", key=key) for u in {e["user_id"] for e in early + late}}
    tombstoned = [json.loads(k) for k, v in changelog if v is None]
    assert sorted(tombstoned) == sorted(pseudonym[e["user_id"]] for e in early)

    # Every event's features are the batch fold's: the returning users start a new session.
    online: dict[str, dict] = {}
    for k, v in changelog:
        if v is not None:
            online.update(remembered_features(json.loads(v), json.loads(k)))
    by_user: dict[str, list[dict]] = {}
    for e in early + late + back:
        by_user.setdefault(e["user_id"], []).append({**e, "user_id": pseudonym[e["user_id"]]})
    expected = {}
    for events in by_user.values():
        expected.update(zip((e["event_id"] for e in events), fold_user_events(events)))
    assert {online[e["event_id"]]["session_event_index"] for e in back[:40]} == {0}  # returned: a new session
    assert {online[e["event_id"]]["session_event_index"] for e in back[40:]} == {1}  # continued
    mismatches = [
        (e["event_id"], name, expected[e["event_id"]][name], online[e["event_id"]][name])
        for e in early + late + back
        for name in SESSION_FEATURES.names
        if expected[e["event_id"]][name] != online[e["event_id"]][name]
    ]
    assert not mismatches, mismatches[:5]

    # A restore reads the whole log and keeps the live entries only: the returned early
    # users and the late ones, as the worker held them.
    restored = asyncio.run(_restore(settings))
    assert set(restored) == {pseudonym[u] for u in {e["user_id"] for e in late + back}}
    held: dict[str, dict] = {}
    for k, v in changelog:
        if v is None:
            del held[json.loads(k)]
        else:
            held[json.loads(k)] = json.loads(v)
    assert restored == held


async def _restore(settings) -> dict:
    """The session changelog restored by the worker's restorer, in this process."""
    import aiokafka
    from aiokafka.structs import TopicPartition

    from stream.expiry import SessionExpiry
    from stream.metrics import WorkerMetrics
    from stream.restore import SessionRestorer
    from stream.transport import confirmed_end_offsets

    def consumer():
        return aiokafka.AIOKafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers, enable_auto_commit=False)

    topic = changelog_topic(settings)
    tps = [TopicPartition(topic, p) for p in range(settings.kafka.partitions)]
    probe = consumer()
    await probe.start()
    try:
        listed = await probe.end_offsets(tps)
    finally:
        await probe.stop()
    ends = await confirmed_end_offsets(consumer(), listed, 10)
    table = SimpleNamespace(data={})
    expiry = SessionExpiry(settings.stream.session_retention_seconds * 1000, settings.stream.session_watermark_events)
    done = await SessionRestorer(table, expiry, WorkerMetrics()).restore(
        consumer, {tp: (0, ends[tp] - 1) for tp in tps}
    )
    assert done == {tp: ends[tp] - 1 for tp in tps}
    return table.data
