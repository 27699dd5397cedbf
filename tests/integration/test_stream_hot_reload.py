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


def _corrupt_champion(registry_root: Path, good_version: int) -> int:
    """Register a copy of a good version, damage its weights, and point the alias at it
    directly (as a half-finished copy or a bad disk would), bypassing promote's checks."""
    registry = ModelRegistry(registry_root)
    version = registry.register("propensity", registry.path("propensity", good_version), {"note": "to corrupt"})
    weights = next(registry.path("propensity", version).glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    alias = registry_root / "propensity" / "aliases" / "champion.json"
    tmp = alias.with_suffix(".tmp")
    tmp.write_text(json.dumps({"version": version}))
    os.replace(tmp, alias)
    return version


def test_hot_reload_under_traffic(stream_env, champion, taobao_events, tmp_path):
    # A second trained version, and a private registry so other tests keep their champion.
    v2 = kit.train_propensity(champion["table"], seed=29, promote=False)
    registry_root = tmp_path / "registry"
    shutil.copytree(champion["registry_root"], registry_root)
    env = {**stream_env, "SHOPFLOW_MODELS__REGISTRY_ROOT": str(registry_root),
           "SHOPFLOW_STREAM__MODEL_POLL_SECONDS": "30"}  # announcements drive the reloads
    settings = kit.settings_from(env)
    port = int(env["SHOPFLOW_STREAM__METRICS_PORT"])
    v1 = champion["version"]
    events = taobao_events[30_000:32_000]

    worker = kit.start_worker(env, tmp_path / "worker.log")
    try:
        kit.wait_serving(port, worker)
        sender = threading.Thread(target=replay, args=(events, settings),
                                  kwargs={"speed": 30.0, "progress": False})
        sender.start()
        scored_so_far = lambda: kit.metric_value(kit.metrics_text(port), "shopflow_stream_scored_total")  # noqa: E731
        kit.wait_for(lambda: scored_so_far() >= 400, 60, what="400 events on the first champion")

        # The user's path: `shopflow models promote` flips the alias and announces it.
        promote = subprocess.run([sys.executable, "-m", "jobs.cli", "models", "promote", "propensity", str(v2)],
                                 env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
        assert promote.returncode == 0, promote.stderr
        assert "announced on" in promote.stdout, promote.stdout + promote.stderr
        kit.wait_for(lambda: kit.serving_version(kit.metrics_text(port)) == str(v2), 30, what="v2 serving")
        at_swap = scored_so_far()

        bad = _corrupt_champion(registry_root, v2)
        announce(settings, task="propensity", version=bad)
        kit.wait_for(lambda: 'outcome="refused"} 1.0' in kit.metrics_text(port), 30, what="the refusal")
        kit.wait_for(lambda: scored_so_far() >= at_swap + 200, 60, what="traffic after the refusal")
        page = kit.metrics_text(port)
        assert kit.serving_version(page) == str(v2)  # still serving the good one
        sender.join(60)
        scored = kit.read_topic(settings, settings.kafka.scored_topic, expect=len(events), timeout=90)
        assert worker.poll() is None
    finally:
        kit.stop_worker(worker)

    values = kit.json_values(scored)
    ids = [v["event_id"] for v in values]
    assert sorted(ids) == sorted(e["event_id"] for e in events)  # none lost, none twice
    assert {v["model_version"] for v in values} == {str(v1), str(v2)}
    # Batches are produced in order and each is scored by one model: in produce order
    # the version never goes back from v2 to v1.
    seen_v2 = False
    for v in values_in_produce_order(settings):
        if v["model_version"] == str(v2):
            seen_v2 = True
        assert not (seen_v2 and v["model_version"] == str(v1))
    assert bad != v2


def values_in_produce_order(settings) -> list[dict]:
    """Scored values ordered by their broker append time (per-record timestamps)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers, group_id=None,
                             enable_auto_commit=False, auto_offset_reset="earliest")
    try:
        topic = settings.kafka.scored_topic
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        records = []
        for _ in range(6):
            for batch in consumer.poll(timeout_ms=500).values():
                records += batch
        values = [json.loads(r.value) for r in records]
        return sorted(values, key=lambda v: v["scored_at"])
    finally:
        consumer.close()
