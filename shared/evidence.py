"""Challenger vs champion on the same rows: a paired bootstrap over users.

Both models score the same held-out slice. Resampling *users* (with all of their rows)
rather than rows keeps the correlation between one shopper's events inside each draw,
so the interval is honest for data where users repeat. Each draw evaluates both models
on the same resampled rows, so the interval is on the *difference* (paired), which is
much narrower than comparing two separate intervals.

    cmp = paired_bootstrap(y, champion_scores, challenger_scores, users, metric=roc_auc)
    cmp.difference.low > margin   # promote only then
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

Metric = Callable[[np.ndarray, np.ndarray, np.ndarray], float]  # (y, score, weight) -> value


@dataclass(frozen=True)
class Interval:
    value: float  # on the full slice
    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        return {k: round(v, 6) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Comparison:
    metric: str
    champion: Interval
    challenger: Interval
    difference: Interval  # challenger - champion
    rows: int
    groups: int
    resamples: int  # draws that held both classes (others are skipped)
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "rows": self.rows,
            "groups": self.groups,
            "resamples": self.resamples,
            "confidence": self.confidence,
            "champion": self.champion.to_dict(),
            "challenger": self.challenger.to_dict(),
            "difference": self.difference.to_dict(),
        }


def weighted_roc_auc(y: np.ndarray, score: np.ndarray, weight: np.ndarray) -> float:
    """ROC-AUC with integer row weights (bootstrap counts), ties counted half."""
    order = np.argsort(score, kind="mergesort")
    y, score, weight = y[order], score[order], weight[order].astype(np.float64)
    # Rank-sum with ties: group equal scores, each positive earns the negatives below it
    # plus half the negatives tied with it.
    _, starts = np.unique(score, return_index=True)
    neg_w = np.where(y == 0, weight, 0.0)
    pos_w = np.where(y == 1, weight, 0.0)
    neg_per_group = np.add.reduceat(neg_w, starts)
    pos_per_group = np.add.reduceat(pos_w, starts)
    neg_below = np.cumsum(neg_per_group) - neg_per_group
    total_pos, total_neg = pos_w.sum(), neg_w.sum()
    if total_pos == 0 or total_neg == 0:
        return float("nan")
    wins = (pos_per_group * (neg_below + 0.5 * neg_per_group)).sum()
    return float(wins / (total_pos * total_neg))


def weighted_average_precision(y: np.ndarray, score: np.ndarray, weight: np.ndarray) -> float:
    order = np.argsort(-score, kind="mergesort")
    y, weight = y[order], weight[order].astype(np.float64)
    tp = np.cumsum(weight * (y == 1))
    seen = np.cumsum(weight)
    total = tp[-1] if len(tp) else 0.0
    if total == 0:
        return float("nan")
    precision = np.divide(tp, seen, out=np.zeros_like(tp), where=seen > 0)
    return float((precision * weight * (y == 1)).sum() / total)


METRICS: dict[str, Metric] = {"roc_auc": weighted_roc_auc, "pr_auc": weighted_average_precision}


def paired_bootstrap(
    y: Sequence[int],
    champion: Sequence[float],
    challenger: Sequence[float],
    groups: Sequence[Any],
    *,
    metric: str = "roc_auc",
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 13,
) -> Comparison:
    """Percentile intervals for both models and their difference, resampling groups."""
    if metric not in METRICS:
        raise ValueError(f"no bootstrap for metric {metric!r}: choose one of {', '.join(METRICS)}")
    fn = METRICS[metric]
    y_ = np.asarray(y, dtype=np.int64)
    a = np.asarray(champion, dtype=np.float64)
    b = np.asarray(challenger, dtype=np.float64)
    if not (len(y_) == len(a) == len(b) == len(groups)):
        raise ValueError("labels, both score lists and groups must have one entry per row")
    _, group_index = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)
    n_groups = int(group_index.max()) + 1 if len(group_index) else 0
    ones = np.ones(len(y_), dtype=np.int64)
    full_a, full_b = fn(y_, a, ones), fn(y_, b, ones)

    rng = np.random.default_rng(seed)
    draws_a: list[float] = []
    draws_b: list[float] = []
    for _ in range(resamples):
        counts = np.bincount(rng.integers(0, n_groups, n_groups), minlength=n_groups)
        weight = counts[group_index]
        va, vb = fn(y_, a, weight), fn(y_, b, weight)
        if np.isnan(va) or np.isnan(vb):
            continue  # a draw with one class only says nothing about ranking
        draws_a.append(va)
        draws_b.append(vb)
    da, db = np.asarray(draws_a), np.asarray(draws_b)
    tail = (1.0 - confidence) / 2 * 100

    def interval(value: float, draws: np.ndarray) -> Interval:
        if len(draws) == 0:
            return Interval(value, float("nan"), float("nan"))
        low, high = np.percentile(draws, [tail, 100 - tail])
        return Interval(float(value), float(low), float(high))

    return Comparison(
        metric=metric,
        champion=interval(full_a, da),
        challenger=interval(full_b, db),
        difference=interval(full_b - full_a, db - da),
        rows=len(y_),
        groups=n_groups,
        resamples=len(da),
        confidence=confidence,
    )


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def decide(comparison: Comparison, *, margin: float, min_rows: int = 200) -> Decision:
    """Promote only when the interval's lower bound of the difference clears the margin."""
    diff = comparison.difference
    name = comparison.metric
    if comparison.rows < min_rows:
        return Decision(False, f"evaluation slice too small ({comparison.rows} rows < {min_rows})")
    if np.isnan(diff.low):
        return Decision(False, "no usable bootstrap draw: the slice lacks one of the classes")
    pct = int(round(comparison.confidence * 100))
    span = f"{name} difference {diff.value:+.4f} ({pct}% CI {diff.low:+.4f} .. {diff.high:+.4f})"
    if diff.low > margin:
        return Decision(True, f"challenger better: {span}, lower bound above the margin {margin:+.4f}")
    return Decision(False, f"not proven better: {span}, lower bound not above the margin {margin:+.4f}")
