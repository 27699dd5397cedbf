"""`shopflow models list|show|promote` against a real registry folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.cli import main as shopflow
from shared.registry import ModelRegistry
from tests.unit.checkpoints import tiny_checkpoint

TASK = "cli-demo"  # a task name of its own, so the session registry's real tasks are untouched


def test_list_show_promote_and_refuse_corrupt(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    registry = ModelRegistry()
    first = registry.register(TASK, tiny_checkpoint(tmp_path / "a"), {"primary_metric": "roc_auc", "metrics": {"roc_auc": 0.61}})
    second = registry.register(TASK, tiny_checkpoint(tmp_path / "b", seed=3), {"primary_metric": "roc_auc", "metrics": {"roc_auc": 0.64}})

    assert shopflow(["models", "promote", TASK, str(first)]) == 0
    assert shopflow(["models", "list"]) == 0
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if l.startswith(TASK) and f"v{first} " in l)
    assert "champion" in line and "roc_auc=0.6100" in line

    assert shopflow(["models", "show", TASK]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == first

    (registry.path(TASK, second) / "model.safetensors").write_bytes(b"truncated")
    assert shopflow(["models", "promote", TASK, str(second)]) == 1
    assert "truncated or corrupt" in capsys.readouterr().err
    assert registry.resolve(TASK) == first
    assert shopflow(["models", "list", "--task", TASK]) == 0
    assert "corrupt" in capsys.readouterr().out
