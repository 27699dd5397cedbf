"""Offline/online parity: the same events through the batch features (Spark, the batch
layer's `sessionize` and `item_click_stats`) and through the worker give the same
session features for every event and, with the same model, the same scores for views."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone

import pytest

from shared.delta import read_arrow, write_table
from shared.features import ITEM_FEATURES, SESSION_FEATURES
from shared.predictor import load_predictor
from shared.pseudonymize import pseudonymize
from shared.registry import ModelRegistry
from shared.schemas import CLICK_EVENT
from stream import steps
from stream.replay import replay
from stream.sessions import remembered_features
from stream.topics import changelog_topic
from tests.integration import kit

pytestmark = pytest.mark.integration
T_FOLDED = datetime(2026, 1, 1, tzinfo=timezone.utc)


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


def test_training_rows_of_stream_events_have_the_item_features_the_worker_served(
    spark, stream_env, champion, taobao_events, tmp_path
):
    """Replay a slice through the worker, write a new item snapshot half-way (the worker
    hot-reloads it), fold the scored events as the fold reads them, build the propensity
    training set: each stream row's item features are the ones the worker scored it with,
    from the snapshot version its scored event names, and the model scores the training
    rows as the worker did."""
    from batch.featurize.served_items import served_item_counts
    from batch.featurize.sessions import sessionize
    from batch.featurize.training_sets import item_click_stats, propensity_training_set
    from shared.contract.folded import STREAM_SCHEMA, Position, to_arrow
    from shared.contract.scored import scored_row
    from shared.delta import read_table
    from shared.redaction import Redactor
    from shared.silver import SILVER_CLICKS

    first, second = taobao_events[42_000:43_000], taobao_events[43_000:43_600]
    settings = kit.settings_from(stream_env)
    key = settings.pseudonymization_key.get_secret_value().encode()
    snapshot = tmp_path / "item_click_stats"
    write_table(item_click_stats(_pseudonymized_clicks(spark, first, key)), snapshot, mode="overwrite")  # v0
    env = {**stream_env, "SHOPFLOW_STREAM__ITEM_SNAPSHOT_PATH": str(snapshot)}
    worker = kit.start_worker(env, tmp_path / "worker.log")
    try:
        kit.wait_serving(int(env["SHOPFLOW_STREAM__METRICS_PORT"]), worker)
        replay(first, settings, speed=None, progress=False)
        kit.read_topic(settings, settings.kafka.scored_topic, expect=len(first), timeout=90)
        # The loop's features run writes the next snapshot; the worker polls every second.
        clicks = _pseudonymized_clicks(spark, first + second, key)
        write_table(item_click_stats(clicks), snapshot, mode="overwrite")  # v1
        kit.wait_for(
            lambda: "item snapshot version 1 loaded" in (tmp_path / "worker.log").read_text(),
            30,
            what="the worker reloading the snapshot",
        )
        replay(second, settings, speed=None, progress=False)
        wire = kit.read_topic(settings, settings.kafka.scored_topic, expect=len(first) + len(second), timeout=90)
    finally:
        kit.stop_worker(worker)

    # What the fold writes to the stream table, row by row.
    redactor = Redactor(key)
    rows = [
        scored_row(value, Position("clicks.scored", 0, i), redactor=redactor, batch_id="b", folded_at=T_FOLDED)
        for i, (_, value) in enumerate(wire)
    ]
    versions = {r["event_id"]: r["item_snapshot_version"] for r in rows}
    assert {versions[e["event_id"]] for e in first} == {0}
    assert {versions[e["event_id"]] for e in second} == {1}
    stream = spark.createDataFrame(to_arrow(rows, STREAM_SCHEMA).to_pandas())

    served = served_item_counts(stream, lambda version: read_table(spark, snapshot, version))
    # The slice spans about two minutes: a 20-second horizon leaves most views labelled.
    sessions = sessionize(stream.select(*SILVER_CLICKS.names))
    training = propensity_training_set(sessions, horizon_seconds=20, served=served)
    trained = {r["event_id"]: r.asDict() for r in training.collect()}
    assert len(trained) > 300

    # The worker's lookup, per version: what it enriched each event with.
    snapshots = {v: {r["item_id"]: r for r in read_arrow(snapshot, v).to_pylist()} for v in (0, 1)}
    unknown = steps.item_features_from_counts(0, 0, 0)
    mismatches = []
    for eid, row in trained.items():
        served_row = snapshots[versions[eid]].get(row["item_id"], unknown)
        mismatches += [(eid, n) for n in ITEM_FEATURES.names if not _same(row[n], served_row[n])]
    assert not mismatches, mismatches[:5]
    # Without the served versions the rows would take the cadence's counts: not what served.
    cadence = {r["event_id"]: r["item_views"] for r in propensity_training_set(sessions, horizon_seconds=20).collect()}
    assert any(cadence[eid] != trained[eid]["item_views"] for eid in trained)
    # And the model agrees: the training rows score as the worker scored them.
    predictor = load_predictor("propensity", registry=ModelRegistry(champion["registry_root"]), device="cpu")
    ids = sorted(trained)
    offline = dict(zip(ids, predictor.score([trained[i] for i in ids])))
    online = {r["event_id"]: r["score"] for r in rows}
    worst = max(abs(online[i] - float(offline[i])) for i in ids)
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
