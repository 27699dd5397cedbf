"""What a registered version needs to be trained again: the code, the libraries, the
machine's threads and the settings it ran with (the seed and the Delta versions read are
in the manifest's `training` and `training_data`).

    manifest.with_fields(reproduce=provenance(settings))
"""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from typing import Any

from shared.settings import REPO_ROOT, Settings

# The libraries whose versions change what training computes.
LIBRARIES = ("torch", "numpy", "transformers", "peft", "scikit-learn", "pyarrow", "deltalake", "pyspark")


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None  # not a git checkout (an installed package): the versions below still say much
    return done.stdout.strip()


def code_version() -> dict[str, Any]:
    """The commit of the code and whether the tree had uncommitted changes (None: unknown)."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "uncommitted_changes": None if status is None else bool(status)}


def library_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def provenance(settings: Settings) -> dict[str, Any]:
    """The manifest's `reproduce` field; secrets in the settings are masked."""
    import torch

    return {
        "code": code_version(),
        "libraries": library_versions(),
        "torch_threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "settings": settings.model_dump(mode="json"),  # SecretStr values print as '**********'
    }
