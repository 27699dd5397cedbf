"""The one-off migration rewrites the stream's tables written with raw identifiers and
leaves no copy behind: no older data file, no log entry with their statistics (real
Delta tables, delta-rs, in a temporary folder)."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable

from jobs.privacy import (
    legacy_id_map,
    migrate_stream_clicks,
    migrate_stream_quarantine,
    purge_history,
)
from shared.click_sources import TAOBAO_RAW
from shared.delta import AppTxn, read_arrow, write_arrow
from shared.pseudonymize import pseudonymize
from shared.redaction import Redactor, keyed_hash
from shared.schemas import click_event_id
from tests.legacy_rows import QUARANTINE_SCHEMA, STREAM_SCHEMA, Position, dlq_row, legacy_scored_row

KEY = b"migration-key"
NOW = datetime(2024, 1, 1, tzinfo=timezone.utc)
EMAIL, NAME, SESSION = "alice.legacy@example.com", "Zelda Quixotic", "Wilhelmina Session"
BRONZE_ROWS = [(EMAIL, "1715", "1464116", "pv", "1511658100"), ("100", "1716", "1464116", "pv", "1511658160")]


def _legacy_scored(fields: tuple[str, ...], session: str | None, offset: int) -> dict:
    return legacy_scored_row(fields, session, offset, key=KEY, folded_at=NOW)


def _legacy_dead_letter(raw: bytes, reason: str, code: str, offset: int, cut: int | None = None) -> dict:
    kept = raw if cut is None else raw[:cut]
    entry = {  # the entry as workers wrote it before redaction
        "raw": kept.decode("latin-1"),
        "raw_encoding": "latin-1",
        "raw_truncated": cut is not None,
        "reasons": [reason],
        "step": "parse_validate",
        "reason_code": code,
        "source": {"topic": "clicks", "partition": 0, "offset": offset},
        "failed_at": "2017-11-26T01:01:40.000Z",
        "raw_size": len(raw),
        "raw_sha256": hashlib.sha256(raw).hexdigest(),
    }
    return dlq_row(json.dumps(entry).encode(), Position("clicks.dlq", 0, offset), batch_id="b", folded_at=NOW)


def _files_text(root: Path) -> bytes:
    out = b""
    for f in root.rglob("*"):
        if f.is_file():
            out += f.read_bytes()
            if f.suffix == ".parquet":
                out += json.dumps(pq.read_table(f).to_pylist(), default=str).encode()
    return out


def test_migration_rewrites_the_stream_tables_and_removes_every_older_copy(tmp_path: Path):
    lake = tmp_path / "lake"
    bronze = pa.table({name: [r[i] for r in BRONZE_ROWS] for i, name in enumerate(TAOBAO_RAW)})
    write_arrow(bronze, lake / "bronze" / "clicks_taobao", mode="overwrite")

    stream = lake / "silver" / "clicks_stream"
    rows = [_legacy_scored(BRONZE_ROWS[0], SESSION, 1), _legacy_scored(BRONZE_ROWS[1], None, 2)]
    write_arrow(pa.Table.from_pylist(rows[:1], schema=STREAM_SCHEMA), stream, mode="append", txn=AppTxn("fold:0", 2))
    write_arrow(pa.Table.from_pylist(rows[1:], schema=STREAM_SCHEMA), stream, mode="append", txn=AppTxn("fold:0", 3))

    quarantine = lake / "silver" / "quarantine_stream"
    bad = json.dumps({"user_id": EMAIL, "item_id": "1", "event_type": "teleport", "ts": 1511658100, NAME: 1}).encode()
    dead = [
        _legacy_dead_letter(
            bad, f"event_type: 'teleport' is not one of view; unknown fields: {NAME}", "unknown_event_type", 5
        ),
        _legacy_dead_letter(bad, "cut", "not_json", 6, cut=30),
        _legacy_dead_letter(f"{EMAIL},{NAME},not json".encode(), "not JSON", "not_json", 7),
    ]
    write_arrow(pa.Table.from_pylist(dead, schema=QUARANTINE_SCHEMA), quarantine, mode="append")
    assert EMAIL.encode() in _files_text(lake / "silver")  # the test has teeth

    wanted = set(read_arrow(stream)["event_id"].to_pylist())
    id_map = legacy_id_map(lake / "bronze", wanted, key=KEY)
    assert len(id_map) == 2
    migrated, changed = migrate_stream_clicks(read_arrow(stream), id_map, key=KEY)
    assert changed == 2
    write_arrow(migrated, stream, mode="overwrite")
    write_arrow(migrate_stream_quarantine(read_arrow(quarantine), Redactor(KEY)), quarantine, mode="overwrite")
    for path in (stream, quarantine):
        purge_history(path)

    text = _files_text(lake / "silver")
    for needle in (EMAIL, NAME, SESSION, "alice", "Zelda", "is not one of"):
        assert needle.encode() not in text, needle
    for row in rows:  # nor any unkeyed id
        assert row["event_id"].encode() not in text

    clicks = {r["item_id"]: r for r in read_arrow(stream).to_pylist()}
    assert clicks["1715"]["event_id"] == click_event_id("taobao", BRONZE_ROWS[0], key=KEY)
    assert clicks["1715"]["session_id"] == pseudonymize(SESSION, "session", key=KEY)
    assert clicks["1716"]["event_id"] == click_event_id("taobao", BRONZE_ROWS[1], key=KEY)
    assert DeltaTable(str(stream)).transaction_version("fold:0") == 3  # the fold resumes where it was
    log = stream / "_delta_log"
    checkpoint = min(int(p.name.split(".")[0]) for p in log.glob("*.checkpoint.parquet"))
    assert all(int(p.stem) >= checkpoint for p in log.glob("*.json"))  # no log before it

    letters = read_arrow(quarantine).to_pylist()
    first = json.loads(letters[0]["record"])
    assert first["form"] == "fields" and first["record"]["user_id"] == pseudonymize(EMAIL, "user", key=KEY)
    assert first["unknown_fields"] == 1 and letters[0]["raw_sha256"] is None
    assert letters[0]["raw_hmac_sha256"] == keyed_hash(bad, key=KEY) and letters[1]["raw_hmac_sha256"] is None
    assert json.loads(letters[1]["record"])["form"] == "summary"
    assert json.loads(letters[2]["record"])["form"] == "summary"
    assert "event_type: not one of" in letters[0]["detail"] and "unknown fields: 1" in letters[0]["detail"]

    # Again: already migrated rows come back unchanged.
    again, changed = migrate_stream_clicks(read_arrow(stream), {}, key=KEY)
    assert changed == 0
    assert migrate_stream_quarantine(read_arrow(quarantine), Redactor(KEY)).to_pylist() == letters
