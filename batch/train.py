"""Fine-tune a task's model on its gold training set, evaluate it against baselines and
the champion on the same test rows, register it, and optionally promote it.

usage: python -m batch.train --task sentiment [--max-train-samples 200] [--epochs 1]
           [--batch-size 16] [--lr 5e-5] [--seed 13] [--max-length 128] [--lora]
           [--base-model DIR] [--init-from-champion] [--resume-from DIR] [--promote]
       (also: spark-submit batch/train.py ..., shopflow train ...)
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # spark-submit batch/train.py runs this file as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, fields
from typing import Any

log = logging.getLogger("shopflow.train")


@dataclass(frozen=True)
class TrainArgs:
    task: str
    table_path: str | None = None
    table_version: int | None = None
    base_model: str | None = None
    init_from_champion: bool = False
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    epochs: int = 1
    batch_size: int = 16
    lr: float | None = None
    seed: int = 13
    max_length: int = 128
    lora: bool = False
    lora_rank: int = 8
    save_steps: int = 0
    stop_after_steps: int | None = None
    resume_from: str | None = None
    output_dir: str | None = None
    promote: bool = False
    device: str | None = None
    progress: bool = True


def parse_args(argv: list[str] | None) -> TrainArgs:
    from shared.tasks import TASKS

    p = argparse.ArgumentParser(prog="shopflow train", description=__doc__.split("\n\n")[0])
    p.add_argument("--task", required=True, choices=sorted(TASKS))
    p.add_argument("--table-path", help="gold table (default: the lake's gold/<task table>)")
    p.add_argument("--table-version", type=int, help="Delta version to read (default: latest)")
    p.add_argument("--base-model", help="HF model folder or hub name (default: offline MiniLM)")
    p.add_argument("--init-from-champion", action="store_true", help="continue from the champion")
    p.add_argument("--max-train-samples", type=int, help="smoke mode: train on this many rows")
    p.add_argument("--max-eval-samples", type=int, help="evaluate on this many test rows")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, help="default: 5e-5 full fine-tune, 5e-4 LoRA, 2e-3 propensity")
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--max-length", type=int, default=128, help="text tasks: tokens per example")
    p.add_argument("--lora", action="store_true", help="train LoRA adapters (text tasks), merged on save")
    p.add_argument("--lora-rank", type=int, default=8)
    p.add_argument("--save-steps", type=int, default=0, help="write a resumable checkpoint every N steps")
    p.add_argument("--stop-after-steps", type=int, help="stop after N steps (time-boxed or preempted runs)")
    p.add_argument("--resume-from", help="a checkpoint-<step> folder written by --save-steps")
    p.add_argument("--output-dir", help="where checkpoints go (default: a temp folder)")
    p.add_argument("--promote", action="store_true", help="promote if it beats the champion")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    p.add_argument("--no-progress", dest="progress", action="store_false")
    ns = p.parse_args(argv)
    return TrainArgs(**{f.name: getattr(ns, f.name) for f in fields(TrainArgs)})


def _default_lr(task_name: str, lora: bool) -> float:
    if task_name == "propensity":
        return 2e-3  # a small network trained from scratch
    return 5e-4 if lora else 5e-5


def _apply_lora(model: Any, rank: int) -> Any:
    from peft import LoraConfig, TaskType, get_peft_model

    config = LoraConfig(
        task_type=TaskType.SEQ_CLS, r=rank, lora_alpha=2 * rank, lora_dropout=0.1,
        target_modules=["query", "value"],
    )
    return get_peft_model(model, config)


def run(args: TrainArgs) -> dict[str, Any]:
    """Train, evaluate, register (and maybe promote); returns the metrics document."""
    import torch
    from transformers import set_seed

    from batch.training.data import load_training_data
    from batch.training.evaluate import evaluate_all
    from batch.training.loop import LoopConfig, fit
    from shared.errors import ModelError
    from shared.predictor import Predictor, resolve_device
    from shared.registry import ModelRegistry
    from shared.settings import get_settings
    from shared.tasks import get_task

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    settings = get_settings()
    task = get_task(args.task)
    registry = ModelRegistry()
    device = resolve_device(args.device)
    set_seed(args.seed)

    data = load_training_data(
        task, args.table_path, delta_version=args.table_version, seed=args.seed,
        max_train_samples=args.max_train_samples, max_eval_samples=args.max_eval_samples,
    )
    log.info("%s: %d train / %d test rows from %s@v%d", task.name, len(data.train), len(data.test),
             data.table_path, data.delta_version)

    base_model = args.base_model if args.base_model is not None else task.default_base_model()
    init_from = None
    if args.init_from_champion:
        champion = registry.resolve(task.name)
        if champion is None:
            raise ModelError(f"--init-from-champion: task {task.name!r} has no champion yet")
        base_model_manifest = registry.verify(task.name, champion)
        base_model = str(registry.path(task.name, champion))
        init_from = {"task": task.name, "version": champion, "base_model": base_model_manifest.get("base_model")}
    if args.lora and task.name == "propensity":
        raise ModelError("--lora applies to text tasks; the propensity model is small enough to train fully")
    if args.lora and args.resume_from:
        raise ModelError("--resume-from with --lora is not supported: resume a full fine-tune, or restart")

    if args.resume_from:
        model, encoder = task.load(Path(args.resume_from))
    else:
        model, encoder = task.build(base_model, data.train, max_length=args.max_length)
    if args.lora:
        model = _apply_lora(model, args.lora_rank)

    output_dir = Path(args.output_dir) if args.output_dir else Path(tempfile.mkdtemp(prefix="shopflow-train-"))
    loop = LoopConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr or _default_lr(task.name, args.lora),
        seed=args.seed, save_steps=args.save_steps, stop_after_steps=args.stop_after_steps,
        output_dir=output_dir, progress=args.progress,
    )
    result = fit(task, model, encoder, data.train, task.labels(data.train), loop, device,
                 resume_from=Path(args.resume_from) if args.resume_from else None)
    if args.lora:
        model = model.merge_and_unload()  # the registry holds a plain HF model

    doc: dict[str, Any] = {
        "task": task.name,
        "model_name": task.model_name,
        "args": asdict(args),
        "training": {
            "steps": result.steps, "examples": result.examples, "seconds": round(result.seconds, 3),
            "examples_per_second": round(result.examples_per_second, 3), "final_loss": result.final_loss,
            "completed": result.completed, "device": str(device), "lr": loop.lr,
            "last_checkpoint": str(result.last_checkpoint) if result.last_checkpoint else None,
        },
        "data": {
            "table": data.table_path, "delta_version": data.delta_version,
            "train_rows": len(data.train), "test_rows": len(data.test),
            "train_rows_available": data.train_rows_available, "test_rows_available": data.test_rows_available,
        },
    }
    if not result.completed:
        # A stopped run leaves its checkpoint to resume from and registers nothing.
        log.info("stopped after %d steps; resume with --resume-from %s", result.steps, result.last_checkpoint)
        _write_metrics(settings.metrics_dir, f"train-{task.name}-stopped-step{result.steps}.json", doc)
        return doc

    candidate = Predictor(task, model, encoder, version="candidate", device=device)
    report = evaluate_all(task, candidate, data.train, data.test, registry, seed=args.seed)
    doc.update(report.to_dict())

    final_dir = output_dir / "final"
    shutil.rmtree(final_dir, ignore_errors=True)
    task.save(model.cpu(), encoder, final_dir)
    manifest = {
        "model_name": task.model_name,
        "base_model": task.base_model_name(base_model) if init_from is None else init_from["base_model"],
        "init_from_champion": init_from,
        "label_names": list(task.label_names),
        "primary_metric": task.primary_metric,
        "metrics": report.metrics,
        "baseline_metrics": report.baselines,
        "training_data": {task.training_set.table: {"path": data.table_path, "delta_version": data.delta_version}},
        "training": doc["training"] | {"lora": args.lora, "epochs": args.epochs, "seed": args.seed,
                                       "max_train_samples": args.max_train_samples},
    }
    version = registry.register(task.name, final_dir, manifest)
    doc["version"] = version
    promoted = bool(args.promote and report.beats_champion(task.primary_metric))
    if promoted:
        registry.promote(task.name, version)
        from stream.announce import announce_promotion  # running workers reload now, not at their next poll

        doc["announced"] = announce_promotion(settings, task=task.name, version=version)
    doc["promoted"] = promoted
    doc["metrics_file"] = str(_write_metrics(settings.metrics_dir, f"train-{task.name}-v{version}.json", doc))
    if not args.output_dir:
        shutil.rmtree(output_dir, ignore_errors=True)
    return doc


def _write_metrics(folder: Path, name: str, doc: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps(doc, indent=2, default=str))
    return path


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    doc = run(parse_args(argv))
    summary = {k: doc.get(k) for k in ("task", "version", "promoted", "metrics", "baseline_metrics")}
    print(json.dumps(summary, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
