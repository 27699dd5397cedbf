"""Fuzzed malformed click events (hypothesis) all reach the DLQ with their reasons, while
the worker keeps scoring the good events sent between them.

Besides malformed JSON, the generator sends values up to 2 MB, invalid UTF-8 and lone
surrogates (JSON escapes) in every field: no record may stop the worker.
The embedded broker accepted every size sent here; the test's producer raises its
request limit to 3 MB (kafka-python's default is 1 MB).
"""

from __future__ import annotations

import collections
import json
import uuid

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from shared.click_rules import check_click_bytes
from shared.contract import DLQ_MAX_RAW_BYTES
from shared.errors import ValidationError
from shared.redaction import Redactor
from shared.schemas import CLICK_EVENT, EVENT_TYPES, to_wire
from tests.integration import kit

pytestmark = pytest.mark.integration

_NOT_A_STRING = st.one_of(
    st.booleans(),
    st.floats(allow_nan=False),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def _base_event() -> dict:
    return {
        "event_id": uuid.uuid4().hex,
        "user_id": "fuzz-user",
        "item_id": "42",
        "event_type": "view",
        "ts": "2017-11-26T01:00:00Z",
        "session_id": None,
        "query": None,
        "category_id": "7",
    }


_HOLE = "@@fuzz-hole@@"


def _with_hole(event: dict, field: str, filling: bytes) -> bytes:
    """The event's JSON with `filling` (raw bytes, possibly not UTF-8) inside one field's string."""
    if field == "<key>":
        event = {**event, _HOLE: 1}
    else:
        event = {**event, field: f"a{_HOLE}"}
    return json.dumps(event).encode().replace(_HOLE.encode(), filling)


@st.composite
def hostile(draw) -> bytes:
    """Large values, invalid UTF-8 and lone surrogates, in every field (and in a key)."""
    kind = draw(st.sampled_from(["big_bytes", "big_field", "not_utf8", "surrogate", "surrogate_bytes"]))
    event = _base_event()
    field = draw(st.sampled_from(CLICK_EVENT.names + ["<key>"]))
    size = draw(st.one_of(st.just(2_000_000), st.integers(100_000, 2_000_000)))
    if kind == "big_bytes":
        return draw(st.randoms(use_true_random=False)).randbytes(size)
    if kind == "big_field":
        field = field if field != "<key>" else "query"
        return _with_hole(event, field, b"y" * size)
    if kind == "not_utf8":
        return _with_hole(event, field, b"\xff" + draw(st.binary(max_size=6)))
    if kind == "surrogate":  # valid UTF-8 bytes; the JSON escape decodes to a lone surrogate
        return _with_hole(event, field, f"\\u{draw(st.integers(0xD800, 0xDFFF)):04x}".encode())
    return _with_hole(event, field, chr(draw(st.integers(0xD800, 0xDFFF))).encode("utf-8", "surrogatepass"))


@st.composite
def malformed(draw) -> bytes:
    kind = draw(st.sampled_from(["bytes", "json", "drop", "type", "enum", "ts", "extra", "long", "hostile"]))
    event = _base_event()
    required = [f.name for f in CLICK_EVENT.fields if f.required]
    if kind == "hostile":
        return draw(hostile())
    if kind == "bytes":
        return draw(st.binary(min_size=0, max_size=64))
    if kind == "json":
        return json.dumps(
            draw(st.one_of(st.integers(), st.lists(st.text(max_size=4), max_size=3), st.text(max_size=8), st.none()))
        ).encode()
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
        check_click_bytes(raw)
    except ValidationError:
        return True
    return False


def test_fuzzed_malformed_events_reach_the_dlq(stream_env, tmp_path):
    settings = kit.settings_from(stream_env)
    redactor = Redactor(settings.pseudonymization_key.get_secret_value().encode())
    port = int(stream_env["SHOPFLOW_STREAM__METRICS_PORT"])
    worker = kit.start_worker(stream_env, tmp_path / "worker.log")
    watcher = None
    try:
        kit.wait_serving(port, worker)
        watcher = kit.TopicWatcher(settings, [settings.kafka.scored_topic, settings.kafka.dlq_topic])
        rounds = []

        @hyp_settings(max_examples=6, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(
            st.lists(malformed().filter(_is_invalid), min_size=1, max_size=25),
            st.lists(hostile().filter(_is_invalid), min_size=4, max_size=8),
        )
        def one_round(malformed_ones: list[bytes], hostile_ones: list[bytes]) -> None:
            bad = malformed_ones + hostile_ones
            goods = [{**_base_event(), "user_id": f"u-{uuid.uuid4().hex[:8]}"} for _ in range(2)]
            # One key: the good events queue behind the bad ones on one partition.
            kit.send_raw(
                settings, [(b"k", raw) for raw in bad] + [(b"k", to_wire(g)) for g in goods], max_request_size=3_000_000
            )
            want = collections.Counter(redactor.keyed_hash(raw) for raw in bad)

            def arrived(w: kit.TopicWatcher) -> bool:
                assert worker.poll() is None, f"the worker exited with status {worker.returncode}"
                dlq = collections.Counter(json.loads(v)["raw_hmac_sha256"] for v in w.values[settings.kafka.dlq_topic])
                scored = {json.loads(v)["event_id"] for v in w.values[settings.kafka.scored_topic]}
                return {g["event_id"] for g in goods} <= scored and all(dlq[digest] >= n for digest, n in want.items())

            watcher.wait(arrived, 60, what="the fuzzed records in the DLQ and the good ones scored")
            rounds.append(len(bad))

        one_round()
        assert worker.poll() is None, "malformed input must never take the worker down"
        entries = [json.loads(v) for v in watcher.values[settings.kafka.dlq_topic]]
        assert len(entries) == sum(rounds)  # nothing good went to the DLQ
        for e in entries:
            assert e["reasons"] and all(isinstance(r, str) and 0 < len(r) <= 512 for r in e["reasons"])
            assert e["step"] == "parse_validate" and e["reason_code"] and len(e["raw"]) <= DLQ_MAX_RAW_BYTES
            assert e["raw_truncated"] == (e["raw_size"] > DLQ_MAX_RAW_BYTES)
        assert len(watcher.values[settings.kafka.scored_topic]) == 2 * len(rounds)
        by_code = collections.Counter(e["reason_code"] for e in entries)
        print(
            f"fuzz DLQ by reason code ({sum(rounds)} records, largest "
            f"{max(e['raw_size'] for e in entries)} bytes): {dict(by_code.most_common())}"
        )
    finally:
        if watcher:
            watcher.close()
        kit.stop_worker(worker)
