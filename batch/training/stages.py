"""The trainer's four stages, each callable on its own (batch.train chains them; the
retrain job calls them with its own data and decision rule):

    fitted = fit_model(settings, task, data, FitSpec(init_from_champion=True, trainer=TrainerConfig()))
    report = evaluate_model(settings, fitted, data, seed=13)        # challenger vs champion and baselines, same rows
    version, manifest = register_model(settings, fitted, report, data, work_dir, extra={"why": ...})
    promotion = promote_if_better(settings, task, version, report, reason="...")
    fallback = serve_fallback_if_unserved(settings, task, data, work_dir, seed=13)  # nothing passed, no champion

`evaluate_model` also judges the baseline gate (shared.gate) and `register_model` keeps its
figures in the manifest, where `shared.promotion.promote` reads them.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from batch.training.data import TrainingData
from batch.training.evaluate import EvaluationReport, evaluate_all, judge_gate
from batch.training.provenance import provenance
from batch.training.trainer import FitResult, TrainerConfig, fit
from shared.errors import GateRefusedError, ModelError, UsageError
from shared.gate import FALLBACK, TRAINED, model_kind
from shared.manifest import Manifest, TrainingTable
from shared.predictor import Predictor, resolve_device
from shared.promotion import PromotionResult, promote
from shared.registry import ModelRegistry
from shared.settings import Settings
from shared.tasks import Task

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChampionRef:
    """The registered version a model was fine-tuned from."""

    task: str
    version: int
    base_model: str  # what *that* version was built from


@dataclass(frozen=True)
class FitSpec:
    """How to fit: where the weights start and the trainer's knobs."""

    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    base_model: str | None = None  # None: the task's default (settings.models.base_model)
    init_from_champion: bool = False  # start from the champion's weights instead
    resume_from: Path | None = None  # a checkpoint-<step> folder of an interrupted run
    lora: bool = False
    lora_rank: int = 8
    max_length: int = 128  # text tasks: tokens per example
    device: str | None = None  # None: settings.models.device


@dataclass
class FittedModel:
    task: Task
    model: torch.nn.Module
    encoder: Any
    device: torch.device
    base_model: str  # what the manifest records
    init_from: ChampionRef | None
    result: FitResult
    lr: float
    lora: bool

    def predictor(self) -> Predictor:
        return Predictor(self.task, self.model, self.encoder, version="candidate", device=self.device)


def default_lr(task: Task, lora: bool) -> float:
    if lora and task.lora_lr is not None:
        return task.lora_lr
    return task.default_lr


def _apply_lora(model: Any, rank: int) -> Any:
    from peft import LoraConfig, TaskType, get_peft_model

    config = LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=rank,
        lora_alpha=2 * rank,
        lora_dropout=0.1,
        target_modules=["query", "value"],
    )
    return get_peft_model(model, config)


def check_fit_spec(task: Task, spec: FitSpec) -> None:
    """Refuse combinations that cannot work, before any data or model is loaded."""
    if spec.lora and not task.supports_lora:
        raise UsageError(f"--lora is not supported by task {task.name!r}: it trains its whole model")
    if spec.lora and spec.resume_from:
        raise UsageError("--resume-from with --lora is not supported: resume a full fine-tune, or restart")
    if spec.resume_from and not spec.resume_from.is_dir():
        raise UsageError(f"--resume-from {spec.resume_from}: no such folder; pass a checkpoint-<step> folder")


def fit_model(settings: Settings, task: Task, data: TrainingData, spec: FitSpec) -> FittedModel:
    """Build (or load) the model and train it on `data.train`, choosing its state on
    `data.valid`; a stopped run (`trainer.stop_after_steps`) returns with `result.completed` False."""
    check_fit_spec(task, spec)
    registry = ModelRegistry(settings.models.registry_root)
    device = resolve_device(spec.device or settings.models.device)
    base_model = spec.base_model if spec.base_model is not None else task.default_base_model(settings.models.base_model)
    init_from = None
    if spec.init_from_champion:
        champion = registry.resolve(task.name)
        if champion is None:
            raise UsageError(f"--init-from-champion: task {task.name!r} has no champion yet; train one with --promote")
        manifest = registry.verify(task.name, champion)
        base_model = str(registry.path(task.name, champion))
        init_from = ChampionRef(task.name, champion, manifest.base_model)

    if spec.resume_from:
        model, encoder = task.load(spec.resume_from)
    else:
        model, encoder = task.build(base_model, data.train, max_length=spec.max_length)
    if spec.lora:
        model = _apply_lora(model, spec.lora_rank)
    result = fit(
        task,
        model,
        encoder,
        data.train,
        task.labels(data.train),
        spec.trainer,
        device,
        resume_from=spec.resume_from,
        valid=data.valid,
    )
    if spec.lora:
        model = model.merge_and_unload()  # the registry holds a plain HF model
    return FittedModel(
        task=task,
        model=model,
        encoder=encoder,
        device=device,
        base_model=init_from.base_model if init_from else task.base_model_name(base_model),
        init_from=init_from,
        result=result,
        lr=spec.trainer.lr,
        lora=spec.lora,
    )


def evaluate_model(
    settings: Settings,
    fitted: FittedModel,
    data: TrainingData,
    *,
    seed: int,
    champion_version: int | None = None,
) -> EvaluationReport:
    """The fitted model, the task's baselines and the champion on the same `data.test` rows,
    with per-row predictions (`report.examples`) for paired comparisons, and the baseline
    gate's verdict (`report.gate`)."""
    registry = ModelRegistry(settings.models.registry_root)
    report = evaluate_all(
        fitted.task, fitted.predictor(), data.train, data.test, registry, seed=seed, champion_version=champion_version
    )
    report.gate = judge_gate(
        fitted.task,
        report,
        tolerance=settings.models.baseline_tolerance,
        resamples=settings.loop.bootstrap_resamples,
        seed=seed,
    )
    log.info("%s baseline gate: %s", fitted.task.name, report.gate.reason)
    return report


def register_model(
    settings: Settings,
    fitted: FittedModel,
    report: EvaluationReport,
    data: TrainingData,
    work_dir: Path,
    *,
    training: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> tuple[int, Manifest]:
    """Save the model under `work_dir/final` and register it; returns (version, manifest).
    The manifest holds the baseline gate's figures and verdict (`gate`, judged here when
    the report has none) and `kind` "trained"; `extra` adds fields of the caller's own."""
    if not fitted.result.completed:
        raise ModelError("a stopped training run cannot be registered: resume it first")
    task = fitted.task
    if report.gate is None:
        report.gate = judge_gate(
            task,
            report,
            tolerance=settings.models.baseline_tolerance,
            resamples=settings.loop.bootstrap_resamples,
            seed=13,
        )
    final_dir = work_dir / "final"
    shutil.rmtree(final_dir, ignore_errors=True)
    task.save(fitted.model.cpu(), fitted.encoder, final_dir)
    init_from = fitted.init_from
    manifest = Manifest(
        model_name=task.model_name,
        base_model=fitted.base_model,
        init_from_champion={"task": init_from.task, "version": init_from.version, "base_model": init_from.base_model}
        if init_from
        else None,
        label_names=tuple(task.label_names),
        primary_metric=task.primary_metric,
        metrics=report.metrics,
        baseline_metrics=report.baselines,
        training_data={task.training_set.table: TrainingTable(data.table_path, data.delta_version)},
        training=dict(training or {}),
    ).with_fields(
        kind=TRAINED,
        gate=report.gate.to_dict(),
        trained_until=trained_until(data.train),
        reproduce=provenance(settings),
        **dict(extra or {}),
    )
    return _register(settings, task, final_dir, manifest)


def register_fallback(
    settings: Settings, task: Task, data: TrainingData, work_dir: Path, *, seed: int
) -> tuple[int, Manifest]:
    """Fit the task's fallback baseline on `data.train`, score it on `data.test` through
    the Predictor, and register it (kind "fallback_baseline", exempt from the gate)."""
    model, encoder = task.build_fallback(data.train, seed)
    predictor = Predictor(task, model, encoder, version="fallback")
    metrics = task.metrics(task.labels(data.test), predictor.predict_proba(data.test))
    folder = work_dir / "fallback"
    shutil.rmtree(folder, ignore_errors=True)
    task.save(model.cpu(), encoder, folder)
    manifest = Manifest(
        model_name=task.model_name,
        base_model=f"fallback baseline {task.fallback_baseline}",
        label_names=tuple(task.label_names),
        primary_metric=task.primary_metric,
        metrics=metrics,
        training_data={task.training_set.table: TrainingTable(data.table_path, data.delta_version)},
        training={"seed": seed, "rows": len(data.train)},
    ).with_fields(
        kind=FALLBACK,
        baseline=task.fallback_baseline,
        gate={"verdict": "exempt", "reason": "a fallback baseline defines the gate"},
        trained_until=trained_until(data.train),
        reproduce=provenance(settings),
    )
    return _register(settings, task, folder, manifest)


def _register(settings: Settings, task: Task, folder: Path, manifest: Manifest) -> tuple[int, Manifest]:
    """Register `folder` as the task's next version; returns (version, the manifest as stored)."""
    registry = ModelRegistry(settings.models.registry_root)
    version = registry.register(task.name, folder, manifest)
    return version, registry.manifest(task.name, version)


def serve_fallback_if_unserved(
    settings: Settings, task: Task, data: TrainingData, work_dir: Path, *, seed: int, why: str = ""
) -> PromotionResult | None:
    """The stream always serves something: when the task has no champion (no trained
    version passed the gate), register the fallback baseline and promote it. None when
    there is a champion or the task has no fallback."""
    registry = ModelRegistry(settings.models.registry_root)
    if registry.resolve(task.name) is not None or not task.fallback_baseline:
        return None
    try:
        version, _ = register_fallback(settings, task, data, work_dir, seed=seed)
    except ModelError as exc:  # e.g. one class only among the rows: nothing to fit
        log.warning("%s: no fallback baseline could be fitted (%s); nothing serves", task.name, exc)
        return None
    reason = (
        f"no trained version passes the baseline gate and there is no champion: the fallback "
        f"baseline {task.fallback_baseline} serves" + (f" ({why})" if why else "")
    )
    return promote(settings, task.name, version, reason=reason)


def last_trained_version(registry: ModelRegistry, task: str) -> int | None:
    """The newest registered version that is a trained model (not a fallback baseline)."""
    for version in reversed(registry.versions(task)):
        try:
            if model_kind(registry.manifest(task, version)) == TRAINED:
                return version
        except ModelError:
            continue  # a broken version is no starting point
    return None


def trained_until(records: Sequence[Mapping[str, Any]]) -> str | None:
    """The latest event time among the training rows (ISO-8601), for tasks whose rows have
    one: a later comparison must evaluate on rows after it."""
    times = [r["ts"] for r in records if r.get("ts") is not None]
    return max(times).isoformat() if times else None


def promote_if_better(
    settings: Settings,
    task: Task,
    version: int,
    report: EvaluationReport,
    *,
    reason: str | None = None,
) -> PromotionResult | None:
    """Promote `version` when it beats the champion on the task's primary metric on the
    same rows (or there is no usable champion) and the baseline gate lets it through; None
    when it does not (it stays registered, the refusal in its manifest)."""
    metric = task.primary_metric
    if not report.beats_champion(metric):
        log.info(
            "%s v%d not promoted: %s %.4f does not beat champion v%s's %.4f",
            task.name,
            version,
            metric,
            report.metrics.get(metric, float("nan")),
            report.champion_version,
            (report.champion_metrics or {}).get(metric, float("nan")),
        )
        return None
    if reason is None:
        if report.champion_metrics is None:
            reason = f"no usable champion; {metric}={report.metrics.get(metric)}"
        else:
            reason = (
                f"{metric} {report.metrics.get(metric):.4f} > champion v{report.champion_version}'s "
                f"{report.champion_metrics.get(metric):.4f} on the same rows"
            )
    try:
        return promote(settings, task.name, version, reason=reason)
    except GateRefusedError as exc:
        log.info("%s v%d not promoted: %s", task.name, version, exc)
        return None
