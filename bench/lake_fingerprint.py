"""Fingerprint every Delta table of a lake, to prove two runs wrote the same data.

    python bench/lake_fingerprint.py LAKE [--out fp.json]      # print / save a fingerprint
    python bench/lake_fingerprint.py --compare a.json b.json    # exit 1 when they differ

Per table: the row count, an order-free hash of its keys (event ids, order line ids, ...),
one of its rows (every column but the ingest time), one per column and, for the
quarantine, the count of each (source table, reason). The keys' hash is what must match between two
implementations; a content difference is listed column by column.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import duckdb
from deltalake import DeltaTable

# The columns that identify a row, per table (layer/name); others: every column.
KEYS = {
    "silver/orders": ("order_line_id",),
    "silver/reviews": ("review_id",),
    "silver/clicks": ("event_id",),
    "silver/quarantine": ("source_table", "_batch_id", "_row_number", "reason"),
    "gold/item_features": ("stock_code",),
    "gold/user_features": ("customer_key",),
    "gold/click_sessions": ("event_id",),
    "gold/item_click_stats": ("item_id",),
    "gold/train_sentiment": ("review_id", "split"),
    "gold/train_propensity": ("event_id", "split", "label"),
}
BRONZE_KEYS = ("_batch_id", "_row_number")
VOLATILE = {"_ingested_at"}  # differs on every run by design


def _hash(con: duckdb.DuckDBPyConnection, columns: list[str]) -> str:
    """An order-free hash of the rows' values in `columns` (a sum of row hashes)."""
    row = "hash(" + ", ".join(f'"{c}"' for c in columns) + ")"
    return str(con.execute(f"select coalesce(sum({row}::hugeint), 0) from t").fetchall()[0][0])


def fingerprint_table(path: Path, name: str, same_files: bool = False) -> dict[str, Any]:
    table = DeltaTable(str(path))
    data = table.to_pyarrow_table()
    con = duckdb.connect()
    con.register("raw", data)
    replace = []
    if same_files and "_batch_id" in data.column_names and "_source" in data.column_names:
        # The batch id is the file's sha256: files of equal rows with other bytes (a gzip
        # header's time) give other ids. Name the file by its source instead.
        replace.append("_source as _batch_id")
        if "order_line_id" in data.column_names:
            replace.append("split_part(order_line_id, '-', 2) || '@' || _source as order_line_id")
    con.execute(f"create view t as select * {'replace (' + ', '.join(replace) + ')' if replace else ''} from raw")
    columns = [c for c in data.column_names if c not in VOLATILE]
    keys = list(KEYS.get(name, BRONZE_KEYS if name.startswith("bronze/") else columns))
    out: dict[str, Any] = {
        "rows": data.num_rows,
        "version": table.version(),
        "files": len(table.file_uris()),
        "keys": keys,
        "key_hash": _hash(con, keys),
        "content_hash": _hash(con, columns),
        "column_hashes": {c: _hash(con, [*keys, c]) for c in columns if c not in keys},
    }
    if name.endswith("/quarantine"):
        reasons = con.execute("select source_table, reason, count(*) from t group by all order by all").fetchall()
        out["reasons"] = {f"{s}:{r}": n for s, r, n in reasons}
    return out


def fingerprint(lake: Path, same_files: bool = False) -> dict[str, Any]:
    tables = sorted(p.parent for p in lake.glob("*/*/_delta_log"))
    return {f"{t.parent.name}/{t.name}": fingerprint_table(t, f"{t.parent.name}/{t.name}", same_files) for t in tables}


def compare(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """What differs between two fingerprints, in words (empty when rows and keys agree)."""
    problems = [f"{name}: only in one" for name in sorted(set(a) ^ set(b))]
    for name in sorted(set(a) & set(b)):
        x, y = a[name], b[name]
        for field in ("rows", "key_hash", "reasons"):
            if x.get(field) != y.get(field):
                problems.append(f"{name}: {field} {x.get(field)} != {y.get(field)}")
        if x["content_hash"] != y["content_hash"] and x["keys"] == y["keys"]:
            differ = [c for c in x["column_hashes"] if x["column_hashes"][c] != y["column_hashes"].get(c)]
            problems.append(f"{name}: content differs in {differ}")
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("lake", type=Path, nargs="?")
    p.add_argument("--out", type=Path)
    p.add_argument("--compare", type=Path, nargs=2)
    p.add_argument(
        "--by-source",
        action="store_true",
        help="name input files by source, not by content hash (runs over equal rows in other gzip bytes)",
    )
    args = p.parse_args(argv)
    if args.compare:
        a, b = (json.loads(f.read_text()) for f in args.compare)
        problems = compare(a, b)
        for line in problems:
            print(line)
        print(f"{len(a)} tables; {'EQUAL' if not problems else f'{len(problems)} differences'}")
        print("rows:", {k: v["rows"] for k, v in a.items()})
        return 1 if problems else 0
    result = fingerprint(args.lake, args.by_source)
    text = json.dumps(result, indent=1, sort_keys=True)
    if args.out:
        args.out.write_text(text)
    print(
        json.dumps(
            {k: {"rows": v["rows"], "files": v["files"], "key_hash": v["key_hash"][:12]} for k, v in result.items()}
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
