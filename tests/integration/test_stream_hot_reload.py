"""Hot reload under traffic: a promoted champion takes over between batches, a corrupt
one is refused while the serving model carries on, and no event is lost or scored twice."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from shared.promotion import announce
from shared.registry import ModelRegistry
from stream.replay import replay
from tests.integration import kit

pytestmark = pytest.mark.integration


def _corrupt_champion(registry_root: Path, good_version: int) -> tuple[int, Path, bytes]:
    """Register a copy of a good version, damage its weights, and point the alias at it
    directly (as a half-finished copy or a bad disk would), bypassing promote's checks.
    Returns the version, its weights file and the good bytes (to repair it)."""
    registry = ModelRegistry(registry_root)
    version = registry.register("propensity", registry.path("propensity", good_version), {"note": "to corrupt"})
    weights = next(registry.path("propensity", version).glob("*.safetensors"))
    good = weights.read_bytes()
    data = bytearray(good)
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    alias = registry_root / "propensity" / "aliases" / "champion.json"
    tmp = alias.with_suffix(".tmp")
    tmp.write_text(json.dumps({"version": version}))
    os.replace(tmp, alias)
    return version, weights, good


def _promote_with_the_cli(env: dict, version: int) -> None:
    """The user's path: `shopflow models promote` verifies, flips the alias and announces.
    Forced: these versions are here for the reload, not for the baseline gate (a smoke-
    trained one may be refused, a hand-registered copy has no gate evidence)."""
    promote = subprocess.run(
        [sys.executable, "-m", "jobs.cli", "models", "promote", "propensity", str(version), "--force"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert promote.returncode == 0, promote.stderr
    assert "announced on" in promote.stdout, promote.stdout + promote.stderr


def test_hot_reload_under_traffic(stream_env, champion, taobao_events, tmp_path):
    # A second trained version, and a private registry so other tests keep their champion.
    v2 = kit.train_propensity(champion["table"], seed=29, promote=False)
    registry_root = tmp_path / "registry"
    shutil.copytree(champion["registry_root"], registry_root)
    env = {
        **stream_env,
        "SHOPFLOW_MODELS__REGISTRY_ROOT": str(registry_root),
        "SHOPFLOW_STREAM__MODEL_POLL_SECONDS": "30",
    }  # announcements drive the reloads
    settings = kit.settings_from(env)
    port = int(env["SHOPFLOW_STREAM__METRICS_PORT"])
    v1 = champion["version"]
    # ~9 minutes of the log at 20x: traffic flows through every reload below.
    events, tail = taobao_events[30_000:36_000], taobao_events[36_000:36_300]
    page = lambda: kit.metrics_text(port)  # noqa: E731
    scored_so_far = lambda: kit.metric_value(page(), "shopflow_stream_scored_total")  # noqa: E731
    mismatch = lambda: kit.metric_value(page(), "shopflow_stream_model_mismatch_seconds")  # noqa: E731

    worker = kit.start_worker(env, tmp_path / "worker.log")
    try:
        kit.wait_serving(port, worker)
        sender = threading.Thread(target=replay, args=(events, settings), kwargs={"speed": 20.0, "progress": False})
        sender.start()
        kit.wait_for(lambda: scored_so_far() >= 400, 60, what="400 events on the first champion")

        _promote_with_the_cli(env, v2)
        kit.wait_for(lambda: kit.serving_version(page()) == str(v2), 30, what="v2 serving")
        at_swap = scored_so_far()

        bad, weights, good_bytes = _corrupt_champion(registry_root, v2)
        announce(settings, task="propensity", version=bad)
        kit.wait_for(lambda: 'outcome="refused"} 1.0' in page(), 30, what="the refusal")
        kit.wait_for(lambda: scored_so_far() >= at_swap + 200, 60, what="traffic after the refusal")
        assert kit.serving_version(page()) == str(v2)  # still serving the good one
        # The registry says `bad`, the worker serves v2: the gauge counts the seconds.
        kit.wait_for(lambda: mismatch() >= 1.0, 10, what="the mismatch gauge to count")

        # Repaired and promoted again, a version refused before is retried (it once never was).
        weights.write_bytes(good_bytes)
        _promote_with_the_cli(env, bad)
        kit.wait_for(
            lambda: kit.serving_version(page()) == str(bad), 30, what="the repaired version serving after its promotion"
        )
        kit.wait_for(lambda: mismatch() == 0.0, 5, what="the mismatch gauge back to 0")
        sender.join(120)
        assert not sender.is_alive()
        replay(tail, settings, speed=None, progress=False)  # on the repaired version only
        scored = kit.read_topic(settings, settings.kafka.scored_topic, expect=len(events) + len(tail), timeout=90)
        assert worker.poll() is None
    finally:
        kit.stop_worker(worker)

    values = kit.json_values(scored)
    ids = [v["event_id"] for v in values]
    assert sorted(ids) == sorted(e["event_id"] for e in events + tail)  # none lost, none twice
    assert {v["model_version"] for v in values} == {str(v1), str(v2), str(bad)}
    assert {v["model_version"] for v in values if v["event_id"] in {e["event_id"] for e in tail}} == {str(bad)}
    # Batches are produced in order and each is scored by one model: in produce order
    # (offsets of each partition of the scored topic) the version never goes back.
    rank = {str(v1): 0, str(v2): 1, str(bad): 2}
    for partition, in_order in values_in_produce_order(settings, len(values)).items():
        ranks = [rank[v["model_version"]] for v in in_order]
        assert ranks == sorted(ranks), f"partition {partition}: a model version went back"


def values_in_produce_order(settings, expect: int) -> dict[int, list[dict]]:
    """Scored values of each partition in the order the broker appended them (offsets).
    (Not up to end_offsets: the embedded broker's ListOffsets can answer short.)"""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        topic = settings.kafka.scored_topic
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        records: dict[int, list] = {tp.partition: [] for tp in tps}
        deadline = kit.time.monotonic() + 30
        while kit.time.monotonic() < deadline:
            polled = consumer.poll(timeout_ms=500)
            for tp, batch in polled.items():
                records[tp.partition] += batch
            if not polled and sum(map(len, records.values())) >= expect:
                break
        assert sum(map(len, records.values())) == expect, "could not read the whole scored topic"
        return {p: [json.loads(r.value) for r in sorted(rs, key=lambda r: r.offset)] for p, rs in records.items()}
    finally:
        consumer.close()
