"""Which code is running: the git commit of the checkout and whether it had uncommitted
changes. Training records it in the manifest (batch/training/provenance.py) and every
tracked run in its tags (shared/tracking.py).

    code_version()   # {"commit": "26c138a...", "uncommitted_changes": False}
"""

from __future__ import annotations

import subprocess
from functools import lru_cache
from typing import Any

from shared.settings import REPO_ROOT


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


@lru_cache(maxsize=1)
def process_code_version() -> dict[str, Any]:
    """`code_version()` once per process: what a long-running process started with."""
    return code_version()
