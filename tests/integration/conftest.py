"""Fixtures of the stream integration tests: one embedded broker and one trained
propensity champion per test session, and per test its own topics and consumer group."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from tests.integration import kit

_COUNTER = itertools.count()


@pytest.fixture(scope="session")
def broker_env(session_root: Path):
    """The session's embedded broker on a free loopback port; stopped at the end."""
    from stream import broker

    env = {
        "SHOPFLOW_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{kit.free_port()}",
        "SHOPFLOW_STREAM__RUN_DIR": str(session_root / "run"),
    }
    settings = kit.settings_from(env)
    broker.start(settings)
    yield env
    broker.stop(settings)


@pytest.fixture(scope="session")
def taobao_events(data_root: Path):
    from stream.replay import load_events

    return load_events("taobao", data_root)


@pytest.fixture(scope="session")
def champion(session_root: Path, taobao_events) -> dict:
    """The propensity champion after `batch.train --promote` on real events: the trained
    model when it passes the baseline gate, else the fallback baseline (the stream always
    serves something, through the same Predictor either way)."""
    from shared.registry import ModelRegistry
    from shared.settings import get_settings

    settings = get_settings()
    key = settings.pseudonymization_key.get_secret_value().encode()
    table = kit.write_propensity_gold(taobao_events[:6000], key, session_root / "gold-src")
    trained = kit.train_propensity(table, seed=13, promote=True)
    registry = ModelRegistry(settings.models.registry_root)
    version = registry.resolve("propensity")
    assert version is not None and version >= trained
    return {"version": version, "table": table, "registry_root": settings.models.registry_root}


@pytest.fixture
def stream_env(broker_env: dict, champion: dict, session_root: Path, tmp_path: Path) -> dict:
    """Env of one worker: its own topics, consumer group, metrics port and run dir."""
    from stream.broker import ensure_topics
    from stream.topics import required_topics

    n = next(_COUNTER)
    env = {
        **broker_env,
        "SHOPFLOW_KAFKA__CLICKS_TOPIC": f"clicks-{n}",
        "SHOPFLOW_KAFKA__DLQ_TOPIC": f"clicks-{n}.dlq",
        "SHOPFLOW_KAFKA__SCORED_TOPIC": f"clicks-{n}.scored",
        "SHOPFLOW_KAFKA__MODELS_TOPIC": f"models-{n}.announce",
        "SHOPFLOW_STREAM__APP_ID": f"shopflow-stream-test-{n}",
        "SHOPFLOW_STREAM__METRICS_PORT": str(kit.free_port()),
        "SHOPFLOW_STREAM__RUN_DIR": str(tmp_path / "run"),
        "SHOPFLOW_STREAM__MODEL_POLL_SECONDS": "1.0",
        "SHOPFLOW_MODELS__REGISTRY_ROOT": str(champion["registry_root"]),
    }
    settings = kit.settings_from(env)
    ensure_topics(settings.kafka.bootstrap_servers, required_topics(settings))
    return env
