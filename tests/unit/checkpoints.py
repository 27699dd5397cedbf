"""Real (tiny) model checkpoints for registry tests: a freshly initialised propensity
network saved with save_pretrained, so the files are genuine safetensors + config."""

from __future__ import annotations

from pathlib import Path

import torch

from shared.tasks.propensity_model import PropensityConfig, PropensityModel


def tiny_checkpoint(folder: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = PropensityModel(PropensityConfig(id_buckets=64, embed_dim=8, hidden_dim=8))
    model.save_pretrained(folder, safe_serialization=True)
    return folder
