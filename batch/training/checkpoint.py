"""Resumable training checkpoints, with no pickle anywhere.

A checkpoint folder holds the model in save_pretrained layout (safetensors), the
optimizer's per-parameter tensors and the RNG state in `trainer_state.safetensors`, and
the counters in `trainer_state.json`. Restoring all three makes the resumed run take the
same steps, with the same dropout masks, as an uninterrupted one.

    save_checkpoint(folder, task, model, encoder, optimizer, TrainerState(step=40, ...))
    state = load_training_state(folder, optimizer)
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from shared.errors import ModelError
from shared.tasks import Task

STATE_JSON = "trainer_state.json"
STATE_TENSORS = "trainer_state.safetensors"
BEST_PREFIX = "best."


@dataclass
class TrainerState:
    global_step: int
    total_steps: int
    steps_per_epoch: int
    seed: int
    batch_size: int
    examples_seen: int
    loss_history: list[float]
    # The valid-split evaluations so far and the best one (ValidationTracker.to_state()).
    validation: dict[str, Any] = field(default_factory=dict)


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for index, param in enumerate(params):
        for key, value in optimizer.state.get(param, {}).items():
            tensor = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"optimizer.{index}.{key}"] = tensor.detach().cpu().contiguous()
    groups = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    return tensors, {"param_groups": groups, "n_params": len(params)}


def save_checkpoint(
    folder: Path,
    task: Task,
    model: torch.nn.Module,
    encoder: Any,
    optimizer: torch.optim.Optimizer,
    state: TrainerState,
    best: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write a checkpoint into `folder` atomically (temp folder, then rename); `best` is the
    best weights on the valid split so far, kept so a resumed run ends with the same ones."""
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    task.save(model, encoder, tmp)
    tensors, meta = _optimizer_tensors(optimizer)
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    for name, tensor in (best or {}).items():
        tensors[f"{BEST_PREFIX}{name}"] = tensor.contiguous()
    save_file(tensors, str(tmp / STATE_TENSORS))
    (tmp / STATE_JSON).write_text(json.dumps({**asdict(state), "optimizer": meta}, indent=2))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return folder


def load_training_state(folder: Path, optimizer: torch.optim.Optimizer) -> TrainerState:
    """Restore the optimizer and RNG from `folder`; returns the saved counters."""
    try:
        meta = json.loads((folder / STATE_JSON).read_text())
        tensors = load_file(str(folder / STATE_TENSORS))
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"{folder} is not a resumable checkpoint ({exc}); pass a checkpoint-<step> folder "
            "written by `shopflow train --save-steps`"
        ) from exc
    opt_meta = meta.pop("optimizer")
    params = [p for group in optimizer.param_groups for p in group["params"]]
    if len(params) != opt_meta["n_params"]:
        raise ModelError(
            f"{folder} was saved for {opt_meta['n_params']} parameters, the model has "
            f"{len(params)}: resume with the same task and options (e.g. --lora)"
        )
    for group, saved in zip(optimizer.param_groups, opt_meta["param_groups"]):
        group.update(saved)
    for name, tensor in tensors.items():
        if not name.startswith("optimizer."):
            continue
        _, index, key = name.split(".", 2)
        param = params[int(index)]
        optimizer.state.setdefault(param, {})[key] = tensor.to(param.device) if tensor.dim() else tensor
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    return TrainerState(**meta)


def load_best_weights(folder: Path) -> dict[str, torch.Tensor] | None:
    """The best-on-valid weights a checkpoint kept; None when it kept none."""
    tensors = load_file(str(folder / STATE_TENSORS))
    best = {name[len(BEST_PREFIX) :]: t for name, t in tensors.items() if name.startswith(BEST_PREFIX)}
    return best or None
