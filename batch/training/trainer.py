"""The trainer: AdamW, linear warmup/decay, optional class-weighted loss,
checkpoints every N steps, exact resume, and model selection on the valid split.

Batch order is a pure function of (seed, epoch), and the learning rate a pure function of
the step, so resuming needs only the weights, the optimizer tensors and the RNG state
(and the valid evaluations so far, with the best weights, which checkpoints keep too).
With valid rows, the model is evaluated at each epoch's end (a time-boxed run: also at a
few evenly spaced steps), the best weights on the task's primary metric are restored at
the end, and training stops after `patience` evaluations without improvement.

    result = fit(task, model, encoder, records, labels, TrainerConfig(epochs=1), device, valid=valid_rows)
    result.history  # one dict per evaluation: step, epoch, train_loss, valid metrics, best
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from batch.training.checkpoint import TrainerState, load_best_weights, load_training_state, save_checkpoint
from batch.training.validation import ValidationTracker, copy_state, evaluation_steps, valid_metrics
from shared.tasks import Task

# Steps timed before a time budget sets how many steps fit in it.
_BUDGET_PROBE_STEPS = 3


@dataclass(frozen=True)
class TrainerConfig:
    epochs: int = 1
    batch_size: int = 16
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    max_grad_norm: float = 1.0
    seed: int = 13
    save_steps: int = 0  # 0: no intermediate checkpoints
    stop_after_steps: int | None = None  # end early as if preempted (tests, resumable runs)
    # Finish within about this many seconds: after a few steps the planned steps are cut
    # to what fits, so the learning-rate schedule still decays to zero at the end and the
    # run completes (on fewer examples) instead of stopping half-way.
    time_budget_seconds: float | None = None
    output_dir: Path | None = None
    progress: bool = True
    # Stop after this many valid evaluations in a row without a better primary metric
    # (0: run every epoch; the best weights are restored either way).
    patience: int = 2
    # A time-boxed run evaluates on valid at this many evenly spaced steps.
    budget_evaluations: int = 4
    # Valid evaluations per epoch; None: the task's (Task.evaluations_per_epoch).
    evaluations_per_epoch: int | None = None


@dataclass(frozen=True)
class FitResult:
    steps: int
    examples: int
    seconds: float
    final_loss: float
    completed: bool
    last_checkpoint: Path | None
    # One entry per valid evaluation: step, epoch, train_loss (mean since the previous
    # evaluation), valid (the task's metrics and loss), best (the best so far).
    history: tuple[dict[str, Any], ...] = ()
    best_step: int | None = None  # the step whose weights the model holds; None: the last
    stopped_early: bool = False

    @property
    def examples_per_second(self) -> float:
        return self.examples / self.seconds if self.seconds > 0 else float("nan")


def batch_order(n: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """The index batches of one epoch: a permutation seeded by (seed, epoch)."""
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    return [perm[i : i + batch_size] for i in range(0, n, batch_size)]


def lr_at(step: int, total: int, base: float, warmup_ratio: float) -> float:
    warmup = max(1, int(total * warmup_ratio))
    if step < warmup:
        return base * (step + 1) / warmup
    return base * max(0.0, (total - step) / max(1, total - warmup))


def class_weights(labels: np.ndarray, num_labels: int) -> torch.Tensor:
    """Inverse-frequency weights normalised to mean 1 (absent classes get weight 1)."""
    counts = np.bincount(labels, minlength=num_labels).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / (num_labels * np.maximum(counts, 1)), 1.0)
    return torch.tensor(weights / weights.mean(), dtype=torch.float32)


def make_optimizer(model: torch.nn.Module, cfg: TrainerConfig) -> torch.optim.Optimizer:
    trainable = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)


def fit(
    task: Task,
    model: torch.nn.Module,
    encoder: Any,
    records: Sequence[dict[str, Any]],
    labels: np.ndarray,
    cfg: TrainerConfig,
    device: torch.device,
    *,
    resume_from: Path | None = None,
    valid: Sequence[dict[str, Any]] = (),
) -> FitResult:
    """Train `model` in place; returns counters, timing and the valid evaluations. With
    `valid` rows the model ends with its best weights on the task's primary metric."""
    model.to(device).train()
    optimizer = make_optimizer(model, cfg)
    steps_per_epoch = math.ceil(len(records) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    state = TrainerState(0, total, steps_per_epoch, cfg.seed, cfg.batch_size, 0, [])
    tracker = ValidationTracker(task.primary_metric, cfg.patience)
    best: dict[str, torch.Tensor] | None = None
    if resume_from is not None:
        state = load_training_state(resume_from, optimizer)
        if (state.steps_per_epoch, state.batch_size, state.seed) != (steps_per_epoch, cfg.batch_size, cfg.seed):
            from shared.errors import ModelError

            raise ModelError(
                f"{resume_from} was written with batch size {state.batch_size}, seed {state.seed}, "
                f"{state.steps_per_epoch} steps/epoch; this run has {cfg.batch_size}, {cfg.seed}, "
                f"{steps_per_epoch}: resume with the same data and arguments"
            )
        state.total_steps = total
        tracker.restore(state.validation)
        best = load_best_weights(resume_from)
    weights = class_weights(labels, task.num_labels).to(device) if task.class_weighted_loss else None
    label_tensor = torch.as_tensor(labels, dtype=torch.long)
    valid_labels = task.labels(valid) if valid else np.zeros(0, dtype=np.int64)
    per_epoch = cfg.evaluations_per_epoch or task.evaluations_per_epoch
    eval_at = set(evaluation_steps(total, steps_per_epoch, per_epoch=per_epoch)) if valid else set()

    last_checkpoint = None
    started = time.perf_counter()
    examples = 0
    bar = tqdm(total=total, initial=state.global_step, disable=not cfg.progress, desc=f"train {task.name}")
    completed = True
    while state.global_step < total:
        epoch, offset = divmod(state.global_step, steps_per_epoch)
        for indices in batch_order(len(records), cfg.batch_size, cfg.seed, epoch)[offset:]:
            batch = encoder.encode([records[i] for i in indices])
            batch = {k: v.to(device) for k, v in batch.items()}
            logits = model(**batch).logits
            loss = torch.nn.functional.cross_entropy(logits.float(), label_tensor[indices].to(device), weight=weights)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(state.global_step, total, cfg.lr, cfg.warmup_ratio)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

            state.global_step += 1
            state.examples_seen += len(indices)
            examples += len(indices)
            state.loss_history.append(round(float(loss.detach()), 6))
            bar.update(1)
            bar.set_postfix(loss=f"{state.loss_history[-1]:.4f}")
            if cfg.time_budget_seconds is not None and state.global_step == _BUDGET_PROBE_STEPS:
                per_step = (time.perf_counter() - started) / _BUDGET_PROBE_STEPS
                # A valid evaluation costs about a forward pass per row (a third of a step's work).
                eval_cost = per_step / 3 * len(valid) / cfg.batch_size * cfg.budget_evaluations if valid else 0.0
                fits = int(max(0.0, cfg.time_budget_seconds - eval_cost) / per_step)
                total = min(total, max(state.global_step, fits))
                bar.total = total
                if valid:
                    eval_at = set(evaluation_steps(total, steps_per_epoch, cfg.budget_evaluations, per_epoch))
            if state.global_step in eval_at or (valid and state.global_step >= total):
                metrics = valid_metrics(task, model, encoder, valid, valid_labels, device)
                # Losses since the previous evaluation, from the history a checkpoint keeps.
                previous = tracker.history[-1]["step"] if tracker.history else 0
                train_loss = float(np.mean(state.loss_history[previous : state.global_step]))
                if tracker.observe(
                    state.global_step, metrics, train_loss=train_loss, epoch=state.global_step / steps_per_epoch
                ):
                    best = copy_state(model)
                state.validation = tracker.to_state()
            if cfg.output_dir and cfg.save_steps and state.global_step % cfg.save_steps == 0:
                last_checkpoint = save_checkpoint(
                    cfg.output_dir / f"checkpoint-{state.global_step}", task, model, encoder, optimizer, state, best
                )
            if cfg.stop_after_steps is not None and state.global_step >= cfg.stop_after_steps:
                completed = state.global_step >= total or tracker.should_stop
                break
            if state.global_step >= total or tracker.should_stop:
                break
        else:
            continue
        break
    bar.close()
    stopped_early = tracker.should_stop and state.global_step < total
    if completed and best is not None:
        model.load_state_dict(best)  # the best on valid, not the last
    model.eval()
    return FitResult(
        steps=state.global_step,
        examples=examples,
        seconds=time.perf_counter() - started,
        final_loss=state.loss_history[-1] if state.loss_history else float("nan"),
        completed=completed,
        last_checkpoint=last_checkpoint,
        history=tuple(tracker.history),
        best_step=tracker.best_step if completed and best is not None else None,
        stopped_early=stopped_early,
    )
