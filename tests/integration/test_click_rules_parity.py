"""One event, one verdict (the stream once scored events that batch quarantined): generated click events go through the
stream worker's validator (the JSON bytes a producer sends) and through batch cleaning's
click rules on real local Spark (the candidate columns a click log row becomes); both
must accept or reject each one, with the same reason code and the same event time."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from shared.click_rules import CANDIDATE_COLUMNS, ClickRejected
from shared.schemas import EPOCH_MILLIS_FROM, EVENT_TYPES
from stream import steps

pytestmark = pytest.mark.integration

NOW = datetime.now(timezone.utc).replace(microsecond=0)
# Click logs are text: no lone surrogates (a CSV decoder replaces bad bytes with U+FFFD).
_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
_ID = st.one_of(
    st.none(),
    st.just(""),
    st.sampled_from([" ", "\t", " \n ", " u1 ", "NA"]),
    _TEXT,
    st.integers(0, 10**12).map(str),
    st.integers(120, 140).map(lambda n: "x" * n),
)
_EPOCH = st.one_of(
    st.sampled_from(
        [
            -1,
            0,
            1,
            9999,
            946684799,
            946684800,
            1511658000,
            1511658000000,
            99999999999,
            EPOCH_MILLIS_FROM - 1,
            EPOCH_MILLIS_FROM,
            4102444800,
            4102444800000,
            2**62,
        ]
    ),
    st.integers(-(2**62), 2**62),
    st.integers(946684800, int((NOW + timedelta(days=3)).timestamp())),
    st.integers(946684800_000, int((NOW + timedelta(days=3)).timestamp()) * 1000),
)
_WHEN = st.datetimes(
    min_value=datetime(1, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from([timezone.utc, timezone(timedelta(hours=8))]),
)
_TS_TEXT = st.one_of(
    _WHEN.map(lambda d: d.isoformat()),
    _WHEN.map(lambda d: d.replace(tzinfo=None).isoformat()),
    st.sampled_from(
        [
            "not-a-time",
            "2017-11-26 01:00:00",
            "0001-01-01T00:00:00Z",
            "9999-12-31T00:00:00Z",
            "2150-01-01T00:00:00Z",
            "2017-11-26T01:00:00Z",
            "2016-05-09 123456",
        ]
    ),
    _TEXT,
)


@st.composite
def candidate(draw) -> dict:
    row = {name: draw(_ID) for name in ("event_id", "user_id", "session_id", "item_id", "category_id")}
    row["event_type"] = draw(
        st.one_of(
            st.sampled_from(EVENT_TYPES),
            st.none(),
            st.just(""),
            st.sampled_from(["VIEW", " view", "behavior_type=zzz"]),
            _TEXT,
        )
    )
    row["query"] = draw(st.one_of(st.none(), _TEXT, st.integers(1020, 1030).map(lambda n: "q" * n)))
    if draw(st.booleans()):
        row["ts_epoch"], row["ts_text"] = draw(_EPOCH), None
    else:
        row["ts_epoch"], row["ts_text"] = None, draw(st.one_of(st.none(), _TS_TEXT))
    # Most rows valid apart from one field, so accepted events are well represented too.
    if draw(st.booleans()):
        row.update(
            event_id="e1",
            user_id="u1",
            item_id="i1",
            event_type=draw(st.sampled_from(EVENT_TYPES)),
            session_id=None,
            category_id=None,
            query=None,
        )
    return row


def _wire(row: dict) -> bytes:
    """The JSON a producer sends for the row: absent columns are absent fields."""
    event = {k: row[k] for k in CANDIDATE_COLUMNS[:7] if row[k] is not None}
    ts = row["ts_epoch"] if row["ts_epoch"] is not None else row["ts_text"]
    if ts is not None:
        event["ts"] = ts
    return json.dumps(event).encode()


def _micros(when: datetime) -> int:
    delta = when - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _stream_verdict(row: dict) -> tuple[str | None, int | None]:
    try:
        return None, _micros(steps.parse_validate(_wire(row), now=NOW)["ts"])
    except ClickRejected as exc:
        return exc.code, None


def _spark_verdicts(spark, rows: list[dict]) -> list[tuple[str | None, int | None]]:
    from pyspark.sql import functions as F

    from batch.cleaning.clicks import candidate_struct, click_verdict

    schema = ", ".join(f"{c} {'long' if c == 'ts_epoch' else 'string'}" for c in CANDIDATE_COLUMNS)
    df = spark.createDataFrame(
        [(i, *(r[c] for c in CANDIDATE_COLUMNS)) for i, r in enumerate(rows)], f"i int, {schema}"
    )
    verdict = click_verdict(candidate_struct({c: F.col(c) for c in CANDIDATE_COLUMNS}), NOW)
    got = {
        r["i"]: (r["reason"], r["ts_micros"]) for r in df.select("i", verdict.alias("v")).select("i", "v.*").collect()
    }
    return [got[i] for i in range(len(rows))]


def test_stream_and_batch_give_one_verdict_per_event(spark):
    seen: dict[str | None, int] = {}

    @hyp_settings(max_examples=12, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(candidate(), min_size=20, max_size=120))
    def check(rows: list[dict]) -> None:
        batch = _spark_verdicts(spark, rows)
        for row, b in zip(rows, batch):
            s = _stream_verdict(row)
            assert s == b, f"stream {s} != batch {b} for {row!r}"
            seen[s[0]] = seen.get(s[0], 0) + 1

    check()
    # The generator reached every rule a click log can break, and valid events too.
    assert {None, "missing_field", "blank_id", "too_long", "unknown_event_type", "bad_timestamp"} <= set(seen), seen
