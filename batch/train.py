"""Fine-tune a task's model on its gold training set, evaluate it against baselines and
the champion on the same test rows, register it, and optionally promote it.

usage: python -m batch.train --task sentiment [--max-train-samples 200] [--epochs 1]
           [--batch-size 16] [--lr 5e-5] [--seed 13] [--max-length 128] [--lora]
           [--base-model DIR] [--init-from-champion] [--resume-from DIR] [--patience 2] [--promote]
       (also: spark-submit batch/train.py ..., shopflow train ...)

From another job: `run(settings, TrainOptions(task="propensity", promote=True))`, or
the stages themselves (batch/training/stages.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # spark-submit batch/train.py runs this file as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dataclasses
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.options import option, resolve, start_job
from shared.run_metrics import write_metrics
from shared.settings import Settings
from shared.tasks import TASKS
from shared.tracking import registered, track_run

log = logging.getLogger("shopflow.train")
JOB = "batch.train"


@dataclass(frozen=True)
class TrainOptions:
    task: str = option(help="what to train", choices=tuple(TASKS))
    table_path: str | None = option(None, help="gold table (default: the lake's gold/<task table>)")
    table_version: int | None = option(None, help="Delta version to read (default: latest)", ge=0)
    base_model: str | None = option(None, help="HF model folder or hub name (default: offline MiniLM)")
    init_from_champion: bool = option(False, help="continue from the champion's weights")
    max_train_samples: int | None = option(None, help="smoke mode: train on this many rows", ge=1)
    max_eval_samples: int | None = option(None, help="evaluate on this many test rows", ge=1)
    epochs: int | None = option(None, help="default: the task's (1; propensity 2)", ge=1)
    batch_size: int | None = option(None, help="default: the task's (16; propensity 64)", ge=1)
    lr: float | None = option(None, help="default: the task's (5e-5 fine-tune, 5e-4 LoRA, 5e-4 propensity)", gt=0)
    seed: int = option(13, help="seed for sampling, batch order and init")
    max_length: int = option(128, help="text tasks: tokens per example", ge=1)
    lora: bool = option(False, help="train LoRA adapters (text tasks), merged on save")
    lora_rank: int = option(8, help="LoRA rank", ge=1)
    save_steps: int = option(0, help="write a resumable checkpoint every N steps (0: never)", ge=0)
    stop_after_steps: int | None = option(None, help="stop after N steps, resumable (preempted runs)", ge=1)
    time_budget_seconds: float | None = option(None, help="train for about this long: fewer steps, same schedule", gt=0)
    patience: int = option(2, help="stop after N valid evaluations without improvement (0: never)", ge=0)
    resume_from: str | None = option(None, help="a checkpoint-<step> folder written by --save-steps")
    output_dir: str | None = option(None, help="where checkpoints go (default: a temp folder)")
    promote: bool = option(
        False,
        help="promote if it beats the champion on the same rows and passes the baseline gate; "
        "with no champion and nothing passing, the task's fallback baseline serves",
    )
    device: str | None = option(None, help="where to train", choices=("auto", "cpu", "cuda"), setting="models.device")
    progress: bool = option(True, help="show a progress bar")
    # Set by calling jobs only: fields added to the registry manifest.
    extra_manifest: Mapping[str, Any] = field(default_factory=dict)

    def derived(self) -> dict[str, Any]:
        """Unset epochs, batch size and learning rate: the task's (see shared.options.resolve)."""
        from batch.training.stages import default_lr
        from shared.tasks import get_task

        task = get_task(self.task)
        return {"epochs": task.default_epochs, "batch_size": task.default_batch_size, "lr": default_lr(task, self.lora)}


@dataclass(frozen=True)
class TrainResult:
    task: str
    table: str
    table_version: int
    train_rows: int
    test_rows: int
    completed: bool  # False: stopped by --stop-after-steps, nothing registered
    metrics_file: Path
    document: dict[str, Any]  # what metrics_file holds
    version: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    baseline_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    champion_version: int | None = None
    champion_metrics: dict[str, float] | None = None
    promoted: bool = False
    announced: bool | None = None  # None: no promotion to announce
    last_checkpoint: Path | None = None
    gate: dict[str, Any] | None = None  # the baseline gate's verdict and figures (as in the manifest)
    fallback_version: int | None = None  # the fallback baseline registered and promoted instead


def run(settings: Settings, options: TrainOptions) -> TrainResult:
    """Train, evaluate, register (and maybe promote) one model, as one tracked run."""
    options = resolve(options, settings)
    with track_run(settings, "train", task=options.task, name=f"train {options.task}", params=options) as tracked:
        result = _train(settings, options)
        tracked.log_document(result.document)
    return result


def _train(settings: Settings, options: TrainOptions) -> TrainResult:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from batch.training.data import default_table_path, load_training_data
    from batch.training.stages import (
        FitSpec,
        check_fit_spec,
        evaluate_model,
        fit_model,
        promote_if_better,
        register_model,
        serve_fallback_if_unserved,
    )
    from batch.training.trainer import TrainerConfig
    from shared.tasks import get_task

    options = resolve(options, settings)  # unset: settings.models.device, the task's epochs, batch size, lr
    task = get_task(options.task)
    work_dir = Path(options.output_dir) if options.output_dir else None
    trainer = TrainerConfig(
        epochs=options.epochs,
        batch_size=options.batch_size,
        lr=options.lr,
        seed=options.seed,
        save_steps=options.save_steps,
        stop_after_steps=options.stop_after_steps,
        output_dir=work_dir,
        progress=options.progress,
        time_budget_seconds=options.time_budget_seconds,
        patience=options.patience,
    )
    spec = FitSpec(
        trainer=trainer,
        base_model=options.base_model,
        init_from_champion=options.init_from_champion,
        resume_from=Path(options.resume_from) if options.resume_from else None,
        lora=options.lora,
        lora_rank=options.lora_rank,
        max_length=options.max_length,
        device=options.device,
    )
    check_fit_spec(task, spec)  # a user's mistake shows before minutes of loading
    data = load_training_data(
        task,
        options.table_path or default_table_path(settings, task),
        delta_version=options.table_version,
        seed=options.seed,
        max_train_samples=options.max_train_samples,
        max_eval_samples=options.max_eval_samples,
    )
    log.info(
        "%s: %d train / %d valid / %d test rows from %s@v%d",
        task.name,
        len(data.train),
        len(data.valid),
        len(data.test),
        data.table_path,
        data.delta_version,
    )

    from transformers import set_seed

    set_seed(options.seed)
    if work_dir is None:
        work_dir = Path(tempfile.mkdtemp(prefix="shopflow-train-"))
        spec = dataclasses.replace(spec, trainer=dataclasses.replace(trainer, output_dir=work_dir))
        trainer = spec.trainer
    fitted = fit_model(settings, task, data, spec)
    fit = fitted.result
    training = {
        "steps": fit.steps,
        "examples": fit.examples,
        "seconds": round(fit.seconds, 3),
        "examples_per_second": round(fit.examples_per_second, 3),
        "final_loss": fit.final_loss,
        "completed": fit.completed,
        "device": str(fitted.device),
        "lr": trainer.lr,
        "epochs": trainer.epochs,
        "batch_size": trainer.batch_size,
        "last_checkpoint": str(fit.last_checkpoint) if fit.last_checkpoint else None,
        # Chosen on the valid split: the weights kept are best_step's (None: the last step's).
        "patience": trainer.patience,
        "best_step": fit.best_step,
        "stopped_early": fit.stopped_early,
        "history": list(fit.history),
    }
    doc: dict[str, Any] = {
        "task": task.name,
        "model_name": task.model_name,
        "args": {k: v for k, v in dataclasses.asdict(options).items() if k != "extra_manifest"},
        "training": training,
        "data": {
            "table": data.table_path,
            "delta_version": data.delta_version,
            "train_rows": len(data.train),
            "valid_rows": len(data.valid),
            "test_rows": len(data.test),
            "train_rows_available": data.train_rows_available,
            "valid_rows_available": data.valid_rows_available,
            "test_rows_available": data.test_rows_available,
        },
    }
    common = dict(
        task=task.name,
        table=data.table_path,
        table_version=data.delta_version,
        train_rows=len(data.train),
        test_rows=len(data.test),
        last_checkpoint=fit.last_checkpoint,
    )
    if not fit.completed:
        # A stopped run leaves its checkpoint to resume from and registers nothing.
        log.info("stopped after %d steps; resume with --resume-from %s", fit.steps, fit.last_checkpoint)
        path = write_metrics(settings.metrics_dir, JOB, doc, name=f"train-{task.name}-stopped-step{fit.steps}")
        return TrainResult(**common, completed=False, metrics_file=path, document=doc)

    report = evaluate_model(settings, fitted, data, seed=options.seed)
    doc.update(report.to_dict())
    manifest_training = training | {
        "lora": options.lora,
        "seed": options.seed,
        "max_train_samples": options.max_train_samples,
    }
    version, _ = register_model(
        settings, fitted, report, data, work_dir, training=manifest_training, extra=options.extra_manifest
    )
    doc["version"] = version
    registered(settings, task.name, version)  # before a promotion, which mirrors the aliases
    promotion = promote_if_better(settings, task, version, report) if options.promote else None
    doc["promoted"] = promotion is not None
    fallback = None
    if options.promote and promotion is None:
        why = f"v{version}: {report.gate.reason}" if report.gate else ""
        fallback = serve_fallback_if_unserved(settings, task, data, work_dir, seed=options.seed, why=why)
        if fallback is not None:
            doc["fallback"] = {"version": fallback.version, "reason": fallback.reason}
    if promotion is not None or fallback is not None:
        doc["announced"] = (promotion or fallback).announced
        log.info("%s", (promotion or fallback).summary())
    path = write_metrics(settings.metrics_dir, JOB, doc, name=f"train-{task.name}-v{version}")
    doc["metrics_file"] = str(path)
    if not options.output_dir:
        shutil.rmtree(work_dir, ignore_errors=True)
    return TrainResult(
        **common,
        completed=True,
        metrics_file=path,
        document=doc,
        version=version,
        metrics=report.metrics,
        baseline_metrics=report.baselines,
        champion_version=report.champion_version,
        champion_metrics=report.champion_metrics,
        promoted=promotion is not None,
        announced=doc.get("announced"),
        gate=doc.get("gate"),
        fallback_version=fallback.version if fallback else None,
    )


def main(argv: list[str] | None = None) -> int:
    options, settings = start_job(TrainOptions, argv, prog="shopflow train", doc=__doc__)
    result = run(settings, options)
    summary = {
        "task": result.task,
        "version": result.version,
        "promoted": result.promoted,
        "gate": (result.gate or {}).get("verdict"),
        "fallback_version": result.fallback_version,
        "metrics": result.metrics,
        "baseline_metrics": result.baseline_metrics,
    }
    print(json.dumps(summary, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
