"""Retrain and promote only a challenger proven better on unseen data, and not worse than
its baselines.

usage: python -m jobs.retrain [--task propensity] [--margin 0.0] [--resamples 1000] [--epochs 1]
       python -m jobs.retrain --print-config   # the resolved options and settings, as JSON
       (also: shopflow retrain ..., and step 3 of `shopflow loop`)

1. read the task's gold training set at its latest Delta version (history + folded
   stream, rebuilt by `batch.features`), pinned for the whole run;
2. fine-tune a challenger from the last *trained* version's weights (the champion when
   it is one; never a fallback baseline's), or from scratch when there is none;
3. score challenger, champion and the task's baselines on the test split: the most
   recent time slice, which none of them trained on (the manifests say up to when they
   trained; a slice that overlaps it is refused rather than compared unfairly);
4. paired bootstrap over users of (challenger - champion) on the task's primary metric;
   promote only when the interval's lower bound is above the configured margin and the
   baseline gate (shared.gate) lets it through, via the one promote-and-announce path,
   so running workers swap between batches. With no champion, the gate alone decides,
   and when it refuses, the task's fallback baseline is promoted so the stream serves;
5. either way the challenger is registered, its manifest holding the evaluations with
   their intervals, the gate's figures, the decision and its reason, the slice, the
   Delta versions and the fold offsets the data came from. A refused challenger is
   kept, not deleted.
"""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from shared.errors import GateRefusedError, ModelNotFoundError, TableError
from shared.evidence import Comparison, Decision, decide, paired_bootstrap, row_scores
from shared.gate import TRAINED, model_kind
from shared.options import option, resolve, start_job
from shared.run_metrics import write_metrics
from shared.settings import Settings
from shared.tasks import TASKS
from shared.tracking import registered, track_run

log = logging.getLogger("jobs.retrain")


@dataclass(frozen=True)
class RetrainOptions:
    """Unset options take the loop's settings (`settings.loop`, SHOPFLOW_LOOP__*)."""

    task: str | None = option(None, help="the task to retrain", setting="loop.task", choices=tuple(TASKS))
    margin: float | None = option(
        None, help="promote when the CI's lower bound of the gain exceeds this", setting="loop.promotion_margin"
    )
    resamples: int | None = option(
        None, help="bootstrap resamples over users", setting="loop.bootstrap_resamples", ge=1
    )
    confidence: float | None = option(
        None, help="the bootstrap interval's confidence level", setting="loop.confidence", gt=0, lt=1
    )
    min_eval_rows: int | None = option(
        None, help="an evaluation slice with fewer rows decides nothing", setting="loop.min_eval_rows", ge=0
    )
    epochs: int | None = option(None, help="fine-tuning epochs from the champion", setting="loop.epochs", ge=1)
    lr: float | None = option(None, help="learning rate (default: the task's)", gt=0)
    max_train_samples: int | None = option(None, help="smoke mode: train on at most this many rows", ge=1)
    seed: int | None = option(None, help="random seed", setting="loop.seed")
    promote: bool = option(True, help="promote a proven better challenger (--no-promote: evaluate only)")

    def derived(self) -> dict[str, Any]:
        """An unset learning rate: the task's (see shared.options.resolve)."""
        from batch.training.stages import default_lr
        from shared.tasks import get_task

        return {"lr": default_lr(get_task(self.task), False)} if self.task else {}


@dataclass
class RetrainResult:
    task: str
    champion_version: int | None  # None: there was none, the gate alone decided
    challenger_version: int
    comparison: Comparison | None  # challenger vs champion; None without a champion
    decision: Decision  # the champion rule and the baseline gate together
    margin: float
    promoted: bool
    slice: dict[str, Any]
    data: dict[str, Any]
    gate: dict[str, Any] = field(default_factory=dict)  # the baseline gate's verdict and figures
    init_from: int | None = None  # the trained version the challenger started from
    fallback_version: int | None = None  # promoted because nothing passed and nothing served
    fold_offsets: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # fit, evaluate, compare, register
    announced: bool | None = None
    metrics_file: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "champion_version": self.champion_version,
            "challenger_version": self.challenger_version,
            "init_from": self.init_from,
            "comparison": self.comparison.to_dict() if self.comparison else None,
            "gate": self.gate,
            "fallback_version": self.fallback_version,
            "decision": {"promote": self.decision.promote, "reason": self.decision.reason, "margin": self.margin},
            "promoted": self.promoted,
            "announced": self.announced,
            "slice": self.slice,
            "data": self.data,
            "fold_offsets": self.fold_offsets,
            "seconds": self.seconds,
            "tables_read": {self.data.get("table", "gold"): self.data.get("delta_version")},
            "metrics_file": self.metrics_file,
        }


def slice_of(records: list[dict[str, Any]], groups: list[Any]) -> dict[str, Any]:
    """Time range, rows, users and positives of the evaluation rows."""
    times = [r["ts"] for r in records if r.get("ts") is not None]
    positives = sum(1 for r in records if int(r.get("label", 0)) == 1)
    return {
        "split": "test",
        "from": min(times).isoformat() if times else None,
        "to": max(times).isoformat() if times else None,
        "rows": len(records),
        "users": len(set(groups)),
        "positives": positives,
    }


def run(settings: Settings, options: RetrainOptions) -> RetrainResult:
    """Retrain, compare, register (and maybe promote) one challenger, as one tracked run."""
    options = resolve(options, settings)
    with track_run(settings, "retrain", task=options.task, name=f"retrain {options.task}", params=options) as tracked:
        result = _retrain(settings, options)
        tracked.log_document(result.to_dict())
    return result


def _retrain(settings: Settings, options: RetrainOptions) -> RetrainResult:
    from batch.training.data import default_table_path, load_training_data
    from batch.training.stages import (
        FitSpec,
        evaluate_model,
        fit_model,
        last_trained_version,
        register_model,
        serve_fallback_if_unserved,
    )
    from batch.training.trainer import TrainerConfig
    from jobs.fold import committed_offsets
    from shared.registry import ModelRegistry
    from shared.tasks import get_task

    options = resolve(options, settings)  # unset options: the loop's settings, the task's lr
    task = get_task(options.task)
    seed, margin = options.seed, options.margin
    registry = ModelRegistry(settings.models.registry_root)
    champion = registry.resolve(task.name)
    # Weights come from a trained model only: the champion when it is one, else the newest
    # trained version (a fallback baseline may be serving), else none (from scratch).
    source = last_trained_version(registry, task.name)
    if champion is not None and model_kind(registry.manifest(task.name, champion)) == TRAINED:
        source = champion

    data = load_training_data(
        task, default_table_path(settings, task), seed=seed, max_train_samples=options.max_train_samples
    )
    if not data.test:
        raise TableError(f"gold/{task.training_set.table}@v{data.delta_version} has no test rows to evaluate on")
    evaluated = slice_of(data.test, [None] * len(data.test))
    for seen, role in ((champion, "champion"), (source, "the version trained from")):
        until = registry.manifest(task.name, seen).extra.get("trained_until") if seen is not None else None
        if until and evaluated["from"] and evaluated["from"] <= until:
            raise TableError(
                f"the test slice starts at {evaluated['from']}, before {role} v{seen} "
                f"stopped training ({until}): no unseen slice to compare on yet"
            )

    seconds: dict[str, float] = {}
    work_dir = Path(tempfile.mkdtemp(prefix="shopflow-retrain-"))
    try:
        spec = FitSpec(
            trainer=TrainerConfig(
                epochs=options.epochs,
                batch_size=task.default_batch_size,
                lr=options.lr,
                seed=seed,
                output_dir=work_dir,
                progress=False,
            ),
            init_from_champion=source is not None and source == champion,
            base_model=str(registry.path(task.name, source)) if source is not None and source != champion else None,
        )
        clock = time.perf_counter()
        fitted = fit_model(settings, task, data, spec)
        seconds["fit"], clock = time.perf_counter() - clock, time.perf_counter()
        report = evaluate_model(settings, fitted, data, seed=seed, champion_version=champion)
        seconds["evaluate"], clock = time.perf_counter() - clock, time.perf_counter()
        examples = report.examples
        comparison = None
        if champion is not None:
            if examples.champion is None:
                raise ModelNotFoundError(
                    f"champion {task.name} v{champion} could not be scored: {report.champion_error}"
                )
            comparison = paired_bootstrap(
                examples.labels,
                row_scores(examples.champion, task.primary_metric, task.score_index),
                row_scores(examples.candidate, task.primary_metric, task.score_index),
                examples.groups,
                metric=task.primary_metric,
                resamples=options.resamples,
                confidence=options.confidence,
                seed=seed,
                num_labels=task.num_labels,
            )
            decision = decide(comparison, margin=margin, min_rows=options.min_eval_rows)
        else:
            decision = Decision(True, "no champion to beat")
        assert report.gate is not None  # evaluate_model judged it
        if decision.promote and not report.gate.passed:
            decision = Decision(False, f"refused by the baseline gate: {report.gate.reason}")
        elif decision.promote:
            decision = Decision(True, f"{decision.reason}; baseline gate: {report.gate.reason}")
        seconds["compare"], clock = time.perf_counter() - clock, time.perf_counter()
        evaluated = slice_of(data.test, examples.groups)
        offsets = committed_offsets(settings)
        evaluation = {
            "compared_with": {"task": task.name, "version": champion},
            "comparison": comparison.to_dict() if comparison else None,
            "decision": {"promote": decision.promote, "reason": decision.reason, "margin": margin},
            "slice": evaluated,
            "fold_offsets": offsets,
            "evaluated_at": datetime.now(timezone.utc).isoformat(),
        }
        training = {
            "steps": fitted.result.steps,
            "examples": fitted.result.examples,
            "seconds": round(fitted.result.seconds, 3),
            "lr": fitted.lr,
            "seed": seed,
            "init_from_version": source,
        }
        version, _ = register_model(
            settings, fitted, report, data, work_dir, training=training, extra={"evaluation": evaluation}
        )
        seconds["register"] = time.perf_counter() - clock
        registered(settings, task.name, version)  # before a promotion, which mirrors the aliases
        log.info("%s v%d vs champion v%s: %s", task.name, version, champion, decision.reason)

        announced = None
        promoted = False
        fallback_version = None
        if decision.promote and options.promote:
            from shared.promotion import promote

            try:
                result = promote(settings, task.name, version, reason=decision.reason)
                promoted, announced = True, result.announced
            except GateRefusedError as exc:  # e.g. a stricter tolerance than at evaluation
                decision = Decision(False, str(exc))
        if not promoted and options.promote:
            fallback = serve_fallback_if_unserved(
                settings, task, data, work_dir, seed=seed, why=f"v{version}: {decision.reason}"
            )
            if fallback is not None:
                fallback_version, announced = fallback.version, fallback.announced
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    outcome = RetrainResult(
        task=task.name,
        champion_version=champion,
        challenger_version=version,
        comparison=comparison,
        decision=decision,
        margin=margin,
        promoted=promoted,
        slice=evaluated,
        data={
            "table": f"gold/{task.training_set.table}",
            "path": str(data.table_path),
            "delta_version": data.delta_version,
        },
        gate=report.gate.to_dict(),
        init_from=source,
        fallback_version=fallback_version,
        fold_offsets=offsets,
        announced=announced,
        seconds={k: round(v, 3) for k, v in seconds.items()},
    )
    outcome.metrics_file = str(write_metrics(settings.metrics_dir, "jobs.retrain", outcome.to_dict()))
    return outcome


def main(argv: list[str] | None = None) -> int:
    options, settings = start_job(RetrainOptions, argv, prog="shopflow retrain", doc=__doc__)
    result = run(settings, options)
    verdict = "promoted" if result.promoted else "not promoted"
    against = f"v{result.champion_version}" if result.champion_version is not None else "no champion"
    print(f"{result.task} v{result.challenger_version} vs {against}: {verdict}: {result.decision.reason}")
    if result.fallback_version is not None:
        print(f"{result.task}: the fallback baseline v{result.fallback_version} serves (nothing passed the gate)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
