"""Replay parsing/order/ids and the broker's binary check, on the real data files."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.click_rules import check_click_bytes
from shared.errors import BrokerError
from shared.schemas import click_event_id, to_wire
from shared.settings import get_settings
from stream import broker
from stream.replay import load_events
from stream.topics import required_topics


def events_by_id_contains(events: list[dict], event_id: str) -> bool:
    return any(e["event_id"] == event_id for e in events)


def test_taobao_events_are_valid_ordered_and_deterministic(data_root: Path):
    events = load_events("taobao", data_root, limit=3000)
    assert len(events) == 3000
    assert all(check_click_bytes(to_wire(e)) == e for e in events[:200])
    assert [(e["ts"], e["event_id"]) for e in events] == sorted((e["ts"], e["event_id"]) for e in events)
    first_line = (
        (data_root / "taobao_user_behavior/user_behavior_2017-11-26_0100-0310utc.csv").read_text().split("\n", 1)[0]
    )
    # The batch clean job's id for the same row (tests/integration/test_spark_twins covers its Spark twin).
    key = get_settings().pseudonymization_key.get_secret_value().encode()
    assert events_by_id_contains(
        load_events("taobao", data_root), click_event_id("taobao", first_line.split(","), key=key)
    )
    assert load_events("taobao", data_root, limit=3000) == events
    assert {e["event_type"] for e in load_events("taobao", data_root)} == {
        "view",
        "add_to_cart",
        "favorite",
        "purchase",
    }


def test_diginetica_views_map_anonymous_users_to_their_session(data_root: Path):
    events = load_events("diginetica", data_root)
    assert len(events) == 12_391 and len({e["event_id"] for e in events}) == len(events)
    anonymous = [e for e in events if e["user_id"].startswith("anon-session:")]
    assert anonymous and all(e["user_id"] == f"anon-session:{e['session_id']}" for e in anonymous)
    assert all(check_click_bytes(to_wire(e)) == e for e in events[:200])


def test_tansu_binary_matches_the_pinned_checksum(tmp_path: Path):
    broker.verify_binary(broker.tansu_binary())
    fake = tmp_path / "tansu"
    fake.write_bytes(b"not the broker")
    with pytest.raises(BrokerError, match="sha256"):
        broker.verify_binary(fake)


def test_start_refuses_a_non_loopback_address():
    from shared.settings import KafkaSettings, Settings

    settings = Settings(kafka=KafkaSettings(bootstrap_servers="kafka.example.com:9092"))
    with pytest.raises(BrokerError, match="loopback"):
        broker.start(settings)


def test_topics_include_the_worker_internals():
    from shared.settings import Settings

    names = {t.name: t.partitions for t in required_topics(Settings())}
    assert names["clicks"] == names["shopflow-stream-sessions-changelog"] == 4
    assert names["models.announce"] == 1 and "shopflow-stream-__assignor-__leader" in names
