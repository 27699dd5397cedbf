"""The report's plotly figures, one function per chart, each built from a DemoRecord.

    fig = throughput_chart(record)   # a go.Figure; report.py places it on the page

Every builder returns a figure even when its data is missing: the title stays and a
line in the plot says what is missing, so the page always holds every chart.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from demo.observe import Interval, intervals
from demo.record import DemoRecord, to_utc

P99_TARGET_MS = 250.0  # the stream's latency target (stream/metrics.py)
_GREEN, _RED, _BLUE, _ORANGE, _GREY = "#2e7d32", "#c62828", "#1f77b4", "#ff7f0e", "#888888"
_PURPLE = "#7b4fb0"


def naive_utc(moment: datetime) -> datetime:
    # plotly.js does not read UTC offsets in dates: give it naive UTC, label axes "UTC".
    return to_utc(moment).replace(tzinfo=None)


def _t(at: float) -> datetime:
    return naive_utc(to_utc(at))


def _empty(fig: go.Figure, text: str) -> go.Figure:
    """A chart whose data is missing: its title stays, the axes go, a line says why."""
    fig.add_annotation(
        text=text, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False, font={"size": 16, "color": _GREY}
    )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.for_each_annotation(lambda a: a.update(text="") if a.text != text else None)
    fig.update_layout(height=200, showlegend=False)
    return fig


def _layout(fig: go.Figure, title: str, height: int = 380, **axes: Any) -> go.Figure:
    settings = {
        "title": {"text": title, "x": 0.01},
        "template": "plotly_white",
        "height": height,
        "margin": {"l": 70, "r": 30, "t": 60, "b": 50},
        "legend": {"orientation": "h", "y": -0.18},
    }
    fig.update_layout(**{**settings, **axes})
    return fig


def _mark_swap(fig: go.Figure, record: DemoRecord) -> None:
    """The swap line, and one time range for every time chart (failed scrapes included),
    so the charts line up one above the other."""
    if record.samples:
        fig.update_xaxes(range=[_t(record.samples[0].at), _t(record.samples[-1].at)])
    if record.swap is None:
        return
    at = naive_utc(record.swap.at)
    fig.add_shape(
        type="line", x0=at, x1=at, xref="x", yref="paper", y0=0, y1=1, line={"color": _RED, "dash": "dash", "width": 2}
    )
    fig.add_annotation(
        x=at,
        y=1.0,
        xref="x",
        yref="paper",
        yanchor="bottom",
        showarrow=False,
        text=f"swap v{record.swap.from_version or '?'} → v{record.swap.to_version}",
        font={"color": _RED},
    )


def _series(rows: list[Interval], value) -> tuple[list[datetime | None], list[float | None]]:
    """x/y for a line that breaks where a scrape was missed (non-adjacent intervals)."""
    xs: list[datetime | None] = []
    ys: list[float | None] = []
    for i, row in enumerate(rows):
        if i and rows[i - 1].end != row.start:
            xs.append(None)
            ys.append(None)
        xs.append(_t(row.end))
        ys.append(value(row))
    return xs, ys


# ---------------------------------------------------------------------------- charts


def throughput_chart(record: DemoRecord) -> go.Figure:
    rows = intervals(record.samples)
    # No subplot titles: they sit where the swap label goes; the y titles say enough.
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08)
    _layout(fig, "Scored events per second and produce→scored latency (p50 / p99)", height=560)
    if not rows:
        return _empty(fig, "no metrics were scraped from the worker")
    # Read first and dotted, so the scored line (nearly the same) is drawn on top of it.
    for name, get, line in (
        ("read / s", lambda r: r.events_in_per_s, {"color": _GREY, "dash": "dot", "width": 1.5}),
        ("scored / s", lambda r: r.scored_per_s, {"color": _BLUE, "width": 2}),
        ("dead-lettered / s", lambda r: r.dlq_per_s, {"color": _RED}),
    ):
        xs, ys = _series(rows, get)
        fig.add_trace(go.Scatter(x=xs, y=ys, name=name, mode="lines", line=line), row=1, col=1)
    for name, get, color in (("p50", lambda r: r.p50, _PURPLE), ("p99", lambda r: r.p99, _ORANGE)):
        xs, ys = _series(rows, lambda r, g=get: None if g(r) is None else g(r) * 1000)
        fig.add_trace(
            go.Scatter(
                x=xs, y=ys, name=name, mode="lines+markers", marker={"size": 3}, line={"color": color, "width": 1.5}
            ),
            row=2,
            col=1,
        )
    # A trace, not add_hline: shapes on a log axis take log10 coordinates.
    ends = [_t(rows[0].start), _t(rows[-1].end)]
    fig.add_trace(
        go.Scatter(
            x=ends,
            y=[P99_TARGET_MS] * 2,
            mode="lines",
            name=f"p99 target {P99_TARGET_MS:.0f} ms",
            line={"color": _GREY, "dash": "dot", "width": 1},
        ),
        row=2,
        col=1,
    )
    fig.update_yaxes(title_text="events / s", rangemode="tozero", row=1, col=1)
    # Log scale: p50 in tens of ms and a backlog's p99 in seconds both stay readable.
    fig.update_yaxes(title_text="produce→scored, ms (log)", type="log", dtick=1, row=2, col=1)
    fig.update_xaxes(title_text="time (UTC)", row=2, col=1)
    _mark_swap(fig, record)
    return fig


def lag_chart(record: DemoRecord) -> go.Figure:
    fig = _layout(go.Figure(), "Consumer lag (all partitions)", xaxis_title="time (UTC)", yaxis_title="records behind")
    points = [s for s in record.samples]
    if not any(s.up and s.lag is not None for s in points):
        return _empty(fig, "no consumer lag was scraped (no partition assigned or no samples)")
    fig.add_trace(
        go.Scatter(
            x=[_t(s.at) for s in points],
            y=[s.lag if s.up else None for s in points],
            mode="lines",
            fill="tozeroy",
            name="lag",
            line={"color": _BLUE},
        )
    )
    fig.update_yaxes(rangemode="tozero")
    _mark_swap(fig, record)
    return fig


def dlq_chart(record: DemoRecord) -> go.Figure:
    fig = _layout(go.Figure(), "Dead-lettered events by reason", xaxis_title="events", yaxis_title="reason")
    if not record.dlq_by_reason:
        return _empty(fig, "no event was dead-lettered")
    items = sorted(record.dlq_by_reason.items(), key=lambda kv: kv[1])
    labels = [r if len(r) <= 60 else r[:57] + "…" for r, _ in items]
    fig.add_trace(
        go.Bar(
            x=[n for _, n in items],
            y=labels,
            orientation="h",
            text=[f"{n:,}" for _, n in items],
            textposition="auto",
            hovertext=[r for r, _ in items],
            marker={"color": _RED},
        )
    )
    fig.update_layout(height=max(300, 120 + 34 * len(items)), margin={"l": 330})
    return fig


def model_version_chart(record: DemoRecord) -> go.Figure:
    fig = _layout(go.Figure(), "Model version served by the worker", xaxis_title="time (UTC)", yaxis_title="version")
    up = [s for s in record.samples if s.up and s.serving_version is not None]
    if not up:
        return _empty(fig, "the worker reported no serving model")
    versions = sorted({s.serving_version for s in up}, key=lambda v: (0, int(v)) if v.isdigit() else (1, v))
    fig.add_trace(
        go.Scatter(
            x=[_t(s.at) for s in record.samples],
            y=[f"v{s.serving_version}" if s.up and s.serving_version else None for s in record.samples],
            mode="lines",
            line={"shape": "hv", "width": 3, "color": _BLUE},
            name="serving",
        )
    )
    fig.update_yaxes(
        type="category",
        categoryorder="array",
        categoryarray=[f"v{v}" for v in versions],
        range=[-0.5, len(versions) - 0.5],
    )  # keep the lowest line off the axis
    if record.swap is None:
        text = (
            f"no swap happened: v{versions[0]} served throughout"
            if len(versions) == 1
            else "no swap recorded by the demo (versions seen: " + ", ".join(f"v{v}" for v in versions) + ")"
        )
        fig.add_annotation(
            x=0.5,
            y=1.0,
            xref="paper",
            yref="paper",
            yanchor="bottom",
            showarrow=False,
            font={"color": _GREY, "size": 14},
            text=text,
        )
    _mark_swap(fig, record)
    return fig


def evaluation_chart(record: DemoRecord) -> go.Figure:
    ev = record.evaluation
    if ev is None:
        fig = _layout(go.Figure(), "Champion vs challenger")
        return _empty(fig, "no evaluation was recorded (retrain did not run)")
    color = _GREEN if ev.decision == "promoted" else _RED
    fig = make_subplots(
        rows=1,
        cols=2,
        column_widths=[0.6, 0.4],
        horizontal_spacing=0.14,
        subplot_titles=(f"{ev.metric} on the unseen slice (95% CI)", "challenger − champion (paired bootstrap)"),
    )
    _layout(fig, f"Champion v{ev.champion.version} vs challenger v{ev.challenger.version}: {ev.decision}", height=420)
    for label, score, c in (
        (f"champion v{ev.champion.version}", ev.champion, _GREY),
        (f"challenger v{ev.challenger.version}", ev.challenger, color),
    ):
        fig.add_trace(
            go.Scatter(
                x=[label],
                y=[score.value],
                mode="markers",
                name=label,
                marker={"size": 14, "color": c},
                error_y=_error(score),
            ),
            row=1,
            col=1,
        )
    fig.add_trace(
        go.Scatter(
            x=["difference"],
            y=[ev.difference.value],
            mode="markers",
            name="difference",
            marker={"size": 14, "color": color, "symbol": "diamond"},
            error_y=_error(ev.difference),
        ),
        row=1,
        col=2,
    )
    fig.add_hline(
        y=ev.margin,
        row=1,
        col=2,
        line={"color": color, "dash": "dash"},
        annotation_text=f"margin {ev.margin:+.4g}",
        annotation_position="top right",
    )
    fig.add_hline(y=0, row=1, col=2, line={"color": _GREY, "width": 1})
    fig.update_xaxes(range=[-0.7, 1.7], row=1, col=1)
    fig.update_yaxes(title_text=ev.metric, row=1, col=1)
    fig.update_yaxes(title_text=f"Δ {ev.metric}", row=1, col=2)
    fig.update_layout(showlegend=False)
    return fig


def _error(est: Any) -> dict[str, Any]:
    if est.ci_low is None or est.ci_high is None:
        return {"visible": False}
    return {
        "type": "data",
        "symmetric": False,
        "array": [est.ci_high - est.value],
        "arrayminus": [est.value - est.ci_low],
        "thickness": 2,
        "width": 10,
    }


def accounting_chart(record: DemoRecord) -> go.Figure:
    acc = record.accounting
    if acc is None:
        return _empty(
            _layout(go.Figure(), "Rows in = folded + dead-lettered"),
            "no fold accounting was recorded (the fold did not run)",
        )
    verdict = "balances" if acc.balanced else f"does NOT balance: {acc.unaccounted:+,} rows"
    fig = _layout(
        go.Figure(),
        f"Rows in = folded + dead-lettered: {verdict}",
        xaxis_title="events",
        barmode="stack",
        height=300,
        legend={"orientation": "h", "y": -0.3, "traceorder": "normal"},
    )
    fig.add_trace(
        go.Bar(
            y=["rows in"],
            x=[acc.rows_in],
            name="rows in",
            orientation="h",
            marker={"color": _BLUE},
            text=[f"{acc.rows_in:,}"],
            textposition="inside",
        )
    )
    parts = [("folded", acc.folded, _GREEN), ("dead-lettered", acc.dead_lettered, _RED)]
    if not acc.balanced:
        parts.append(("unaccounted", abs(acc.unaccounted), _ORANGE))
    for name, n, c in parts:
        fig.add_trace(
            go.Bar(
                y=["folded + dead-lettered"],
                x=[n],
                name=f"{name} ({n:,})",
                orientation="h",
                marker={"color": c},
                text=[f"{n:,}"],
                textposition="inside",
            )
        )
    fig.update_yaxes(categoryorder="array", categoryarray=["folded + dead-lettered", "rows in"])
    return fig


def stages_chart(record: DemoRecord) -> go.Figure:
    fig = _layout(go.Figure(), "Stage timings", xaxis_title="seconds", yaxis_title="stage")
    if not record.stages:
        return _empty(fig, "no stage was recorded")
    names = [s.name for s in record.stages]
    fig.add_trace(
        go.Bar(
            x=[s.seconds for s in record.stages],
            y=names,
            orientation="h",
            text=[f"{s.seconds:,.1f} s" for s in record.stages],
            textposition="auto",
            marker={"color": _BLUE},
        )
    )
    fig.update_yaxes(categoryorder="array", categoryarray=names[::-1])
    fig.update_layout(height=max(260, 110 + 40 * len(names)))
    return fig
