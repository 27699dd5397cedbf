"""batch.ingest groups the files by bronze table: tables are read side by side, the
files of one table commit one after another in the catalogue's order."""

from __future__ import annotations

from pathlib import Path

from batch.ingest import by_table
from batch.sources import KNOWN_SOURCES


def test_files_are_grouped_by_table_in_order():
    pairs = [(s, Path(s.relative_path)) for s in KNOWN_SOURCES]
    groups = by_table(pairs)
    tables = [group[0][0].bronze_table for group in groups]
    assert tables == list(dict.fromkeys(s.bronze_table for s in KNOWN_SOURCES))  # first appearance
    assert [pair for group in groups for pair in group] == sorted(pairs, key=lambda p: tables.index(p[0].bronze_table))
    assert [[s.name for s, _ in g] for g in groups if g[0][0].bronze_table == "orders"] == [
        ["orders_2010_2011", "orders_2009_2010"]
    ]
    assert len(groups) == len({s.bronze_table for s in KNOWN_SOURCES})
