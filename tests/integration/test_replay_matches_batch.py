"""The replay producer and the batch clean job agree on every click's identity: the
same file row gets the same (keyed) event id and the same user and session pseudonyms
on both paths, which is what lets the stream be folded back into the Delta tables
without duplicates."""

from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc
import pytest

from shared.delta import read_arrow
from shared.pseudonymize import pseudonymize
from shared.settings import get_settings
from stream.replay import read_source

pytestmark = pytest.mark.integration


def _silver(gold_lake, source: str) -> dict[str, dict]:
    clicks = read_arrow(gold_lake["silver/clicks"])
    rows = clicks.filter(pc.equal(clicks["source"], source)).to_pylist()
    return {r["event_id"]: r for r in rows}


def _quarantined(gold_lake) -> int:
    q = read_arrow(gold_lake["silver/quarantine"])
    return q.filter(pc.equal(q["source_table"], "clicks")).num_rows


@pytest.mark.parametrize("source, silver_source", [("taobao", "taobao"), ("diginetica", "diginetica_views")])
def test_replayed_events_carry_the_batch_ids_and_users(gold_lake, sliced_data: Path, source, silver_source):
    key = get_settings().pseudonymization_key.get_secret_value().encode()
    events, malformed = read_source(source, sliced_data)
    silver = _silver(gold_lake, silver_source)
    replayed = {e["event_id"]: e for e in events}

    # Every cleaned row was replayed under its id; the replayed extras are rows the
    # batch quarantined (bad timestamps, empty users, duplicates), never unknown ones.
    assert silver and set(silver) <= set(replayed)
    assert len(set(replayed) - set(silver)) <= _quarantined(gold_lake)
    for event_id, row in list(silver.items())[:2000]:
        event = replayed[event_id]
        assert row["user_id"] == pseudonymize(event["user_id"], "user", key=key)
        assert row["session_id"] == pseudonymize(event["session_id"], "session", key=key)
        assert (row["item_id"], row["event_type"], row["ts"]) == (event["item_id"], event["event_type"], event["ts"])


def test_malformed_taobao_lines_are_kept_for_the_dead_letter_topic(sliced_data: Path):
    _, malformed = read_source("taobao", sliced_data)
    raws = {m.raw for m in malformed}
    assert "100001,1715,1464116,zzz,1511658100" in raws
    assert "100002,1715,1464116,pv,not-a-time" in raws
    assert "100004,1715,1464116,pv,1511658100,surplus" in raws
    assert all(m.where.startswith("user_behavior_") and m.error for m in malformed)
