"""The baseline gate: no version goes live while it is worse than its task's strongest
baseline on the same evaluation rows. `shared.promotion.promote` enforces it for every
path (train, retrain, the loop, the demo, `shopflow models promote`) and every version,
the first included.

A version is refused when, on the primary metric, the point estimate of
(model - strongest baseline) is below -tolerance (settings.models.baseline_tolerance),
or the 95% upper bound of that paired difference (bootstrap over users; over rows where
the task has no users) is below 0. The strongest baseline is the one with the best
point estimate on the same rows. The figures are computed once, before the version is
registered, and kept in its manifest (`gate`); promote() judges them again with the
tolerance in force. A fallback baseline (kind "fallback_baseline") is exempt: it is
what the gate measures against.

    verdict = baseline_gate(y, proba, {"logreg": lr_proba}, users, metric="roc_auc",
                            score_index=1, num_labels=2, tolerance=0.01)
    manifest.with_fields(kind=TRAINED, gate=verdict.to_dict())
    allowed, why = gate_allows(manifest, tolerance=0.01)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shared.evidence import Interval, bootstrap, percentile_interval, row_scores
from shared.manifest import Manifest

CONFIDENCE = 0.95
# manifest["kind"]: what a version is. Manifests without it are trained models.
TRAINED = "trained"
FALLBACK = "fallback_baseline"


@dataclass(frozen=True)
class BaselineFigures:
    """The model against one baseline on the evaluation slice."""

    baseline: str
    metric: str
    model: float
    value: float  # the baseline's
    difference: Interval  # model - baseline, paired percentile interval
    rows: int
    groups: int
    resamples: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "model": round(self.model, 6),
            "baseline": round(self.value, 6),
            "difference": self.difference.to_dict(),
            "rows": self.rows,
            "groups": self.groups,
            "resamples": self.resamples,
        }


@dataclass(frozen=True)
class GateVerdict:
    passed: bool
    reason: str
    metric: str
    tolerance: float
    strongest: str | None
    baselines: dict[str, BaselineFigures] = field(default_factory=dict)
    confidence: float = CONFIDENCE

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": "passed" if self.passed else "refused",
            "reason": self.reason,
            "metric": self.metric,
            "tolerance": self.tolerance,
            "confidence": self.confidence,
            "strongest_baseline": self.strongest,
            "baselines": {name: f.to_dict() for name, f in self.baselines.items()},
        }


def judge(*, value: float, high: float, tolerance: float) -> tuple[bool, str]:
    """The gate's rule on (model - strongest baseline): its point estimate and upper bound."""
    if not (math.isfinite(value) and math.isfinite(high)):
        return False, "the difference could not be estimated on the slice (one class only, or no rows)"
    if value < -tolerance:
        return False, f"difference {value:+.4f} is below the tolerance -{tolerance:.4f}"
    if high < 0:
        return False, f"the {CONFIDENCE:.0%} upper bound of the difference {high:+.4f} is below 0"
    return True, f"difference {value:+.4f} (upper bound {high:+.4f}) is within the tolerance -{tolerance:.4f}"


def baseline_gate(
    labels: Sequence[int] | np.ndarray,
    model_proba: np.ndarray,
    baseline_probas: Mapping[str, np.ndarray],
    groups: Sequence[Any],
    *,
    metric: str,
    score_index: int,
    num_labels: int,
    tolerance: float,
    resamples: int = 1000,
    seed: int = 13,
) -> GateVerdict:
    """The model against every baseline on the same rows (one paired bootstrap, the same
    draws for all), decided against the strongest."""
    names = list(baseline_probas)
    scores = [row_scores(model_proba, metric, score_index)]
    scores += [row_scores(baseline_probas[name], metric, score_index) for name in names]
    full, draws, n_groups = bootstrap(
        labels, scores, groups, metric=metric, resamples=resamples, seed=seed, num_labels=num_labels
    )
    figures = {
        name: BaselineFigures(
            baseline=name,
            metric=metric,
            model=float(full[0]),
            value=float(full[i]),
            difference=percentile_interval(full[0] - full[i], draws[:, 0] - draws[:, i], CONFIDENCE),
            rows=len(labels),
            groups=n_groups,
            resamples=len(draws),
        )
        for i, name in enumerate(names, start=1)
    }
    usable = [name for name in names if math.isfinite(figures[name].value)]
    if not usable:
        return GateVerdict(
            False, f"no baseline could be scored on {metric} on this slice", metric, tolerance, None, figures
        )
    strongest = max(usable, key=lambda name: figures[name].value)
    diff = figures[strongest].difference
    passed, why = judge(value=diff.value, high=diff.high, tolerance=tolerance)
    verdict = "not worse than" if passed else "worse than"
    reason = (
        f"{metric} {figures[strongest].model:.4f} vs the strongest baseline {strongest} "
        f"{figures[strongest].value:.4f}: {verdict} it ({why}; {len(labels)} rows, {n_groups} groups)"
    )
    return GateVerdict(passed, reason, metric, tolerance, strongest, figures)


def model_kind(manifest: Manifest) -> str:
    return str(manifest.extra.get("kind") or TRAINED)


def gate_allows(manifest: Manifest, *, tolerance: float) -> tuple[bool, str]:
    """Whether the version may go live, and why, from its manifest's gate figures judged
    with `tolerance` (a fallback baseline always may)."""
    if model_kind(manifest) == FALLBACK:
        return True, f"a fallback baseline ({manifest.extra.get('baseline', '?')}): exempt from the gate it defines"
    gate = manifest.extra.get("gate")
    if not isinstance(gate, Mapping) or not gate.get("strongest_baseline"):
        if isinstance(gate, Mapping) and gate.get("verdict") == "refused":
            return False, str(gate.get("reason") or "refused by the baseline gate")
        return False, (
            "its manifest holds no baseline-gate evidence (registered by an older release, or "
            "by hand): nothing shows it is not worse than its baselines"
        )
    strongest = str(gate["strongest_baseline"])
    try:
        diff = gate["baselines"][strongest]["difference"]
        value, high = float(diff["value"]), float(diff["high"])
    except (KeyError, TypeError, ValueError):
        return False, f"its manifest's gate figures for {strongest} are incomplete"
    passed, why = judge(value=value, high=high, tolerance=tolerance)
    metric = gate.get("metric", "the primary metric")
    return passed, f"{metric} against the strongest baseline {strongest}: {why}"
