"""Registry: versions appear whole, corrupt ones are refused, the alias flips atomically."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from shared.errors import CorruptCheckpointError, ModelError, ModelNotFoundError
from shared.manifest import Manifest, TrainingTable
from shared.predictor import load_predictor
from shared.registry import ModelRegistry, sha256_file
from tests.unit.checkpoints import tiny_checkpoint

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "registry")


@pytest.fixture()
def two_versions(registry: ModelRegistry, tmp_path: Path) -> ModelRegistry:
    for seed in (1, 2):
        ckpt = tiny_checkpoint(tmp_path / f"ckpt{seed}", seed=seed)
        registry.register("propensity", ckpt, {"metrics": {"roc_auc": 0.5 + seed / 10}})
    return registry


def test_register_writes_manifest_with_checksums(registry: ModelRegistry, tmp_path: Path) -> None:
    ckpt = tiny_checkpoint(tmp_path / "ckpt")
    version = registry.register("propensity", ckpt, {"base_model": "scratch", "metrics": {"roc_auc": 0.7}})
    assert version == 1 and registry.versions("propensity") == [1]
    manifest = registry.verify("propensity", 1)
    assert manifest.task == "propensity" and manifest.version == 1
    assert manifest.metrics == {"roc_auc": 0.7} and manifest.created_at and manifest.base_model == "scratch"
    folder = registry.path("propensity", 1)
    assert set(manifest.files) == {"config.json", "model.safetensors"}
    assert manifest.files["model.safetensors"] == sha256_file(folder / "model.safetensors")
    assert registry.register("propensity", ckpt, {}) == 2
    # No staging leftovers next to the versions.
    assert [p.name for p in (registry.root / "propensity").iterdir() if p.name.startswith(".")] == []


def test_register_refuses_pickle_weights(registry: ModelRegistry, tmp_path: Path) -> None:
    ckpt = tiny_checkpoint(tmp_path / "ckpt")
    (ckpt / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(ModelError, match="pickle"):
        registry.register("propensity", ckpt, {})
    assert registry.versions("propensity") == []


def test_unknown_version_and_alias(registry: ModelRegistry) -> None:
    assert registry.resolve("propensity") is None
    with pytest.raises(ModelNotFoundError, match="no version 3"):
        registry.path("propensity", 3)
    with pytest.raises(ModelNotFoundError, match="champion"):
        load_predictor("propensity", registry=registry)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) - 10] ^= 0xFF
    path.write_bytes(bytes(data))


CORRUPTIONS = {
    "truncated weights": (lambda f: _truncate(f / "model.safetensors"), "truncated or corrupt"),
    "flipped byte": (lambda f: _flip_byte(f / "model.safetensors"), "truncated or corrupt"),
    "missing file": (lambda f: (f / "config.json").unlink(), "missing files"),
    "extra file": (lambda f: (f / "notes.txt").write_text("x"), "not in the manifest"),
    "no manifest": (lambda f: (f / "manifest.json").unlink(), "half-written"),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_corrupt_version_is_refused_and_never_promoted(two_versions: ModelRegistry, case: str) -> None:
    registry = two_versions
    registry.flip_alias("propensity", 1)
    corrupt, message = CORRUPTIONS[case]
    corrupt(registry.path("propensity", 2))
    with pytest.raises(CorruptCheckpointError, match=message):
        registry.verify("propensity", 2)
    with pytest.raises(CorruptCheckpointError):
        registry.flip_alias("propensity", 2)
    assert registry.resolve("propensity") == 1
    with pytest.raises(CorruptCheckpointError):
        load_predictor("propensity", version=2, registry=registry)
    assert load_predictor("propensity", registry=registry).version == "1"


def test_half_written_version_folder_is_refused(two_versions: ModelRegistry) -> None:
    """A version folder made by something other than register(), e.g. a copy cut short."""
    registry = two_versions
    source = registry.path("propensity", 1)
    half = source.parent / "3"
    half.mkdir()
    (half / "config.json").write_bytes((source / "config.json").read_bytes())
    assert 3 in registry.versions("propensity")
    with pytest.raises(CorruptCheckpointError, match="half-written"):
        registry.flip_alias("propensity", 3)
    assert registry.resolve("propensity") is None


def test_promote_flips_alias_and_loads(two_versions: ModelRegistry) -> None:
    registry = two_versions
    registry.flip_alias("propensity", 2)
    assert registry.resolve("propensity") == 2
    registry.flip_alias("propensity", 1, alias="canary")
    assert registry.aliases("propensity") == {"canary": 1, "champion": 2}
    predictor = load_predictor("propensity", registry=registry)
    assert (predictor.task, predictor.model_name, predictor.version) == ("propensity", "shopflow-propensity", "2")


_READER = """
import json, sys
from shared.registry import ModelRegistry
registry, seen, errors = ModelRegistry(sys.argv[1]), set(), []
for _ in range(int(sys.argv[2])):
    try:
        seen.add(registry.resolve("propensity"))
    except Exception as exc:
        errors.append(repr(exc))
print(json.dumps({"seen": sorted(seen), "errors": errors[:5]}))
"""


def test_concurrent_readers_never_see_a_half_flipped_alias(two_versions: ModelRegistry) -> None:
    registry = two_versions
    registry.flip_alias("propensity", 1)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    readers = [
        subprocess.Popen(
            [sys.executable, "-c", _READER, str(registry.root), "3000"], stdout=subprocess.PIPE, text=True, env=env
        )
        for _ in range(2)
    ]
    thread_seen: list[int | None] = []
    thread_errors: list[BaseException] = []
    stop = threading.Event()

    def read_loop() -> None:
        while not stop.is_set():
            try:
                thread_seen.append(registry.resolve("propensity"))
            except BaseException as exc:  # noqa: BLE001 - any failure is the test failing
                thread_errors.append(exc)

    threads = [threading.Thread(target=read_loop) for _ in range(2)]
    for t in threads:
        t.start()
    flips = 0
    while any(r.poll() is None for r in readers) or flips < 200:
        registry.flip_alias("propensity", 2 if flips % 2 == 0 else 1)
        flips += 1
    stop.set()
    for t in threads:
        t.join()

    assert thread_errors == []
    assert set(thread_seen) <= {1, 2} and len(thread_seen) > 100
    for reader in readers:
        out = reader.communicate()[0]
        assert reader.returncode == 0, out
        result = json.loads(out.strip().splitlines()[-1])
        assert result["errors"] == []
        assert set(result["seen"]) <= {1, 2}
    alias_dir = registry.root / "propensity" / "aliases"
    assert sorted(p.name for p in alias_dir.iterdir()) == ["champion.json"]  # no temp files left


def test_manifest_is_typed_and_keeps_unknown_keys(registry: ModelRegistry, tmp_path: Path) -> None:
    ckpt = tiny_checkpoint(tmp_path / "ckpt")
    written = Manifest(
        primary_metric="roc_auc",
        metrics={"roc_auc": 0.7},
        label_names=("no", "yes"),
        training_data={"train_propensity": TrainingTable("/lake/gold/t", 4)},
        init_from_champion=None,
    ).with_fields(decision={"p_value": 0.01})
    version = registry.register("propensity", ckpt, written)
    manifest = registry.verify("propensity", version)
    assert manifest.training_data["train_propensity"].delta_version == 4
    assert manifest.label_names == ("no", "yes") and manifest.primary_value == 0.7
    assert manifest.extra == {"decision": {"p_value": 0.01}}  # a newer job's field survives
    assert Manifest.from_json(manifest.to_json()) == manifest


def test_old_manifest_on_disk_still_loads(registry: ModelRegistry, tmp_path: Path) -> None:
    """A manifest written before the typed class (a plain dict, some fields absent)."""
    version = registry.register("propensity", tiny_checkpoint(tmp_path / "ckpt"), {})
    folder = registry.path("propensity", version)
    old = json.loads((folder / "manifest.json").read_text())
    old = {k: old[k] for k in ("task", "version", "created_at", "files")}
    old |= {
        "metrics": {"roc_auc": 0.6},
        "primary_metric": "roc_auc",
        "note": "hand-made",
        "training_data": {"train_propensity": {"path": "lake/gold/train_propensity", "delta_version": 2}},
    }
    (folder / "manifest.json").write_text(json.dumps(old))
    manifest = registry.verify("propensity", version)
    assert manifest.primary_value == 0.6 and manifest.extra == {"note": "hand-made"}
    assert manifest.base_model == "" and manifest.training_data["train_propensity"].delta_version == 2
