"""The model registry: versioned, checksummed checkpoints and an atomic per-task alias.

Layout under `settings.models.registry_root`:

    <task>/versions/<N>/            save_pretrained layout (safetensors) + tokenizer or
                                    feature spec + manifest.json (sha256 of every file)
    <task>/aliases/<alias>.json     {"version": N}; flipped with write-temp + os.replace
    <task>/.staging-*/              versions being copied in (never read)

A version folder appears by one `rename` of a fully written, fsynced, verified staging
folder, so it exists whole or not at all. A reader that races a writer sees either the
old alias file or the new one, never a mix, because `os.replace` is atomic on POSIX.

    registry = ModelRegistry(settings.models.registry_root)
    version = registry.register("sentiment", Path("out/checkpoint"), Manifest(metrics={...}))
    registry.flip_alias("sentiment", version)   # promotion (with its announcement) is shared.promotion
    registry.resolve("sentiment")  # -> version
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from shared.errors import CorruptCheckpointError, ModelError, ModelNotFoundError, WeightsReclaimedError
from shared.files import sha256_file
from shared.manifest import Manifest

MANIFEST = "manifest.json"
# Manifest key set when the registry retention removed a version's weights (shared.retention).
WEIGHTS_RECLAIMED = "weights_reclaimed"
_NAME = re.compile(r"^[a-z][a-z0-9_\-]*$")
# Pickle-based weight formats may run code when loaded; the registry refuses them.
_FORBIDDEN_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def _fsync_path(path: Path) -> None:
    """fsync a file or a directory so a rename that follows is durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _files_of(folder: Path) -> dict[str, Path]:
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}


def _check_name(kind: str, value: str) -> str:
    if not _NAME.match(value):
        raise ModelError(f"invalid {kind} name {value!r}: use lower-case letters, digits, '_' or '-'")
    return value


class ModelRegistry:
    """Versioned checkpoints per task, verified on every load and promotion."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    # ----------------------------------------------------------------------- layout

    def _task_dir(self, task: str) -> Path:
        return self.root / _check_name("task", task)

    def _alias_file(self, task: str, alias: str) -> Path:
        return self._task_dir(task) / "aliases" / f"{_check_name('alias', alias)}.json"

    def path(self, task: str, version: int) -> Path:
        """The folder of one version (raises ModelNotFoundError if it does not exist)."""
        folder = self._task_dir(task) / "versions" / str(int(version))
        if not folder.is_dir():
            known = self.versions(task)
            raise ModelNotFoundError(
                f"model {task!r} has no version {version} in {self.root} (versions: {known or 'none'}); "
                "train one with `shopflow train --task " + task + "`"
            )
        return folder

    def tasks(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "versions").is_dir())

    def versions(self, task: str) -> list[int]:
        folder = self._task_dir(task) / "versions"
        if not folder.is_dir():
            return []
        return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())

    def aliases(self, task: str) -> dict[str, int]:
        folder = self._task_dir(task) / "aliases"
        if not folder.is_dir():
            return {}
        out = {}
        for file in sorted(folder.glob("*.json")):
            version = self.resolve(task, file.stem)
            if version is not None:
                out[file.stem] = version
        return out

    # ---------------------------------------------------------------------- writing

    def register(self, task: str, checkpoint_dir: Path | str, manifest: Manifest | Mapping[str, Any]) -> int:
        """Copy a checkpoint in as the next version; returns the version number.

        The manifest gets task, version, created_at and the sha256 of every file added
        here; the caller supplies the rest (base model, metrics, baselines, data versions).
        A plain mapping is read as a manifest (unknown keys kept).
        """
        if not isinstance(manifest, Manifest):
            manifest = Manifest.from_dict(manifest)
        source = Path(checkpoint_dir)
        if not source.is_dir():
            raise ModelError(f"checkpoint folder {source} does not exist")
        sources = {k: v for k, v in _files_of(source).items() if k != MANIFEST}
        pickled = [name for name in sources if name.endswith(_FORBIDDEN_SUFFIXES)]
        if pickled:
            raise ModelError(
                f"checkpoint {source} holds pickle-format files {pickled}: save with "
                "save_pretrained(..., safe_serialization=True) so weights are safetensors"
            )
        if not any(name.endswith(".safetensors") for name in sources):
            raise ModelError(f"checkpoint {source} has no .safetensors weights")

        task_dir = self._task_dir(task)
        versions_dir = task_dir / "versions"
        versions_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=task_dir))
        try:
            for name, file in sources.items():
                target = staging / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(file, target)
                _fsync_path(target)
            checksums = {name: sha256_file(staging / name) for name in sources}
            # Another trainer may register concurrently: the rename below fails if the
            # number was taken, and we retry with the next one.
            for _ in range(100):
                version = (max(self.versions(task)) + 1) if self.versions(task) else 1
                full = manifest.with_fields(
                    task=task,
                    version=version,
                    files=checksums,
                    created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                )
                _write_text_durably(staging / MANIFEST, full.to_json())
                self._verify_folder(task, version, staging)
                _fsync_path(staging)
                try:
                    os.rename(staging, versions_dir / str(version))
                except OSError:
                    if (versions_dir / str(version)).exists():
                        continue
                    raise
                _fsync_path(versions_dir)
                return version
            raise ModelError(f"could not allocate a version number for {task!r}")
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    def flip_alias(self, task: str, version: int, alias: str = "champion") -> Manifest:
        """Point `alias` at `version` after verifying it; atomic for concurrent readers.

        Only the registry half of a promotion: callers go through
        `shared.promotion.promote`, which also tells running workers."""
        manifest = self.verify(task, version)
        alias_file = self._alias_file(task, alias)
        alias_file.parent.mkdir(parents=True, exist_ok=True)
        payload = {"version": int(version), "promoted_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        _write_text_durably(alias_file, json.dumps(payload, indent=2, sort_keys=True))
        return manifest

    def update_manifest(self, task: str, version: int, change: Callable[[Manifest], Manifest]) -> Manifest:
        """Rewrite a version's manifest.json durably with `change(manifest)` (e.g. a
        promotion attempt on the record). The manifest is not among the checksummed
        files; what identifies the version (task, version, files) cannot change."""
        before = self.manifest(task, version)
        after = change(before)
        if (after.task, after.version, after.files) != (before.task, before.version, before.files):
            raise ModelError(f"{task} v{version}: a manifest update may not change task, version or files")
        # Written beside the version folder, not in it: a reader verifying the folder
        # meanwhile must never see a file the manifest does not list.
        _write_text_durably(self.path(task, version) / MANIFEST, after.to_json(), tmp_dir=self._task_dir(task))
        return after

    # ---------------------------------------------------------------------- reading

    def resolve(self, task: str, alias: str = "champion") -> int | None:
        """The version an alias points at, or None when the alias was never set."""
        alias_file = self._alias_file(task, alias)
        try:
            data = json.loads(alias_file.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ModelError(f"alias file {alias_file} is unreadable: {exc}; promote a version again") from exc
        return int(data["version"])

    def manifest(self, task: str, version: int) -> Manifest:
        """The manifest as written (not verified: use `verify` before serving)."""
        file = self.path(task, version) / MANIFEST
        try:
            return Manifest.from_json(file.read_text())
        except FileNotFoundError as exc:
            raise CorruptCheckpointError(
                f"{task} v{version}: manifest.json is missing from {file.parent}; the version "
                "is incomplete: delete it and register the checkpoint again"
            ) from exc
        except ValueError as exc:
            raise CorruptCheckpointError(f"{task} v{version}: manifest.json is not valid JSON ({exc})") from exc

    def verify(self, task: str, version: int) -> Manifest:
        """Check every file against the manifest; returns the manifest or raises."""
        return self._verify_folder(task, version, self.path(task, version))

    def _verify_folder(self, task: str, version: int, folder: Path) -> Manifest:
        where = f"{task} v{version} ({folder})"
        try:
            manifest = Manifest.from_json((folder / MANIFEST).read_text())
        except FileNotFoundError as exc:
            raise CorruptCheckpointError(
                f"{where}: manifest.json is missing; the version is half-written: delete it "
                "and register the checkpoint again"
            ) from exc
        except ValueError as exc:
            raise CorruptCheckpointError(f"{where}: manifest.json is not valid JSON ({exc})") from exc
        reclaimed = manifest.extra.get(WEIGHTS_RECLAIMED)
        if reclaimed:
            raise WeightsReclaimedError(
                f"{task} v{version}: not servable, its weights were reclaimed by the registry retention "
                f"on {reclaimed.get('at', '?')} (the manifest is kept)"
            )
        expected: dict[str, str] = manifest.files
        if not expected:
            raise CorruptCheckpointError(f"{where}: manifest lists no files")
        present = {k: v for k, v in _files_of(folder).items() if k != MANIFEST}
        missing = sorted(set(expected) - set(present))
        extra = sorted(set(present) - set(expected))
        if missing:
            raise CorruptCheckpointError(f"{where}: missing files {missing}; re-register the checkpoint")
        if extra:
            raise CorruptCheckpointError(
                f"{where}: files not in the manifest {extra}; something wrote into a registered "
                "version: remove them or re-register"
            )
        for name, digest in expected.items():
            actual = sha256_file(present[name])
            if actual != digest:
                size = present[name].stat().st_size
                raise CorruptCheckpointError(
                    f"{where}: {name} ({size} bytes) has sha256 {actual[:12]}..., manifest says "
                    f"{digest[:12]}...: the file is truncated or corrupt; do not serve this version"
                )
        return manifest


def _write_text_durably(path: Path, text: str, tmp_dir: Path | None = None) -> None:
    """Write `text` next to `path` (or in `tmp_dir`, on the same file system), fsync it,
    then atomically replace `path`."""
    tmp = (tmp_dir or path.parent) / f".{path.name}.{uuid.uuid4().hex}.tmp"
    with tmp.open("w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_path(path.parent)
