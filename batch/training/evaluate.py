"""Evaluation in the training run: the new model, the task's baselines and the current
champion, all on the same held-out rows, so a promotion compares like with like.

    report = evaluate_all(task, candidate, data.train, data.test, registry, seed=13)
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from shared.errors import ModelError, ShopflowError
from shared.predictor import Predictor, load_predictor
from shared.registry import ModelRegistry
from shared.tasks import Task, is_better

log = logging.getLogger(__name__)
Record = dict[str, Any]


@dataclass
class EvaluationReport:
    metrics: dict[str, float]
    baselines: dict[str, dict[str, float]]
    champion_version: int | None = None
    champion_metrics: dict[str, float] | None = None
    champion_error: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)

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
        }


def evaluate_predictor(task: Task, predictor: Predictor, records: Sequence[Record]) -> dict[str, float]:
    return task.metrics(task.labels(records), predictor.predict_proba(records))


def evaluate_baselines(
    task: Task, train: Sequence[Record], test: Sequence[Record], seed: int
) -> dict[str, dict[str, float]]:
    y_test = task.labels(test)
    return {name: task.metrics(y_test, proba) for name, proba in task.baselines(train, test, seed).items()}


def evaluate_all(
    task: Task,
    candidate: Predictor,
    train: Sequence[Record],
    test: Sequence[Record],
    registry: ModelRegistry,
    *,
    seed: int,
) -> EvaluationReport:
    timings = {}
    started = time.perf_counter()
    metrics = evaluate_predictor(task, candidate, test)
    timings["model"] = time.perf_counter() - started

    started = time.perf_counter()
    baselines = evaluate_baselines(task, train, test, seed)
    timings["baselines"] = time.perf_counter() - started

    report = EvaluationReport(metrics=metrics, baselines=baselines, seconds=timings)
    champion = registry.resolve(task.name)
    if champion is not None:
        report.champion_version = champion
        started = time.perf_counter()
        try:
            incumbent = load_predictor(task.name, version=champion, registry=registry, device=candidate.device)
            report.champion_metrics = evaluate_predictor(task, incumbent, test)
        except (ShopflowError, ModelError) as exc:
            # A champion that cannot be loaded cannot be served either; the verified
            # candidate may replace it, and the reason is kept in the metrics JSON.
            log.warning("champion %s v%s is unusable: %s", task.name, champion, exc)
            report.champion_error = str(exc)
        timings["champion"] = time.perf_counter() - started
    return report
