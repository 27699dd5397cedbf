"""k copies of every known input file, each copy a distinct set of rows, for benchmarks.

    from bench.scaled_sources import scaled_data_root
    root = scaled_data_root(real_data_root, 4, Path("var/bench-data"))   # built once, reused

Copy 0 is the file as it is; copy c > 0 suffixes an identifying field ("r<c>") so its
rows are new rows, not duplicates, and the work of every job grows k-fold: the invoice
number of the orders, the user of Taobao clicks, the session of Diginetica views and
purchases, and the review and clothing ids of the reviews (offset, they are numbers).
Diginetica's item categories are a lookup and stay one copy.
"""

from __future__ import annotations

import csv
import gzip
import io
import shutil
from pathlib import Path
from typing import IO

from batch.sources import KNOWN_SOURCES, Source

_REVIEW_ID_STEP, _CLOTHING_ID_STEP = 1_000_000, 100_000


def _open(path: Path, mode: str) -> IO[str]:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, mode + "b", compresslevel=1), encoding="utf-8", newline="")
    return path.open(mode, encoding="utf-8", newline="")


def _copy_lines(source: Source, src: Path, dst: Path, scale: int) -> None:
    """Line-based files whose first field identifies the row (no quoted line breaks)."""
    with _open(src, "r") as handle:
        lines = handle.read().splitlines(keepends=True)
    header, body = (lines[:1], lines[1:]) if source.header else ([], lines)
    with _open(dst, "w") as out:
        out.writelines(header)
        out.writelines(body)
        for copy in range(1, scale):
            for line in body:
                first, sep, rest = line.partition(source.sep)
                out.write(f"{first}r{copy}{sep}{rest}" if sep else line)


def _copy_reviews(src: Path, dst: Path, scale: int) -> None:
    with _open(src, "r") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    with _open(dst, "w") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        for copy in range(scale):
            for row in body:
                row = list(row)
                for i, step in ((0, _REVIEW_ID_STEP), (1, _CLOTHING_ID_STEP)):
                    if copy and row[i].isdigit():
                        row[i] = str(int(row[i]) + copy * step)
                writer.writerow(row)


def scaled_data_root(data_root: Path, scale: int, cache: Path) -> Path:
    """A data root holding every known file at `scale` copies (the real root for 1)."""
    if scale == 1:
        return data_root
    root = cache / f"{scale}x"
    done = root / ".complete"
    if done.exists():
        return root
    for source in KNOWN_SOURCES:
        src, dst = data_root / source.relative_path, root / source.relative_path
        dst.parent.mkdir(parents=True, exist_ok=True)
        if source.name == "item_categories_diginetica":
            shutil.copyfile(src, dst)
        elif source.name == "reviews":
            _copy_reviews(src, dst, scale)
        else:
            _copy_lines(source, src, dst, scale)
    done.touch()
    return root
