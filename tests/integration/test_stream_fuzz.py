"""Fuzzed malformed click events (hypothesis) all reach the DLQ with their reasons, while
the worker keeps scoring the good events sent between them."""

from __future__ import annotations

import collections
import json
import uuid

import pytest
from hypothesis import HealthCheck, given, settings as hyp_settings, strategies as st

from shared.errors import ValidationError
from shared.schemas import CLICK_EVENT, EVENT_TYPES, to_wire, validate_click_event
from tests.integration import kit

pytestmark = pytest.mark.integration

_NOT_A_STRING = st.one_of(st.booleans(), st.floats(allow_nan=False), st.lists(st.integers(), max_size=3),
                          st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


def _base_event() -> dict:
    return {"event_id": uuid.uuid4().hex, "user_id": "fuzz-user", "item_id": "42", "event_type": "view",
            "ts": "2017-11-26T01:00:00Z", "session_id": None, "query": None, "category_id": "7"}


@st.composite
def malformed(draw) -> bytes:
    kind = draw(st.sampled_from(["bytes", "json", "drop", "type", "enum", "ts", "extra", "long"]))
    event = _base_event()
    required = [f.name for f in CLICK_EVENT.fields if f.required]
    if kind == "bytes":
        return draw(st.binary(min_size=0, max_size=64))
    if kind == "json":
        return json.dumps(draw(st.one_of(st.integers(), st.lists(st.text(max_size=4), max_size=3),
                                         st.text(max_size=8), st.none()))).encode()
    if kind == "drop":
        for name in draw(st.lists(st.sampled_from(required), min_size=1, unique=True)):
            del event[name]
    elif kind == "type":
        event[draw(st.sampled_from(["event_id", "user_id", "item_id", "event_type"]))] = draw(_NOT_A_STRING)
    elif kind == "enum":
        event["event_type"] = draw(st.text(min_size=1, max_size=12).filter(lambda t: t not in EVENT_TYPES))
    elif kind == "ts":
        event["ts"] = draw(st.one_of(st.text(max_size=20), st.booleans(), st.just("2017-11-26T01:00:00")))
    elif kind == "extra":
        event[draw(st.text(min_size=1, max_size=10).filter(lambda k: k not in CLICK_EVENT.names))] = 1
    elif kind == "long":
        event["item_id"] = "x" * draw(st.integers(min_value=129, max_value=400))
    return json.dumps(event).encode()


def _is_invalid(raw: bytes) -> bool:
    try:
        validate_click_event(raw)
    except ValidationError:
        return True
    return False


def test_fuzzed_malformed_events_reach_the_dlq(stream_env, tmp_path):
    settings = kit.settings_from(stream_env)
    port = int(stream_env["SHOPFLOW_STREAM__METRICS_PORT"])
    worker = kit.start_worker(stream_env, tmp_path / "worker.log")
    watcher = None
    try:
        kit.wait_serving(port, worker)
        watcher = kit.TopicWatcher(settings, [settings.kafka.scored_topic, settings.kafka.dlq_topic])
        rounds = []

        @hyp_settings(max_examples=6, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
        @given(st.lists(malformed().filter(_is_invalid), min_size=1, max_size=25))
        def one_round(bad: list[bytes]) -> None:
            good = {**_base_event(), "user_id": f"u-{uuid.uuid4().hex[:8]}"}
            good_bytes = to_wire(good)
            kit.send_raw(settings, [(b"k", raw) for raw in bad] + [(b"k", good_bytes)])
            want = collections.Counter(bad)

            def arrived(w: kit.TopicWatcher) -> bool:
                dlq = collections.Counter(json.loads(v)["raw"].encode("latin-1") for v in w.values[settings.kafka.dlq_topic])
                scored = {json.loads(v)["event_id"] for v in w.values[settings.kafka.scored_topic]}
                return good["event_id"] in scored and all(dlq[raw] >= n for raw, n in want.items())

            watcher.wait(arrived, 30, what="the fuzzed records in the DLQ and the good one scored")
            rounds.append(len(bad))

        one_round()
        assert worker.poll() is None, "malformed input must never take the worker down"
        entries = [json.loads(v) for v in watcher.values[settings.kafka.dlq_topic]]
        assert len(entries) == sum(rounds)  # nothing good went to the DLQ
        assert all(e["reasons"] and all(isinstance(r, str) and r for r in e["reasons"]) for e in entries)
        assert len(watcher.values[settings.kafka.scored_topic]) == len(rounds)
    finally:
        if watcher:
            watcher.close()
        kit.stop_worker(worker)
