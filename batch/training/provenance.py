"""What a registered version needs to be trained again: the code, the libraries, the
machine's threads and the settings it ran with (the seed and the Delta versions read are
in the manifest's `training` and `training_data`).

    manifest.with_fields(reproduce=provenance(settings))
"""

from __future__ import annotations

import platform
from importlib import metadata
from typing import Any

from shared.code_version import code_version
from shared.settings import Settings

# The libraries whose versions change what training computes.
LIBRARIES = ("torch", "numpy", "transformers", "peft", "scikit-learn", "pyarrow", "deltalake", "pyspark")


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
