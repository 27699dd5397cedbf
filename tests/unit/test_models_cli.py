"""`shopflow models list|show|promote` against a real registry folder (no broker: the
promotion says it was not announced and still flips the alias)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobs.cli import main as shopflow
from shared.registry import ModelRegistry
from shared.settings import get_settings
from tests.unit.checkpoints import tiny_checkpoint

TASK = "cli-demo"  # a task name of its own, so the session registry's real tasks are untouched


@pytest.fixture()
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SHOPFLOW_MODELS__REGISTRY_ROOT", str(tmp_path / "registry"))
    monkeypatch.setenv("SHOPFLOW_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:1")  # nothing listens there
    get_settings.cache_clear()
    yield ModelRegistry(get_settings().models.registry_root)
    get_settings.cache_clear()


def test_list_show_promote_and_refuse_corrupt(
    registry: ModelRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    passed = {
        "verdict": "passed",
        "strongest_baseline": "lr",
        "baselines": {"lr": {"difference": {"value": 0.01, "low": -0.02, "high": 0.04}}},
    }
    first = registry.register(
        TASK,
        tiny_checkpoint(tmp_path / "a"),
        {"primary_metric": "roc_auc", "metrics": {"roc_auc": 0.61}, "kind": "trained", "gate": passed},
    )
    second = registry.register(
        TASK, tiny_checkpoint(tmp_path / "b", seed=3), {"primary_metric": "roc_auc", "metrics": {"roc_auc": 0.64}}
    )

    assert shopflow(["models", "promote", TASK, str(first)]) == 0
    out = capsys.readouterr().out
    assert f"champion -> v{first}" in out and "not announced" in out and "next registry poll" in out
    assert shopflow(["models", "list"]) == 0
    out = capsys.readouterr().out
    line = next(row for row in out.splitlines() if row.startswith(TASK) and f"v{first} " in row)
    assert "champion" in line and "roc_auc=0.6100" in line and "trained" in line and "gate=passed" in line
    assert f"{TASK}: serving v{first}, a trained model: promoted by hand" in out

    assert shopflow(["models", "show", TASK]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == first

    (registry.path(TASK, second) / "model.safetensors").write_bytes(b"truncated")
    assert shopflow(["models", "promote", TASK, str(second)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("shopflow models: ") and "truncated or corrupt" in err and len(err.splitlines()) == 1
    assert registry.resolve(TASK) == first
    assert shopflow(["models", "list", "--task", TASK]) == 0
    assert "corrupt" in capsys.readouterr().out

    assert shopflow(["models", "show", TASK, "7"]) == 2
    assert "no version 7" in capsys.readouterr().err

    # A version from an older release (no gate evidence): refused, unless forced.
    old = registry.register(TASK, tiny_checkpoint(tmp_path / "c", seed=5), {"primary_metric": "roc_auc"})
    capsys.readouterr()  # saving the checkpoint's own output
    assert shopflow(["models", "promote", TASK, str(old)]) == 2
    err = capsys.readouterr().err
    assert "no baseline-gate evidence" in err and "--force" in err and len(err.splitlines()) == 1
    assert registry.resolve(TASK) == first
    assert shopflow(["models", "promote", TASK, str(old), "--force", "--reason", "checked by hand"]) == 0
    assert registry.resolve(TASK) == old
    assert shopflow(["models", "list", "--task", TASK]) == 0
    assert f"serving v{old}, a trained model: forced by " in capsys.readouterr().out


def test_bulk_scoring_labels_what_the_version_is(registry: ModelRegistry, tmp_path: Path) -> None:
    """Rows scored by a version no alias points at say so: never shown as the champion's."""
    import pandas as pd

    from batch.score import make_scorer, model_status

    task = "propensity"
    first = registry.register(task, tiny_checkpoint(tmp_path / "a"), {})
    second = registry.register(task, tiny_checkpoint(tmp_path / "b", seed=3), {})
    registry.flip_alias(task, first)
    assert model_status(registry, task, first) == "champion"
    assert model_status(registry, task, second) == "unpromoted"
    registry.flip_alias(task, second, alias="challenger")
    assert model_status(registry, task, second) == "challenger"

    frame = pd.DataFrame([{"event_id": "e1", "user_id": "u", "item_id": "i", "category_id": "c"}])
    scorer = make_scorer(str(registry.root), task, first, 8, model_status(registry, task, first))
    (out,) = list(scorer(iter([frame])))
    assert list(out["model_status"]) == ["champion"] and list(out["model_version"]) == [str(first)]
