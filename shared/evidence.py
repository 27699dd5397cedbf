"""Paired evidence on the same rows: a bootstrap over users of one model against another.

Both models score the same held-out slice. Resampling *users* (with all of their rows)
rather than rows keeps the correlation between one shopper's events inside each draw,
so the interval is honest for data where users repeat (a task without users resamples
rows: each row is its own group). Each draw evaluates both models on the same resampled
rows, so the interval is on the *difference* (paired), which is much narrower than
comparing two separate intervals. Pure numpy: the promotion gate (shared.gate), the
retrain job and the trainer all use it.

    cmp = paired_bootstrap(y, champion_scores, challenger_scores, users, metric="roc_auc")
    cmp.difference.low > margin   # promote only then
    row_scores(proba, "macro_f1", score_index=2)   # what the metric reads per row
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

Metric = Callable[[np.ndarray, np.ndarray, np.ndarray], float]  # (y, score, weight) -> value
# One model's scores on the slice, ready to be evaluated under many row weightings.
Prepared = Callable[[np.ndarray], float]  # weight -> value


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


def _prepare_roc_auc(y: np.ndarray, score: np.ndarray, num_labels: int = 2) -> Prepared:
    # Sorted once: a bootstrap draw only changes the weights, never the order.
    order = np.argsort(score, kind="mergesort")
    y_sorted = y[order]
    _, starts = np.unique(score[order], return_index=True)

    def value(weight: np.ndarray) -> float:
        w = weight[order].astype(np.float64)
        # Rank-sum with ties: group equal scores, each positive earns the negatives below
        # it plus half the negatives tied with it.
        neg_per_group = np.add.reduceat(np.where(y_sorted == 0, w, 0.0), starts) if len(w) else np.zeros(0)
        pos_per_group = np.add.reduceat(np.where(y_sorted == 1, w, 0.0), starts) if len(w) else np.zeros(0)
        neg_below = np.cumsum(neg_per_group) - neg_per_group
        total_pos, total_neg = pos_per_group.sum(), neg_per_group.sum()
        if total_pos == 0 or total_neg == 0:
            return float("nan")
        wins = (pos_per_group * (neg_below + 0.5 * neg_per_group)).sum()
        return float(wins / (total_pos * total_neg))

    return value


def _prepare_average_precision(y: np.ndarray, score: np.ndarray, num_labels: int = 2) -> Prepared:
    order = np.argsort(-score, kind="mergesort")
    positive = y[order] == 1

    def value(weight: np.ndarray) -> float:
        w = weight[order].astype(np.float64)
        tp = np.cumsum(w * positive)
        seen = np.cumsum(w)
        total = tp[-1] if len(tp) else 0.0
        if total == 0:
            return float("nan")
        precision = np.divide(tp, seen, out=np.zeros_like(tp), where=seen > 0)
        return float((precision * w * positive).sum() / total)

    return value


def _prepare_macro_f1(y: np.ndarray, predicted: np.ndarray, num_labels: int = 2) -> Prepared:
    """`predicted` holds each row's predicted label; every one of `num_labels` labels
    counts, one that is neither true nor predicted scoring 0 (as sklearn's zero_division=0)."""
    k = max(int(num_labels), int(y.max(initial=-1)) + 1, int(predicted.max(initial=-1)) + 1)
    true = y.astype(np.int64)
    pred = predicted.astype(np.int64)
    hit = true == pred

    def value(weight: np.ndarray) -> float:
        w = weight.astype(np.float64)
        tp = np.bincount(true[hit], weights=w[hit], minlength=k)
        actual = np.bincount(true, weights=w, minlength=k)
        said = np.bincount(pred, weights=w, minlength=k)
        denominator = actual + said  # 2 tp + fp + fn
        f1 = np.divide(2 * tp, denominator, out=np.zeros(k), where=denominator > 0)
        return float(f1[:num_labels].mean()) if num_labels else float("nan")

    return value


_PREPARE: dict[str, Callable[..., Prepared]] = {
    "roc_auc": _prepare_roc_auc,
    "pr_auc": _prepare_average_precision,
    "macro_f1": _prepare_macro_f1,
}
METRICS = tuple(_PREPARE)


def weighted_roc_auc(y: np.ndarray, score: np.ndarray, weight: np.ndarray) -> float:
    """ROC-AUC with integer row weights (bootstrap counts), ties counted half."""
    return _prepare_roc_auc(np.asarray(y), np.asarray(score))(np.asarray(weight))


def weighted_average_precision(y: np.ndarray, score: np.ndarray, weight: np.ndarray) -> float:
    return _prepare_average_precision(np.asarray(y), np.asarray(score))(np.asarray(weight))


def weighted_macro_f1(y: np.ndarray, predicted: np.ndarray, weight: np.ndarray, num_labels: int) -> float:
    return _prepare_macro_f1(np.asarray(y), np.asarray(predicted), num_labels)(np.asarray(weight))


def row_scores(proba: np.ndarray, metric: str, score_index: int) -> np.ndarray:
    """What `metric` reads of each row's class probabilities: P(scored label) for the
    ranking metrics, the predicted label (argmax) for macro-F1."""
    proba = np.asarray(proba)
    if metric == "macro_f1":
        return proba.argmax(axis=1).astype(np.float64)
    return proba[:, score_index].astype(np.float64)


def bootstrap(
    y: Sequence[int] | np.ndarray,
    models: Sequence[Sequence[float] | np.ndarray],
    groups: Sequence[Any],
    *,
    metric: str = "roc_auc",
    resamples: int = 1000,
    seed: int = 13,
    num_labels: int = 2,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Every model's metric on the full slice (k,) and on each usable draw (draws, k),
    all models on the same resampled groups; and the number of groups."""
    if metric not in _PREPARE:
        raise ValueError(f"no bootstrap for metric {metric!r}: choose one of {', '.join(METRICS)}")
    y_ = np.asarray(y, dtype=np.int64)
    scores = [np.asarray(m, dtype=np.float64) for m in models]
    if any(len(s) != len(y_) for s in scores) or len(groups) != len(y_):
        raise ValueError("labels, every score list and groups must have one entry per row")
    prepared = [_PREPARE[metric](y_, s, num_labels) for s in scores]
    _, group_index = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)
    n_groups = int(group_index.max()) + 1 if len(group_index) else 0
    full = np.asarray([fn(np.ones(len(y_), dtype=np.int64)) for fn in prepared])

    rng = np.random.default_rng(seed)
    draws: list[list[float]] = []
    for _ in range(resamples):
        counts = np.bincount(rng.integers(0, n_groups, n_groups), minlength=n_groups)
        weight = counts[group_index]
        values = [fn(weight) for fn in prepared]
        if np.isnan(values).any():
            continue  # a draw with one class only says nothing about ranking
        draws.append(values)
    return full, np.asarray(draws, dtype=np.float64).reshape(len(draws), len(scores)), n_groups


def percentile_interval(value: float, draws: np.ndarray, confidence: float) -> Interval:
    if len(draws) == 0:
        return Interval(float(value), float("nan"), float("nan"))
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    return Interval(float(value), float(low), float(high))


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
    num_labels: int = 2,
) -> Comparison:
    """Percentile intervals for both models and their difference, resampling groups."""
    full, draws, n_groups = bootstrap(
        y, [champion, challenger], groups, metric=metric, resamples=resamples, seed=seed, num_labels=num_labels
    )
    return Comparison(
        metric=metric,
        champion=percentile_interval(full[0], draws[:, 0], confidence),
        challenger=percentile_interval(full[1], draws[:, 1], confidence),
        difference=percentile_interval(full[1] - full[0], draws[:, 1] - draws[:, 0], confidence),
        rows=len(y),
        groups=n_groups,
        resamples=len(draws),
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
