"""Evaluation in the training run: the new model, the task's baselines and the current
champion, all on the same held-out rows, so a promotion compares like with like.

Besides the metrics, the report keeps every row's key, group, label and the probabilities
of the candidate, the champion and each baseline, so a caller can run a paired test (a
bootstrap over users), e.g. the baseline gate (`judge_gate`, shared.gate).

    report = evaluate_all(task, candidate, data.train, data.test, registry, seed=13)
    report.examples.labels, report.examples.candidate, report.examples.champion, report.examples.baselines
    report.gate = judge_gate(task, report, tolerance=0.01, resamples=1000, seed=13)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shared.errors import ModelError, ShopflowError
from shared.gate import GateVerdict, baseline_gate
from shared.predictor import Predictor, load_predictor
from shared.registry import ModelRegistry
from shared.tasks import Task, is_better

log = logging.getLogger(__name__)
Record = dict[str, Any]


@dataclass(frozen=True)
class Examples:
    """Per-row evaluation data, aligned by index: what a paired comparison needs."""

    keys: list[Any]  # task.row_key of each row (its index when the task names none)
    groups: list[Any]  # task.group_key of each row (= keys when the task names none)
    labels: np.ndarray  # (n,)
    candidate: np.ndarray  # (n, num_labels) probabilities of the model being evaluated
    champion: np.ndarray | None = None  # the same for the champion, if one was loaded
    baselines: dict[str, np.ndarray] = field(default_factory=dict)  # the same for each baseline


@dataclass
class EvaluationReport:
    metrics: dict[str, float]
    baselines: dict[str, dict[str, float]]
    examples: Examples
    champion_version: int | None = None
    champion_metrics: dict[str, float] | None = None
    champion_error: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    gate: GateVerdict | None = None  # set by judge_gate

    def beats_champion(self, metric: str) -> bool:
        if self.champion_metrics is None:
            return True
        return is_better(self.metrics, self.champion_metrics, metric)

    def to_dict(self) -> dict[str, Any]:
        return {
            "metrics": self.metrics,
            "baseline_metrics": self.baselines,
            "champion": {
                "version": self.champion_version,
                "metrics_on_this_slice": self.champion_metrics,
                "error": self.champion_error,
            },
            "eval_seconds": self.seconds,
            "gate": self.gate.to_dict() if self.gate else None,
        }


def _column(records: Sequence[Record], name: str) -> list[Any]:
    return [r.get(name) for r in records] if name else list(range(len(records)))


def evaluate_baselines(
    task: Task, train: Sequence[Record], test: Sequence[Record], seed: int
) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray]]:
    """Each baseline's metrics and its probabilities on `test`."""
    y_test = task.labels(test)
    probas = task.baselines(train, test, seed)
    return {name: task.metrics(y_test, proba) for name, proba in probas.items()}, probas


def judge_gate(task: Task, report: EvaluationReport, *, tolerance: float, resamples: int, seed: int) -> GateVerdict:
    """The baseline gate on the report's rows: the candidate against every baseline."""
    ex = report.examples
    return baseline_gate(
        ex.labels,
        ex.candidate,
        ex.baselines,
        ex.groups,
        metric=task.primary_metric,
        score_index=task.score_index,
        num_labels=task.num_labels,
        tolerance=tolerance,
        resamples=resamples,
        seed=seed,
    )


def evaluate_all(
    task: Task,
    candidate: Predictor,
    train: Sequence[Record],
    test: Sequence[Record],
    registry: ModelRegistry,
    *,
    seed: int,
    champion_version: int | None = None,
) -> EvaluationReport:
    """Candidate, baselines and champion (`champion_version`, default: the alias) on `test`."""
    timings = {}
    labels = task.labels(test)
    started = time.perf_counter()
    candidate_proba = candidate.predict_proba(test)
    metrics = task.metrics(labels, candidate_proba)
    timings["model"] = time.perf_counter() - started

    started = time.perf_counter()
    baselines, baseline_probas = evaluate_baselines(task, train, test, seed)
    timings["baselines"] = time.perf_counter() - started

    keys = _column(test, task.row_key)
    examples = Examples(
        keys=keys,
        groups=_column(test, task.group_key) if task.group_key else keys,
        labels=labels,
        candidate=candidate_proba,
        baselines=baseline_probas,
    )
    report = EvaluationReport(metrics=metrics, baselines=baselines, examples=examples, seconds=timings)
    champion = champion_version if champion_version is not None else registry.resolve(task.name)
    if champion is not None:
        report.champion_version = champion
        started = time.perf_counter()
        try:
            incumbent = load_predictor(task.name, version=champion, registry=registry, device=candidate.device)
            champion_proba = incumbent.predict_proba(test)
            report.champion_metrics = task.metrics(labels, champion_proba)
            report.examples = Examples(
                keys=examples.keys,
                groups=examples.groups,
                labels=labels,
                candidate=candidate_proba,
                champion=champion_proba,
                baselines=baseline_probas,
            )
        except (ShopflowError, ModelError) as exc:
            # A champion that cannot be loaded cannot be served either; the verified
            # candidate may replace it, and the reason is kept in the metrics JSON.
            log.warning("champion %s v%s is unusable: %s", task.name, champion, exc)
            report.champion_error = str(exc)
        timings["champion"] = time.perf_counter() - started
    return report
