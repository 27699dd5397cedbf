"""Offline/online parity: the same events through the batch features (Spark, the batch
layer's `sessionize` and `item_click_stats`) and through the worker give the same
session features for every event and, with the same model, the same scores for views."""

from __future__ import annotations

import json
import math

import pytest

from shared.delta import read_arrow, write_table
from shared.features import ITEM_FEATURES, SESSION_FEATURES
from shared.predictor import load_predictor
from shared.pseudonymize import pseudonymize
from shared.registry import ModelRegistry
from shared.schemas import CLICK_EVENT
from stream.replay import replay
from stream.sessions import remembered_features
from stream.topics import changelog_topic
from tests.integration import kit

pytestmark = pytest.mark.integration


def _same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(a, (list, tuple)) or hasattr(a, "tolist"):
        return [str(x) for x in list(a)] == [str(x) for x in list(b)]
    return a == b


def _pseudonymized_clicks(spark, events: list[dict], key: bytes):
    """The events as the batch layer's silver clicks: a Spark frame, users pseudonymized."""
    # As silver holds them: user and session ids pseudonymized (shared.schemas.PERSONAL_FIELDS).
    rows = [
        {
            **e,
            "user_id": pseudonymize(e["user_id"], "user", key=key),
            "session_id": pseudonymize(e["session_id"], "session", key=key),
        }
        for e in events
    ]
    return spark.createDataFrame([tuple(r[n] for n in CLICK_EVENT.names) for r in rows], CLICK_EVENT.spark_schema())


def test_batch_and_stream_features_and_scores_agree(spark, stream_env, champion, taobao_events, tmp_path):
    from batch.featurize.sessions import sessionize
    from batch.featurize.training_sets import item_click_stats

    events = taobao_events[40_000:41_500]
    settings = kit.settings_from(stream_env)
    key = settings.pseudonymization_key.get_secret_value().encode()

    # Batch: pseudonymized clicks -> sessionize + the item snapshot, in Spark.
    clicks = _pseudonymized_clicks(spark, events, key)
    snapshot = tmp_path / "item_click_stats"
    write_table(item_click_stats(clicks), snapshot, mode="overwrite")
    batch_rows = {r["event_id"]: r.asDict() for r in sessionize(clicks).collect()}
    stats = {r["item_id"]: r for r in read_arrow(snapshot).to_pylist()}

    # Stream: the worker, enriching with the same snapshot.
    env = {**stream_env, "SHOPFLOW_STREAM__ITEM_SNAPSHOT_PATH": str(snapshot)}
    worker = kit.start_worker(env, tmp_path / "worker.log")
    try:
        kit.wait_serving(int(env["SHOPFLOW_STREAM__METRICS_PORT"]), worker)
        replay(events, settings, speed=None, progress=False)
        scored = kit.json_values(kit.read_topic(settings, settings.kafka.scored_topic, expect=len(events), timeout=90))
        changelog = kit.read_topic(settings, changelog_topic(settings), expect=1, timeout=10)
    finally:
        kit.stop_worker(worker)

    # The worker's features per event, from the session table's changelog.
    online: dict[str, dict] = {}
    for key, value in changelog:
        online.update(remembered_features(json.loads(value), json.loads(key)))
    assert set(online) == set(batch_rows) == {e["event_id"] for e in events}
    mismatches = [
        (eid, name, batch_rows[eid][name], online[eid][name])
        for eid in batch_rows
        for name in SESSION_FEATURES.names
        if not _same(batch_rows[eid][name], online[eid][name])
    ]
    assert not mismatches, mismatches[:5]

    # Same model, batch records (Spark features + snapshot rates) -> the worker's scores,
    # on the view events: the examples propensity is trained on and the ones it scores.
    predictor = load_predictor("propensity", registry=ModelRegistry(champion["registry_root"]), device="cpu")
    ids = sorted(eid for eid, row in batch_rows.items() if row["event_type"] == "view")
    assert len(ids) > len(batch_rows) // 2
    records = []
    for eid in ids:
        row = batch_rows[eid]
        item = stats[row["item_id"]]
        records.append({**row, **{name: item[name] for name in ITEM_FEATURES.names}})
    offline = dict(zip(ids, predictor.score(records)))
    stream_scores = {s["event_id"]: s["score"] for s in scored if s["score"] is not None}
    assert set(stream_scores) == set(offline)
    assert {s["event_id"] for s in scored if s["score"] is None} == set(batch_rows) - set(ids)
    worst = max(abs(stream_scores[i] - float(offline[i])) for i in ids)
    assert worst < 1e-5, worst


def test_session_state_survives_a_worker_restart(spark, stream_env, taobao_events, tmp_path):
    """Half the events, a clean stop, a new worker, the other half: the features of the
    second half are the batch ones, so the session table came back whole from its changelog."""
    from batch.featurize.sessions import sessionize

    # Users with the longest histories; each user's events split in two at its own
    # midpoint, so the second worker continues sessions the first one started.
    by_user: dict[str, list[dict]] = {}
    for e in taobao_events:
        by_user.setdefault(e["user_id"], []).append(e)
    users = [u for u, evs in by_user.items() if len(evs) >= 8]
    parts: tuple[list[dict], list[dict]] = ([], [])
    for u in users:
        evs = sorted(by_user[u], key=lambda e: (e["ts"], e["event_id"]))
        parts[0].extend(evs[: len(evs) // 2])
        parts[1].extend(evs[len(evs) // 2 :])
    events = parts[0] + parts[1]
    by_id = {e["event_id"]: e for e in events}
    settings = kit.settings_from(stream_env)
    key = settings.pseudonymization_key.get_secret_value().encode()
    clicks = _pseudonymized_clicks(spark, events, key)
    batch_rows = {r["event_id"]: r.asDict() for r in sessionize(clicks).collect()}

    port = int(stream_env["SHOPFLOW_STREAM__METRICS_PORT"])
    for n, part in enumerate(parts):
        worker = kit.start_worker(stream_env, tmp_path / f"worker-{n}.log")
        try:
            kit.wait_serving(port, worker)
            replay(part, settings, speed=None, progress=False)
            expected = len(part)
            kit.wait_for(
                lambda expected=expected: (
                    kit.metric_value(kit.metrics_text(port), "shopflow_stream_scored_total") >= expected
                ),
                60,
                what=f"part {n} scored",
            )
        finally:
            assert kit.stop_worker(worker) == 0
    changelog = kit.read_topic(settings, changelog_topic(settings), expect=len(events), timeout=10)

    online: dict[str, dict] = {}
    for key, value in changelog:
        online.update(remembered_features(json.loads(value), json.loads(key)))
    second = {e["event_id"] for e in parts[1]}
    assert second <= set(online)
    # The test has teeth only if many second-part events continue a first-part session.
    first_ts = {}
    for e in parts[0]:
        first_ts[e["user_id"]] = max(first_ts.get(e["user_id"], e["ts"]), e["ts"])
    continued = [
        eid
        for eid in second
        if batch_rows[eid]["session_event_index"] > 0
        and int(batch_rows[eid]["session_key"].rsplit(":", 1)[1])
        <= int(first_ts[by_id[eid]["user_id"]].timestamp() * 1000)
    ]
    assert len(continued) >= 50, len(continued)
    mismatches = [
        (eid, name, batch_rows[eid][name], online[eid][name])
        for eid in sorted(second)
        for name in SESSION_FEATURES.names
        if not _same(batch_rows[eid][name], online[eid][name])
    ]
    assert not mismatches, (len(mismatches), mismatches[:5])
