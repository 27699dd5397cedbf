"""End to end on the real broker with the trained champion: every event is scored or
dead-lettered, exactly as the contracts say, and the metrics page accounts for them."""

from __future__ import annotations

import pytest

from shared.pseudonymize import pseudonymize
from shared.redaction import Redactor
from shared.schemas import to_wire
from stream.replay import replay
from tests.integration import kit
from tests.scored_events import check_scored

pytestmark = pytest.mark.integration

N_GOOD = 1500


def test_every_event_is_scored_or_dead_lettered(stream_env, champion, taobao_events, tmp_path):
    settings = kit.settings_from(stream_env)
    events = taobao_events[:N_GOOD]
    bad = [
        (b"u1", b"not json at all"),
        (b"u2", b'{"event_id": "x1", "user_id": "u2"}'),
        (b"u3", to_wire({**events[0], "event_id": "x2", "event_type": "teleport"})),
        (b"u4", to_wire({**events[1], "event_id": "x3", "ts": "yesterday"})),
        (b"u5", b"\xff\xfe\x00binary"),
    ]
    worker = kit.start_worker(stream_env, tmp_path / "worker.log")
    try:
        port = int(stream_env["SHOPFLOW_STREAM__METRICS_PORT"])
        kit.wait_serving(port, worker)
        sent = replay(events[: N_GOOD // 2], settings, speed=None, progress=False)
        kit.send_raw(settings, bad)
        sent += replay(events[N_GOOD // 2 :], settings, speed=None, progress=False)
        assert sent == N_GOOD

        scored = kit.json_values(kit.read_topic(settings, settings.kafka.scored_topic, expect=N_GOOD, timeout=90))
        dlq = kit.json_values(kit.read_topic(settings, settings.kafka.dlq_topic, expect=len(bad), timeout=30))
        page = kit.metrics_text(port)
        assert worker.poll() is None, "the worker must still be running"
    finally:
        kit.stop_worker(worker)

    # Every good event scored exactly once (no restarts here), nothing else scored.
    assert sorted(s["event_id"] for s in scored) == sorted(e["event_id"] for e in events)
    key = settings.pseudonymization_key.get_secret_value().encode()
    raw_users = {e["user_id"] for e in events}
    by_id = {e["event_id"]: e for e in events}
    assert {e["event_type"] for e in events} - {"view"}, "the slice needs events that are not views"
    for s in scored:
        check_scored(s)
        assert s["model_name"] == "shopflow-propensity"
        assert s["model_version"] == str(champion["version"])
        # Views are scored; the other events pass with a null score.
        if by_id[s["event_id"]]["event_type"] == "view":
            assert 0.0 <= s["score"] <= 1.0
        else:
            assert s["score"] is None
        assert s["user_id"] not in raw_users
    assert all(s["user_id"] == pseudonymize(by_id[s["event_id"]]["user_id"], "user", key=key) for s in scored)

    # Every bad record dead-lettered in its redacted form, with its keyed hash, reasons and origin.
    redactor = Redactor(key)
    assert sorted(d["raw_hmac_sha256"] for d in dlq) == sorted(redactor.keyed_hash(v) for _, v in bad)
    assert sorted(d["raw"] for d in dlq) == sorted(redactor.click_value_text(v) for _, v in bad)
    for d in dlq:
        assert d["reasons"] and d["step"] == "parse_validate"
        assert d["source"]["topic"] == settings.kafka.clicks_topic and d["source"]["offset"] >= 0
    reasons = {d["raw_hmac_sha256"]: d["reasons"] for d in dlq}
    assert any("event_type" in r for r in reasons[redactor.keyed_hash(bad[2][1])])
    assert any("required" in r for r in reasons[redactor.keyed_hash(bad[1][1])])

    assert kit.metric_value(page, "shopflow_stream_events_in_total") == N_GOOD + len(bad)
    assert kit.metric_value(page, "shopflow_stream_scored_total") == N_GOOD
    assert kit.metric_value(page, "shopflow_stream_dlq_total") == len(bad)
    assert kit.metric_value(page, "shopflow_stream_produce_to_scored_seconds_count") == N_GOOD
    assert kit.metric_value(page, "shopflow_stream_batch_size_sum") == N_GOOD
    assert "shopflow_stream_consumer_lag" in page and "shopflow_stream_last_commit_age_seconds" in page
