"""jobs.fold's options, result shape and batch bookkeeping (pure logic, no broker, no Delta)."""

from __future__ import annotations

import json

import pytest

from jobs.fold import FoldOptions
from jobs.fold_delta import FoldResult, app_id, first_of_each
from shared.options import parse_options


def test_options_default_to_one_drain_run():
    assert parse_options(FoldOptions, [], prog="shopflow fold") == FoldOptions(follow=False, batch_records=None)


def test_options_are_typed():
    got = parse_options(FoldOptions, ["--follow", "--batch-records", "100", "--max-seconds", "2.5"], prog="f")
    assert got == FoldOptions(follow=True, batch_records=100, max_seconds=2.5)


def test_unknown_options_exit_2():
    with pytest.raises(SystemExit) as exc:
        parse_options(FoldOptions, ["--nope"], prog="f")
    assert exc.value.code == 2


def test_app_ids_name_topic_and_partition():
    assert app_id("clicks.scored", 3) == "fold:clicks.scored:3"


def test_result_is_json():
    result = FoldResult(partitions={"clicks.scored[0]": {"from": 0, "to": 10, "records": 10}}, rows_folded=9)
    assert json.loads(json.dumps(result.to_dict()))["partitions"]["clicks.scored[0]"]["to"] == 10


def test_first_of_each_drops_later_repeats():
    rows = [{"k": "a", "n": 1}, {"k": "b", "n": 2}, {"k": "a", "n": 3}]
    kept, dropped = first_of_each(rows, "k")
    assert [r["n"] for r in kept] == [1, 2] and dropped == 1
