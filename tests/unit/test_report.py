"""The demo report: one offline HTML file holding every chart, built from a DemoRecord."""

from __future__ import annotations

import json
import math
import random
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from demo.observe import Sample
from demo.record import (
    Accounting,
    DemoRecord,
    Estimate,
    Evaluation,
    LineageStep,
    ModelScore,
    Stage,
    Swap,
    TableVersion,
)
from demo.report import render_report, write_report

T0 = datetime(2026, 11, 25, 10, 0, tzinfo=timezone.utc)
BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.35, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0, math.inf)
CHART_IDS = (
    "chart-throughput",
    "chart-lag",
    "chart-model-version",
    "chart-evaluation",
    "chart-dlq",
    "chart-accounting",
    "chart-stages",
    "table-lineage",
    "table-stages",
    "decision",
)


def _samples(start: float) -> list[Sample]:
    """A replay burst on v1, a quiet fold/retrain with a worker restart, a burst on v2."""
    rng = random.Random(7)
    events = scored = dlq = lag = 0.0
    buckets = [0.0] * len(BOUNDS)
    started_at = start - 30
    out = []
    for t in range(0, 300):
        at = start + t
        if 150 <= t < 153:
            out.append(Sample(at=at, up=False))  # the worker restarting: a gap
            if t == 152:  # the new process counts from zero again
                events = scored = dlq = 0.0
                buckets = [0.0] * len(BOUNDS)
                started_at = at
            continue
        burst = t < 110 or 230 <= t < 270
        produced = rng.gauss(1670, 120) if burst else 0.0
        # A rebalance at 40 s and the model swap slow the worker down for a moment.
        capacity = 250.0 if 40 <= t < 47 or 222 <= t < 224 else rng.gauss(2100, 250)
        done = min(produced + lag, capacity)
        lag = max(0.0, lag + produced - done)
        events += done
        bad = int(done * 0.0007)
        dlq += bad
        scored += done - bad
        median = 0.035 + lag / 4000  # latency grows with the backlog
        for _ in range(int(done - bad) // 10):
            seconds = rng.lognormvariate(math.log(median), 0.55)
            for i, le in enumerate(BOUNDS):
                if seconds <= le:
                    buckets[i] += 10
        out.append(
            Sample(
                at=at,
                events_in=events,
                scored=scored,
                dlq_by_step={"parse_validate": dlq},
                lag=lag,
                model_name="propensity",
                serving_version="1" if t < 222 else "2",
                latency_buckets=tuple(zip(BOUNDS, buckets)),
                latency_count=buckets[-1],
                latency_sum=0.0,
                started_at=started_at,
            )
        )
    return out


def sample_record() -> DemoRecord:
    """A realistic hand-made record of one demo run (figures shaped like the real slice)."""
    stages, at = [], T0
    for name, seconds, counts in (
        ("batch: ingest, clean, features", 212.4, {"clicks": 1_450_112, "orders": 99_441}),
        ("train propensity champion", 95.2, {"examples": 310_554}),
        ("fine-tune sentiment", 120.0, {"examples seen": 2_048}),
        ("bulk-score reviews", 41.7, {"reviews": 8_912}),
        ("broker and worker up", 18.3, {}),
        ("replay", 130.6, {"events": 250_000}),
        ("fold", 35.1, {"folded": 249_821, "dead-lettered": 179}),
        ("retrain and evaluate", 82.9, {"examples": 61_234}),
        ("promote and swap", 6.2, {"version": 2}),
        ("shutdown", 4.8, {}),
    ):
        stages.append(Stage(name, at, seconds, counts))
        at += timedelta(seconds=seconds)
    replay_start = stages[5].started_at.timestamp()
    return DemoRecord(
        title="shopflow demo",
        created_at=at,
        stages=stages,
        samples=_samples(replay_start),
        dlq_by_reason={
            "ts: bad timestamp 'never'": 112,
            "event_type: 'teleport' is not one of view, add_to_cart, favorite, purchase, search": 37,
            "user_id: required": 21,
            "JSONDecodeError: Expecting value": 9,
        },
        evaluation=Evaluation(
            metric="roc_auc",
            champion=ModelScore("1", 0.612, 0.598, 0.626),
            challenger=ModelScore("2", 0.634, 0.620, 0.648),
            difference=Estimate(0.022, 0.011, 0.033),
            margin=0.005,
            decision="promoted",
            reason="the lower bound of the paired difference (+0.011) is above the margin (+0.005)",
            slice={"from": "2017-12-03T10:40:00Z", "to": "2017-12-03T11:10:00Z", "users": 4_821, "examples": 61_234},
        ),
        accounting=Accounting(rows_in=250_000, folded=249_821, dead_lettered=179, duplicates_dropped=312),
        lineage=[
            LineageStep(
                "fold",
                [TableVersion("silver/clicks", 3)],
                [TableVersion("silver/clicks", 4), TableVersion("quarantine/clicks_dlq", 1)],
                {"clicks.scored[0]": (0, 62_511), "clicks.scored[1]": (0, 62_430), "clicks.dlq[0]": (0, 179)},
            ),
            LineageStep("features", [TableVersion("silver/clicks", 4)], [TableVersion("gold/propensity_examples", 5)]),
            LineageStep("retrain", [TableVersion("gold/propensity_examples", 5)], []),
        ],
        swap=Swap(at=datetime.fromtimestamp(replay_start + 222, tz=timezone.utc), from_version="1", to_version="2"),
        summary={"events replayed": 250_000, "sentiment examples seen": 2_048},
    )


def _outside_plotlyjs(page: str) -> str:
    head, _, rest = page.partition('<script type="text/javascript">/**\n* plotly.js')
    return head + rest.partition("</script>")[2]


def test_report_holds_every_chart_and_the_figures(tmp_path: Path):
    path = write_report(sample_record(), tmp_path / "out" / "report.html")
    page = path.read_text(encoding="utf-8")
    for div_id in CHART_IDS:
        assert f'id="{div_id}"' in page, div_id
    for title in (
        "Scored events per second",
        "Consumer lag",
        "Dead-lettered events by reason",
        "Model version served by the worker",
        "Champion v1 vs challenger v2: promoted",
        "Rows in = folded + dead-lettered: balances",
        "Stage timings",
        "Lineage: Delta versions and Kafka offsets",
    ):
        assert title in page, title
    assert page.count("Plotly.newPlot") == 7
    assert "Decision: promoted" in page and "paired difference (+0.011)" in page
    assert "silver/clicks @ v4" in page and "clicks.scored[0]: 0 → 62,511" in page
    assert "swap v1" in page


def test_report_is_offline(tmp_path: Path):
    page = write_report(sample_record(), tmp_path / "r.html").read_text(encoding="utf-8")
    assert page.count("* plotly.js v") == 1  # the library inlined exactly once
    assert not re.search(r"<script[^>]*\bsrc=", page, re.I)
    assert not re.search(r"<link[^>]*\bhref=", page, re.I)
    assert not re.search(r"<(img|iframe)[^>]*\bsrc=", page, re.I)
    # plotly.js itself holds URL strings in its code; nothing else may.
    mine = _outside_plotlyjs(page)
    assert len(mine) < len(page) - 1_000_000
    assert "http://" not in mine and "https://" not in mine


def test_record_round_trips_through_json_and_a_dict_renders_the_same(tmp_path: Path):
    record = sample_record()
    text = record.to_json()
    assert DemoRecord.from_json(text) == record
    data = json.loads(text)
    assert data["samples"][0]["latency_buckets"][-1][0] == "+Inf"
    assert render_report(data) == render_report(record)


def test_missing_parts_are_said_on_their_charts(tmp_path: Path):
    only_stages = DemoRecord(stages=[Stage("batch", T0, 10.0, {"clicks": 5})], summary={"broken figure": float("nan")})
    page = write_report(only_stages, tmp_path / "r.html").read_text(encoding="utf-8")
    for div_id in CHART_IDS:
        assert f'id="{div_id}"' in page, div_id
    for text in (
        "no metrics were scraped",
        "the worker reported no serving model",
        "retrain did not run",
        "no event was dead-lettered",
        "the fold did not run",
        "no lineage was recorded",
    ):
        assert text in page, text
    assert json.loads(only_stages.to_json())["summary"]["broken figure"] is None

    record = sample_record()
    refused = DemoRecord.from_dict(
        {
            **record.to_dict(),
            "swap": None,
            "accounting": {"rows_in": 10, "folded": 7, "dead_lettered": 1},
            "evaluation": {
                **record.to_dict()["evaluation"],
                "decision": "not promoted",
                "reason": "the interval's lower bound -0.004 is below the margin",
            },
        }
    )
    page = render_report(refused)
    assert "Decision: not promoted" in page and "is below the margin" in page
    assert "no swap recorded by the demo (versions seen: v1, v2)" in page
    assert "does NOT balance: +2 rows" in page


def test_a_decision_outside_the_two_is_refused():
    with pytest.raises(ValueError):
        Evaluation.from_dict({**sample_record().to_dict()["evaluation"], "decision": "maybe"})


def test_the_swap_is_found_in_the_samples():
    record = sample_record()
    swap = Swap.from_samples(record.samples)
    assert (swap.from_version, swap.to_version) == ("1", "2")
    assert swap.at == record.swap.at
    assert Swap.from_samples(record.samples, to_version="3") is None
    assert Swap.from_samples([s for s in record.samples if s.serving_version == "1"]) is None


def test_each_stage_links_to_its_mlflow_run() -> None:
    tracked = Stage("train propensity; the gate decides what serves", T0, 12.0, {"version": 1}, run_id="0a1b2c3d4e5f")
    untracked = Stage("batch", T0, 10.0, {"clicks": 5})
    record = DemoRecord.from_json(DemoRecord(stages=[tracked, untracked]).to_json())
    assert [s.run_id for s in record.stages] == ["0a1b2c3d4e5f", None]
    table = render_report(record).split('id="table-stages"', 1)[1].split("</table>", 1)[0]
    assert "<th>MLflow run</th>" in table and "<code>0a1b2c3d4e5f</code>" in table


def test_the_report_says_what_serves_and_why(tmp_path: Path):
    record = DemoRecord.from_dict(
        {
            **sample_record().to_dict(),
            "serving": {
                "propensity": {"version": 2, "kind": "fallback_baseline", "why": "v1 refused by the baseline gate"},
                "sentiment": {"version": None, "kind": None, "why": "no champion: no version passed the gate"},
            },
        }
    )
    assert DemoRecord.from_json(record.to_json()).serving == record.serving
    page = render_report(record)
    assert 'id="serving"' in page
    assert "<b>propensity</b>: v2, the fallback baseline, serves — v1 refused by the baseline gate" in page
    assert "<b>sentiment</b>: nothing serves — no champion" in page
