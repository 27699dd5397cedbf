"""Where raw identifiers could hide in a lake: every file, parquet pages read back too."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path


def file_text(path: Path) -> bytes:
    """A file's bytes as stored (parquet footers' statistics and the _delta_log's JSON are
    plain text) and, for a parquet file, its values read back: its pages may be compressed."""
    import pyarrow.parquet as pq

    blob = path.read_bytes()
    if path.suffix == ".parquet":
        blob += json.dumps(pq.read_table(path).to_pylist(), default=str).encode()
    return blob


def identifiers_in_files(files: Iterable[Path], needles: Iterable[bytes]) -> list[tuple[bytes, Path]]:
    """(needle, file) for every needle found in a file's text (`file_text`), case-insensitively."""
    wanted = sorted({n.lower() for n in needles})
    return [(needle, f) for f in files for text in [file_text(f).lower()] for needle in wanted if needle in text]
