"""How the worker tells a broker that lost its data (pure logic; the real broker restart
is in tests/integration/test_stream_broker_restart.py)."""

from __future__ import annotations

import logging

from faust.types import TP

from stream.broker_loss import BrokerLossReport, known_next_offsets, lost_positions

A, B, C = TP("clicks", 0), TP("clicks", 1), TP("clicks", 2)


def test_a_position_past_the_end_of_the_log_is_lost():
    assert lost_positions({A: 98, B: 10, C: None}, {A: 0, B: 10, C: 0}) == {A: (98, 0)}
    assert lost_positions({A: 5}, {}) == {}  # no end known: nothing to say


def test_known_next_offsets_take_the_highest_of_read_and_committed():
    read = {A: 9, B: None}  # last offsets read
    assert known_next_offsets({A: 4, B: 0, C: 7}, plus_one=[read]) == {A: 10, C: 7}


def test_one_warning_per_rebalance_and_every_loss_counted(caplog):
    report, seen = BrokerLossReport(), []
    report.subscribe(lambda where, tps: seen.append((where, tps)))
    with caplog.at_level(logging.INFO, logger="stream.broker_loss"):
        report.report("input", {A: (98, 0)}, generation=3)
        report.report("changelog", {TP("sessions-changelog", 0): (70, 0)}, generation=3)
        report.report("input", {B: (5, 1)}, generation=4)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and all("lost its data" in r.getMessage() for r in warnings)
    assert "clicks[0] 98>0" in warnings[0].getMessage()
    assert [where for where, _ in seen] == ["input", "changelog", "input"]
