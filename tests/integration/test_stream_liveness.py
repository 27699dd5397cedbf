"""A worker whose agent dies exits nonzero instead of staying up with stalled partitions,
and the batch it died on is not committed: a restart scores it.
"""

from __future__ import annotations

import json
import shutil
import socket

import pytest

from shared.registry import ModelRegistry
from stream.pipeline import EXIT_AGENT_DIED
from stream.replay import replay
from tests.integration import kit

pytestmark = pytest.mark.integration


def _register_broken_at_scoring(registry_root, good_version: int, work) -> int:
    """A checkpoint that loads and verifies but fails on the first batch: its encoder
    statistics have one column too many (as a trainer bug would write them)."""
    registry = ModelRegistry(registry_root)
    folder = work / "broken"
    shutil.copytree(registry.path("propensity", good_version), folder)
    config_file = folder / "config.json"
    config = json.loads(config_file.read_text())
    config["numeric_mean"] = list(config["numeric_mean"]) + [0.0]
    config_file.write_text(json.dumps(config))
    (folder / "manifest.json").unlink()
    return registry.register("propensity", folder, {"note": "broken encoder statistics"})


def test_agent_failure_exits_nonzero_and_the_batch_is_replayed(stream_env, champion, taobao_events, tmp_path):
    registry_root = tmp_path / "registry"
    shutil.copytree(champion["registry_root"], registry_root)
    registry = ModelRegistry(registry_root)
    broken = _register_broken_at_scoring(registry_root, champion["version"], tmp_path)
    env = {**stream_env, "SHOPFLOW_MODELS__REGISTRY_ROOT": str(registry_root)}
    settings = kit.settings_from(env)
    port = int(env["SHOPFLOW_STREAM__METRICS_PORT"])
    warm, events = taobao_events[49_800:50_000], taobao_events[50_000:50_200]

    worker = kit.start_worker(env, tmp_path / "worker-1.log")
    try:
        # A serving worker that has committed offsets (see the note in the module docstring).
        kit.wait_serving(port, worker)
        replay(warm, settings, speed=None, progress=False)
        assert len(kit.read_topic(settings, settings.kafka.scored_topic, expect=len(warm), timeout=60)) == len(warm)
        kit.wait_for(
            lambda: kit.metric_value(kit.metrics_text(port), "shopflow_stream_last_commit_timestamp_seconds") > 0,
            30,
            what="a first offset commit",
        )
        # The broken version verifies and loads (staged, swapped in at the next batch);
        # that batch kills the agent.
        registry.flip_alias("propensity", broken)
        kit.wait_for(
            lambda: 'shopflow_stream_model_reloads_total{outcome="loaded"} 2.0' in kit.metrics_text(port),
            30,
            what="the broken model loaded",
        )
        replay(events, settings, speed=None, progress=False)
        assert worker.wait(60) == EXIT_AGENT_DIED
    finally:
        kit.stop_worker(worker)
    assert "agent step score_batch died" in (tmp_path / "worker-1.log").read_text()
    wanted = {e["event_id"] for e in events}
    before = kit.json_values(kit.read_topic(settings, settings.kafka.scored_topic, expect=len(warm), timeout=3))
    assert not wanted & {v["event_id"] for v in before}

    # Roll back to the good champion: the restart scores every event, none lost.
    registry.flip_alias("propensity", champion["version"])
    worker = kit.start_worker(env, tmp_path / "worker-2.log")
    try:
        scored = kit.json_values(
            kit.read_topic(settings, settings.kafka.scored_topic, expect=len(warm) + len(events), timeout=90)
        )
    finally:
        kit.stop_worker(worker)
    after = [s for s in scored if s["event_id"] in wanted]
    missing = wanted - {s["event_id"] for s in after}
    assert not missing, (len(missing), kit.read_topic(settings, settings.kafka.dlq_topic, expect=0, timeout=2)[:3])
    assert {s["model_version"] for s in after} == {str(champion["version"])}


def test_worker_that_cannot_start_its_metrics_endpoint_exits_nonzero(stream_env, tmp_path):
    port = int(stream_env["SHOPFLOW_STREAM__METRICS_PORT"])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        worker = kit.start_worker(stream_env, tmp_path / "worker.log")
        try:
            assert worker.wait(60) == EXIT_AGENT_DIED
        finally:
            kit.stop_worker(worker)
    assert "start_pipeline died" in (tmp_path / "worker.log").read_text()
