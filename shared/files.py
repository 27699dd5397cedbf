"""File helpers shared by every layer: the one sha256 of a file's bytes.

from shared.files import sha256_file
sha256_file(Path("data/orders.csv.gz"))   # -> '3f1c...' (64 hex characters)
"""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in `chunk`-byte blocks (files may exceed memory)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
