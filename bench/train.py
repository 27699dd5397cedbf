"""Benchmark: the trainer's examples/s against a plain Hugging Face training loop on the
same model and data, and predictor inference examples/s at several batch sizes (fp32 and
int8 dynamic quantization, with the quality cost of int8). Prints ONE JSON line.

usage: python -m bench.train [--train-examples 48] [--rounds 2] [--max-length 64] [--batch-size 16]
           [--eval-examples 200] [--seconds-per-point 2] [--sentiment-table PATH]
           [--propensity-table PATH]

Models: the registry's champions when they exist (so the int8 quality cost is measured on
a trained model), otherwise freshly built ones (speed only; the quality fields are null).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

BATCH_SIZES = (1, 8, 32, 128)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--train-examples", type=int, default=48)
    p.add_argument("--rounds", type=int, default=2, help="alternating timed rounds per training loop")
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--eval-examples", type=int, default=200, help="rows for the int8 quality cost")
    p.add_argument("--seconds-per-point", type=float, default=2.0)
    p.add_argument("--sentiment-table")
    p.add_argument("--propensity-table")
    p.add_argument("--seed", type=int, default=13)
    return p.parse_args(argv)


def _rows(task: Any, table: str | None, split: str, n: int, seed: int) -> list[dict[str, Any]]:
    from batch.training.data import default_table_path
    from shared.delta import read_arrow
    from shared.settings import get_settings

    rows = [r for r in read_arrow(table or default_table_path(get_settings(), task)).to_pylist() if r["split"] == split]
    rng = np.random.default_rng(seed)
    return [rows[i] for i in np.sort(rng.choice(len(rows), size=min(n, len(rows)), replace=False))]


def bench_training(
    task: Any, records: list[dict], max_length: int, batch_size: int, seed: int, rounds: int
) -> dict[str, Any]:
    """Same base model, same examples, same batch order: shopflow's loop vs a plain one.

    The two alternate for `rounds` rounds and each reports its best round, so a burst of
    load from other processes on a shared machine does not decide the ratio.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, set_seed

    from batch.training.trainer import TrainerConfig, batch_order, fit
    from shared.predictor import resolve_device

    device = resolve_device()
    base = task.default_base_model()
    labels = task.labels(records)
    warmup = records[:batch_size]

    set_seed(seed)
    model, encoder = task.build(base, records, max_length=max_length)
    cfg = TrainerConfig(epochs=1, batch_size=batch_size, lr=5e-5, seed=seed, progress=False)
    fit(task, model, encoder, warmup, task.labels(warmup), cfg, device)  # warm-up, untimed

    set_seed(seed)
    plain = AutoModelForSequenceClassification.from_pretrained(base, num_labels=task.num_labels).to(device)
    tokenizer = AutoTokenizer.from_pretrained(base)
    optimizer = torch.optim.AdamW(plain.parameters(), lr=5e-5)
    plain.train()

    def plain_step(batch: Sequence[dict]) -> None:
        enc = tokenizer(
            [r["text"] for r in batch], truncation=True, max_length=max_length, padding=True, return_tensors="pt"
        ).to(device)
        y = torch.tensor([int(r[task.label_column]) for r in batch], device=device)
        out = plain(**enc, labels=y)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    plain_step(warmup)
    ours, theirs = [], []
    for _ in range(rounds):
        ours.append(fit(task, model, encoder, records, labels, cfg, device).examples_per_second)
        started = time.perf_counter()
        for indices in batch_order(len(records), batch_size, seed, 0):
            plain_step([records[i] for i in indices])
        theirs.append(len(records) / (time.perf_counter() - started))
    return {
        "examples": len(records),
        "max_length": max_length,
        "batch_size": batch_size,
        "rounds": rounds,
        "shopflow_examples_per_s": round(max(ours), 2),
        "plain_hf_examples_per_s": round(max(theirs), 2),
        "ratio": round(max(ours) / max(theirs), 3),
        "all_rounds": {"shopflow": [round(v, 2) for v in ours], "plain_hf": [round(v, 2) for v in theirs]},
    }


def throughput(predictor: Any, records: list[dict], budget_s: float) -> dict[str, float]:
    """Examples/s of predictor.score at each batch size, repeating until the time budget."""
    out = {}
    for size in BATCH_SIZES:
        batch = (records * (size // max(1, len(records)) + 1))[:size]
        predictor.score(batch)  # warm-up
        done, started = 0, time.perf_counter()
        while True:
            predictor.score(batch)
            done += size
            elapsed = time.perf_counter() - started
            if elapsed >= budget_s:
                break
        out[str(size)] = round(done / elapsed, 1)
    return out


def _predictor(task_name: str, records: list[dict]) -> tuple[Any, bool]:
    from shared.predictor import Predictor, load_predictor, resolve_device
    from shared.registry import ModelRegistry
    from shared.settings import get_settings
    from shared.tasks import get_task

    registry = ModelRegistry(get_settings().models.registry_root)
    if registry.resolve(task_name) is not None:
        return load_predictor(task_name, registry=registry, batch_size=128), True
    task = get_task(task_name)
    model, encoder = task.build(task.default_base_model(), records)
    return Predictor(task, model, encoder, version="untrained", device=resolve_device(), batch_size=128), False


def bench_inference(task_name: str, table: str | None, args: argparse.Namespace) -> dict[str, Any]:
    from shared.predictor import quantize_int8
    from shared.tasks import get_task

    task = get_task(task_name)
    test = _rows(task, table, "test", args.eval_examples, args.seed)
    predictor, trained = _predictor(task_name, test)
    result: dict[str, Any] = {
        "model_version": predictor.version,
        "trained": trained,
        "fp32": throughput(predictor, test, args.seconds_per_point),
    }
    int8 = quantize_int8(predictor) if predictor.device.type == "cpu" else None
    if int8 is not None:
        result["int8"] = throughput(int8, test, args.seconds_per_point)
        if trained:
            y = task.labels(test)
            fp32_m = task.metrics(y, predictor.predict_proba(test))
            int8_m = task.metrics(y, int8.predict_proba(test))
            keys = [k for k in ("accuracy", "macro_f1", "roc_auc", "pr_auc") if k in fp32_m]
            result["quality_on_test_rows"] = {
                "n": len(test),
                "fp32": {k: round(fp32_m[k], 4) for k in keys},
                "int8": {k: round(int8_m[k], 4) for k in keys},
            }
    return result


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import logging

    import transformers

    transformers.logging.set_verbosity_error()
    logging.disable(logging.WARNING)
    from shared.predictor import resolve_device
    from shared.tasks import get_task

    args = parse_args(argv)
    started = time.perf_counter()
    sentiment = get_task("sentiment")
    train_rows = _rows(sentiment, args.sentiment_table, "train", args.train_examples, args.seed)
    doc = {
        "device": str(resolve_device()),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "train_sentiment": bench_training(
            sentiment, train_rows, args.max_length, args.batch_size, args.seed, args.rounds
        ),
        "inference_examples_per_s": {
            "sentiment": bench_inference("sentiment", args.sentiment_table, args),
            "propensity": bench_inference("propensity", args.propensity_table, args),
        },
    }
    doc["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(doc))
    return 0


if __name__ == "__main__":
    if __package__ in (None, ""):
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main())
