"""The demo's report: one self-contained offline HTML file (plotly's JavaScript inlined once).

    path = write_report(record, Path("out/demo-report.html"))   # record: DemoRecord or its dict

The machine that runs the demo has no network, so the page references nothing outside
itself: no CDN, no fonts, no images. Every chart is always present; when its data is
missing (no swap, retrain did not run, no metrics scraped) the chart says so instead.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from demo.charts import (
    accounting_chart,
    dlq_chart,
    evaluation_chart,
    lag_chart,
    model_version_chart,
    naive_utc,
    stages_chart,
    throughput_chart,
)
from demo.observe import totals
from demo.record import DemoRecord

_CONFIG = {"displaylogo": False, "responsive": True}


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value)


# ---------------------------------------------------------------------------- tables


def accounting_line(record: DemoRecord) -> str:
    acc = record.accounting
    if acc is None:
        return ""
    mark = "=" if acc.balanced else "≠"
    cls = "promoted" if acc.balanced else "refused"
    return (
        f'<div id="accounting-equation" class="decision {cls}"><b>{acc.rows_in:,}</b> rows in '
        f"{mark} <b>{acc.folded:,}</b> folded + <b>{acc.dead_lettered:,}</b> dead-lettered"
        + ("" if acc.balanced else f" ({acc.unaccounted:+,} unaccounted)")
        + f'<br><span class="muted">{acc.duplicates_dropped:,} duplicate records '
        f"(event ids already folded) were dropped, not counted as rows in</span></div>"
    )


def _table(head: list[str], rows: list[list[str]], table_id: str) -> str:
    """An HTML table; cells are already escaped HTML."""
    th = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table id="{table_id}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def lineage_table(record: DemoRecord) -> str:
    if not record.lineage:
        return '<p class="missing" id="table-lineage">no lineage was recorded</p>'

    def tables(items) -> str:
        return "<br>".join(f"{html.escape(t.table)} @ v{'—' if t.version is None else t.version}" for t in items) or "—"

    rows = [
        [
            html.escape(step.step),
            tables(step.reads),
            tables(step.writes),
            "<br>".join(f"{html.escape(k)}: {a:,} → {b:,} ({b - a:,})" for k, (a, b) in sorted(step.offsets.items()))
            or "—",
        ]
        for step in record.lineage
    ]
    return _table(
        [
            "step",
            "read (Delta table @ version)",
            "wrote (Delta table @ version)",
            "Kafka offsets read: from → to (records)",
        ],
        rows,
        "table-lineage",
    )


def stages_table(record: DemoRecord) -> str:
    rows = [
        [
            html.escape(s.name),
            naive_utc(s.started_at).strftime("%H:%M:%S"),
            f"{s.seconds:,.1f}",
            ", ".join(f"{html.escape(str(k))}: {html.escape(_fmt(v))}" for k, v in s.counts.items()) or "—",
            f"<code>{html.escape(s.run_id)}</code>" if s.run_id else "—",
        ]
        for s in record.stages
    ]
    return _table(["stage", "started (UTC)", "seconds", "counts", "MLflow run"], rows, "table-stages")


def decision_block(record: DemoRecord) -> str:
    ev = record.evaluation
    if ev is None:
        return '<div id="decision" class="decision none">No evaluation: retrain did not run, or had no champion to compare with.</div>'
    cls = "promoted" if ev.decision == "promoted" else "refused"
    d = ev.difference
    ci = "" if d.ci_low is None else f" (95% CI {d.ci_low:+.4f} … {d.ci_high:+.4f})"
    slice_ = ", ".join(f"{html.escape(str(k))}: {html.escape(_fmt(v))}" for k, v in ev.slice.items())
    return (
        f'<div id="decision" class="decision {cls}"><b>Decision: '
        f"{html.escape(ev.decision)}</b> — {html.escape(ev.reason)}<br>"
        f"Δ {html.escape(ev.metric)} = {d.value:+.4f}{ci}, margin {ev.margin:+.4f}"
        + (f'<br><span class="muted">slice: {slice_}</span>' if slice_ else "")
        + "</div>"
    )


def serving_block(record: DemoRecord) -> str:
    """Which model serves each task at the end of the run and why: a trained model that
    passed the baseline gate, the fallback baseline, or nothing."""
    if not record.serving:
        return ""
    lines = []
    for task, s in record.serving.items():
        if s.get("version") is None:
            lines.append(f"<b>{html.escape(task)}</b>: nothing serves — {html.escape(str(s.get('why', '')))}")
        else:
            kind = "the fallback baseline" if s.get("kind") == "fallback_baseline" else f"a {s.get('kind')} model"
            lines.append(
                f"<b>{html.escape(task)}</b>: v{html.escape(str(s['version']))}, {html.escape(kind)}, serves — "
                f"{html.escape(str(s.get('why', '')))}"
            )
    return '<div id="serving" class="decision none">What serves, and why:<br>' + "<br>".join(lines) + "</div>"


def _cards(record: DemoRecord) -> str:
    figures: dict[str, Any] = {}
    if record.stages:
        figures["wall time"] = f"{sum(s.seconds for s in record.stages) / 60:.1f} min"
    if any(s.up for s in record.samples):
        figures["events scored (worker)"] = int(totals(record.samples)["scored"])
    if record.dlq_by_reason:
        figures["dead-lettered"] = sum(record.dlq_by_reason.values())
    if record.evaluation is not None:
        figures["decision"] = record.evaluation.decision
    figures["swap"] = f"v{record.swap.from_version or '?'} → v{record.swap.to_version}" if record.swap else "none"
    if record.accounting is not None:
        figures["rows balance"] = "balances" if record.accounting.balanced else "does NOT balance"
    figures.update(record.summary)
    return "".join(
        f'<div class="card"><div class="v">{html.escape(_fmt(v))}</div><div class="k">{html.escape(str(k))}</div></div>'
        for k, v in figures.items()
    )


# ---------------------------------------------------------------------------- page

# (anchor, title, chart builder, caption)
_SECTIONS = (
    (
        "throughput",
        "Throughput and latency",
        throughput_chart,
        "Events read, scored and dead-lettered per second (top) and the median and 99th "
        "percentile time from a click's Kafka timestamp to its score being produced (bottom), "
        "per sampling interval; gaps are missed scrapes.",
    ),
    (
        "lag",
        "Consumer lag",
        lag_chart,
        "How many click records the worker had not yet processed, summed over partitions.",
    ),
    (
        "model-version",
        "Serving model",
        model_version_chart,
        "The model version the worker scored with at each scrape; the dashed line marks the "
        "moment it swapped to the promoted model without a restart.",
    ),
    (
        "evaluation",
        "Champion vs challenger",
        evaluation_chart,
        "Both models on the same most recent slice neither trained on, with 95% bootstrap "
        "intervals (left), and the paired difference whose lower bound must clear the margin "
        "for a promotion (right).",
    ),
    (
        "dlq",
        "Dead-letter queue",
        dlq_chart,
        "Events the worker or the fold set aside, by the reason recorded with each.",
    ),
    (
        "accounting",
        "Fold accounting",
        accounting_chart,
        "Every replayed event must end up exactly once in Delta, either folded or "
        "dead-lettered; duplicates the fold dropped are shown apart.",
    ),
    ("stages", "Stage timings", stages_chart, "Wall-clock seconds each stage of the demo took."),
)

_CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;
color:#222;background:#f6f7f9}
header{background:#1f2d3d;color:#fff;padding:22px 40px}
header h1{margin:0 0 4px;font-size:26px} header .muted{color:#b8c4d0}
nav{padding:8px 40px;background:#fff;border-bottom:1px solid #ddd;font-size:14px}
nav a{margin-right:16px;color:#1f77b4;text-decoration:none}
main{max-width:1300px;margin:0 auto;padding:10px 40px 40px}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin-top:14px}
.card{background:#2c3e50;border-radius:6px;padding:8px 14px;min-width:120px}
.card .v{font-size:20px;font-weight:600} .card .k{font-size:12px;color:#b8c4d0}
section{background:#fff;border:1px solid #e2e4e8;border-radius:6px;margin:18px 0;
padding:8px 20px 16px}
section h2{font-size:19px;margin:10px 0 2px}
p.caption{color:#555;margin:2px 0 6px;font-size:14px}
.muted{color:#777} .missing{color:#888;font-style:italic}
table{border-collapse:collapse;width:100%;font-size:13px;margin-top:8px}
th,td{border-bottom:1px solid #e5e5e5;padding:6px 8px;text-align:left;vertical-align:top}
th{background:#f0f2f5}
.decision{padding:10px 14px;border-radius:5px;margin:8px 0;font-size:15px}
.decision.promoted{background:#e8f5e9;border-left:5px solid #2e7d32}
.decision.refused{background:#fdecea;border-left:5px solid #c62828}
.decision.none{background:#f0f0f0;border-left:5px solid #888}
"""


def _figure_html(fig: go.Figure, div_id: str) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config=_CONFIG)


def render_report(record: DemoRecord | dict) -> str:
    """The whole report page as one HTML string (plotly.js inlined in the head)."""
    if not isinstance(record, DemoRecord):
        record = DemoRecord.from_dict(record)
    created = f"written {naive_utc(record.created_at):%Y-%m-%d %H:%M:%S} UTC" if record.created_at else ""
    nav = "".join(f'<a href="#{a}">{html.escape(t)}</a>' for a, t, _, _ in _SECTIONS)
    nav += '<a href="#lineage">Lineage</a>'
    parts = []
    for anchor, title, build, caption in _SECTIONS:
        body = _figure_html(build(record), f"chart-{anchor}")
        if anchor == "evaluation":
            body = serving_block(record) + decision_block(record) + body
        if anchor == "accounting":
            body = accounting_line(record) + body
        if anchor == "stages":
            body += stages_table(record)
        parts.append(
            f'<section id="{anchor}"><h2>{html.escape(title)}</h2>'
            f'<p class="caption">{html.escape(caption)}</p>{body}</section>'
        )
    parts.append(
        '<section id="lineage"><h2>Lineage: Delta versions and Kafka offsets</h2>'
        '<p class="caption">The Delta table versions each step read and wrote, and '
        "the Kafka offset range it consumed per partition (from inclusive, to "
        "exclusive).</p>" + lineage_table(record) + "</section>"
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(record.title)}</title><style>{_CSS}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script></head><body>'
        f'<header><h1>{html.escape(record.title)}</h1><div class="muted">{created}</div>'
        f'<div class="cards">{_cards(record)}</div></header><nav>{nav}</nav>'
        f"<main>{''.join(parts)}</main></body></html>"
    )


def write_report(record: DemoRecord | dict, path: Path | str) -> Path:
    """Write the report to `path` (parents created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render_report(record), encoding="utf-8")
    tmp.replace(path)  # a reader never sees half a report
    return path
