"""The one set of click rules (the stream once scored events that batch quarantined): what the stream used to score and batch
quarantined is now rejected by both, with one reason code."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from shared.click_rules import (
    REASON_CODES,
    ClickRejected,
    check_click,
    check_click_bytes,
    check_click_columns,
    excerpt,
)

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
GOOD = {"event_id": "e1", "user_id": "u1", "item_id": "i1", "event_type": "view", "ts": "2017-11-26T01:00:00Z"}


def _code(**change) -> str | None:
    try:
        check_click({**GOOD, **change}, now=NOW)
    except ClickRejected as exc:
        assert exc.code in REASON_CODES
        return exc.code
    return None


@pytest.mark.parametrize(
    "ts",
    [
        -1,
        0,
        "0001-01-01T00:00:00Z",
        "9999-12-31T00:00:00Z",
        "2150-01-01T00:00:00Z",
        9999,
        10**30,
        "1999-12-31T23:59:59Z",
        float("nan"),
        float("inf"),
        "2026-01-02T00:00:01Z",
        "2017-11-26 01:00:00",
        "yesterday",
    ],
)
def test_implausible_or_unreadable_times_are_bad_timestamps(ts):
    assert _code(ts=ts) == "bad_timestamp"


def test_epoch_seconds_and_milliseconds_are_told_apart_by_one_rule():
    expected = datetime(2017, 11, 26, 1, tzinfo=timezone.utc)
    assert check_click({**GOOD, "ts": 1511658000}, now=NOW)["ts"] == expected
    assert check_click({**GOOD, "ts": 1511658000000}, now=NOW)["ts"] == expected
    assert check_click({**GOOD, "ts": 1511658000.5}, now=NOW)["ts"].microsecond == 500_000


@pytest.mark.parametrize(
    "change, code",
    [
        ({"user_id": " "}, "blank_id"),
        ({"item_id": "\t\n"}, "blank_id"),
        ({"session_id": "  "}, "blank_id"),
        ({"user_id": ""}, "missing_field"),
        ({"item_id": None}, "missing_field"),
        ({"ts": ""}, "missing_field"),
        ({"user_id": 17}, "bad_type"),
        ({"item_id": 4625350}, "bad_type"),
        ({"event_type": True}, "bad_type"),
        ({"ts": True}, "bad_type"),
        ({"ts": [1]}, "bad_type"),
        ({"category_id": 7}, "bad_type"),
        ({"item_id": "x" * 129}, "too_long"),
        ({"query": "q" * 1025}, "too_long"),
        ({"event_type": "teleport"}, "unknown_event_type"),
        ({"extra": 1}, "unknown_field"),
        ({"user_id": "\ud800"}, "not_utf8"),
        ({"item_id": "a\udfff"}, "not_utf8"),
    ],
)
def test_each_rule_has_its_reason_code(change, code):
    assert _code(**change) == code


def test_the_primary_code_follows_the_documented_order_and_every_reason_is_kept():
    with pytest.raises(ClickRejected) as info:
        check_click({**GOOD, "user_id": None, "event_type": "teleport", "ts": 0, "x": 1}, now=NOW)
    assert info.value.code == "missing_field"
    assert [p.code for p in info.value.problems] == [
        "missing_field",
        "unknown_event_type",
        "bad_timestamp",
        "unknown_field",
    ]


def test_ids_lose_surrounding_spaces_like_batch():
    event = check_click({**GOOD, "user_id": "  u1 ", "item_id": " i1"}, now=NOW)
    assert event["user_id"] == "u1" and event["item_id"] == "i1"


def test_bytes_level_codes_and_bounded_messages():
    for raw, code in [
        (b"\xff", "not_utf8"),
        (b"{", "not_json"),
        (b"[1]", "not_json"),
        (b"[" * 50_000, "not_json"),
        (b'{"ts": 1' + b"0" * 5000 + b"}", "not_json"),
    ]:
        with pytest.raises(ClickRejected) as info:
            check_click_bytes(raw, now=NOW)
        assert info.value.code == code and all(len(r) < 400 for r in info.value.reasons)
    with pytest.raises(ClickRejected) as info:
        check_click_bytes(json.dumps({**GOOD, "ts": "x" * 100_000}), now=NOW)
    assert len(str(info.value)) < 400
    assert len(excerpt("y" * 10_000)) == 200 and excerpt("\ud800") == "'\\ud800'"


def test_batch_candidate_rows_get_the_same_verdict():
    row = {"event_id": "e1", "user_id": "u1", "item_id": "i1", "event_type": "view", "ts_epoch": 1511658000}
    verdict = check_click_columns(row, now=NOW)
    assert verdict.reason is None and verdict.ts_micros == 1511658000 * 1_000_000
    assert check_click_columns({**row, "ts_epoch": None, "ts_text": "not-a-time"}, now=NOW).reason == "bad_timestamp"
    assert check_click_columns({**row, "ts_epoch": None}, now=NOW).reason == "missing_field"
    assert check_click_columns({**row, "user_id": " "}, now=NOW).reason == "blank_id"


# ------------------------------------------------------------------ decoding: orjson first


def _stdlib_verdict(raw: bytes | str) -> str:
    """What the rules said when every value was decoded by the standard library alone."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as exc:
        return f"rejected not_utf8 {[f'not UTF-8: invalid byte at position {exc.start}']}"
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"rejected not_json {[f'not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}']}"
    except (ValueError, RecursionError) as exc:
        return f"rejected not_json {[f'not JSON: {type(exc).__name__}']}"
    try:
        return repr(check_click(obj, now=NOW))
    except ClickRejected as exc:
        return f"rejected {exc.code} {exc.reasons}"


def _verdict(raw: bytes | str) -> str:
    try:
        return repr(check_click_bytes(raw, now=NOW))
    except ClickRejected as exc:
        return f"rejected {exc.code} {exc.reasons}"


EDGE_VALUES = [
    b'"\\ud800"',
    b'"a\\udfff"',
    b'"\\udc00\\ud800"',
    b'"\\ud83d\\ude00"',
    b"1e400",
    b"-1e400",
    b"1e-400",
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b"18446744073709551616",
    b"-9223372036854775809",
    b"18446744073709551615",
    b"1511658000",
    b"1511658000000",
    b"1511658000.5",
    b"1.0",
    b"-0",
    b"-0.0",
    b"1E2",
    b"true",
    b"false",
    b"null",
    b'""',
    b'" "',
    b'"\\u0000"',
    b'"\\/"',
    b"[1]",
    b'{"a":1}',
    b"[" * 2000 + b"]" * 2000,
    b'"\xed\xa0\x80"',
    b'"\xc3\xa9"',
    b'"\\u00e9"',
    b"0.1000000000000000055511151231257827",
    b"123456789012345678901234567890",
]


@pytest.mark.parametrize("value", EDGE_VALUES)
@pytest.mark.parametrize("field", ["ts", "user_id", "extra"])
def test_decoding_gives_the_verdict_of_the_standard_library_on_edge_values(field, value):
    good = json.dumps({k: v for k, v in GOOD.items() if k != field}).encode()
    raw = good[:-1] + b', "' + field.encode() + b'": ' + value + b"}"
    assert _verdict(raw) == _stdlib_verdict(raw)
    assert _verdict(raw.decode("utf-8", "surrogatepass")) == _stdlib_verdict(raw.decode("utf-8", "surrogatepass"))


@pytest.mark.parametrize(
    "raw",
    [
        b'\xef\xbb\xbf{"a":1}',
        b'{"event_id":"e1","event_id":"e2"}',
        b' {"x":1}\n',
        b"\x0c{}",
        b"{}\x00",
        b'{"a":1,}',
        b'{"a":"x\x01"}',
        b"",
        b"{",
        b"\xff",
        b"\xc0\x80",
        b'"\xf4\x90\x80\x80"',
        b'{"a":\xc2\xa01}',
        b"[]",
        b"1",
    ],
)
def test_decoding_gives_the_verdict_of_the_standard_library_on_odd_documents(raw):
    assert _verdict(raw) == _stdlib_verdict(raw)


def test_decoding_gives_the_verdict_of_the_standard_library_on_mutated_events():
    import random

    rng = random.Random(13)
    base = json.dumps({**GOOD, "session_id": "s1", "category_id": "c1", "query": "q"}).encode()
    tokens = [
        b"\\ud800",
        b"\\u00e9",
        b"\xc3\xa9",
        b"\xff",
        b"1e999",
        b"NaN",
        b"99999999999999999999999",
        b"1.5",
        b"[",
        b"]",
        b"{",
        b"}",
        b",",
        b":",
        b'"',
        b"\\",
        b" ",
        b"null",
        b"0",
        b"-",
    ]
    for _ in range(3000):
        raw = bytearray(base)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(raw) + 1)
            if rng.random() < 0.5:
                raw[at:at] = rng.choice(tokens)
            else:
                del raw[at : at + rng.randint(1, 4)]
        assert _verdict(bytes(raw)) == _stdlib_verdict(bytes(raw)), bytes(raw)


def test_a_remembered_event_time_is_still_checked_against_now():
    ts = "2026-01-01T12:00:00Z"
    assert check_click({**GOOD, "ts": ts}, now=NOW)["ts"] == datetime(2026, 1, 1, 12, tzinfo=timezone.utc)
    with pytest.raises(ClickRejected) as info:
        check_click({**GOOD, "ts": ts}, now=datetime(2025, 12, 30, tzinfo=timezone.utc))
    assert info.value.code == "bad_timestamp"


# ------------------------------------------------------------- reasons quote no sender value

SENDER_TEXT = "alice.smith@example.com"


@pytest.mark.parametrize(
    "change, code",
    [
        ({"event_type": SENDER_TEXT}, "unknown_event_type"),
        ({"ts": SENDER_TEXT}, "bad_timestamp"),
        ({"ts": "2017-11-26 01:00:00 " + SENDER_TEXT}, "bad_timestamp"),
        ({"ts": "2999-01-01T00:00:00Z"}, "bad_timestamp"),
        ({SENDER_TEXT: "x"}, "unknown_field"),
        ({"extra": SENDER_TEXT}, "unknown_field"),
        ({"user_id": SENDER_TEXT * 10}, "too_long"),
        ({"item_id": {SENDER_TEXT: 1}}, "bad_type"),
    ],
)
def test_no_reason_quotes_a_sender_value_or_field_name(change, code):
    with pytest.raises(ClickRejected) as info:
        check_click({**GOOD, **change}, now=NOW)
    assert info.value.code == code
    text = " ".join(info.value.reasons)
    assert "alice" not in text and "example" not in text and "2999" not in text


def test_undecodable_values_are_described_not_quoted():
    for raw in (b'{"user_id": "alice\xff"}', b"{alice: 1}", b'["alice"]', b"alice"):
        with pytest.raises(ClickRejected) as info:
            check_click_bytes(raw, now=NOW)
        assert "alice" not in " ".join(info.value.reasons)
