"""One-off migration of tables written before raw identifiers stopped at the input.

    shopflow privacy migrate          # with the worker and the fold stopped
    python -m jobs.privacy migrate

Tables written before event ids were keyed, session ids pseudonymized and rejected
records redacted still hold what those changes keep out; so do their older versions and
the column statistics in their `_delta_log`. This command, run once after upgrading:

1. rebuilds silver and its quarantine from bronze (`batch.clean --force`): keyed event
   ids, pseudonymized session ids, redacted quarantine records and details;
2. rewrites `silver/clicks_stream`: each event id the replay producer derived the old
   way (unkeyed sha1 of a bronze row) becomes that row's keyed id, so batch and stream
   still deduplicate each other, and a session id not yet a pseudonym is pseudonymized;
3. rewrites `silver/quarantine_stream`: each dead letter's record takes its safe form
   (`shared.redaction`), its reasons are re-derived, its unkeyed hash dropped;
4. rebuilds gold (`batch.features --force`);
5. removes every earlier version of every silver and gold table: the data files
   (vacuum with no retention) and the log before a fresh checkpoint, whose statistics
   describe only the rewritten rows. Bronze keeps raw identifiers by design.

Tables under `scored/` (`shopflow score`) are not rewritten: score again after it. The
topics keep what they hold until their retention ends; dead letters still there are
redacted when folded.

Run it with the worker and the fold stopped (the vacuum keeps no file a concurrent
writer may still need). Running it again is harmless: rewritten rows are recognized.
"""

from __future__ import annotations

import hashlib
import logging
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from deltalake import DeltaTable

from shared.click_sources import (
    DIGINETICA_PURCHASES_RAW,
    DIGINETICA_PURCHASES_SOURCE,
    DIGINETICA_VIEWS_RAW,
    DIGINETICA_VIEWS_SOURCE,
    TAOBAO_RAW,
    TAOBAO_SOURCE,
)
from shared.delta import read_arrow, table_exists, write_arrow
from shared.options import option, start_job
from shared.pseudonymize import Pseudonymizer, is_pseudonym
from shared.redaction import Redactor
from shared.schemas import PERSONAL_FIELDS, click_event_id
from shared.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger("jobs.privacy")
# bronze table -> (event source, its raw fields in id order)
CLICK_BRONZE: dict[str, tuple[str, tuple[str, ...]]] = {
    "clicks_taobao": (TAOBAO_SOURCE, TAOBAO_RAW),
    "views_diginetica": (DIGINETICA_VIEWS_SOURCE, DIGINETICA_VIEWS_RAW),
    "purchases_diginetica": (DIGINETICA_PURCHASES_SOURCE, DIGINETICA_PURCHASES_RAW),
}
# What `Redactor.click_value_text` writes starts so (its keys are sorted).
_REDACTED_PREFIX = '{"form":'
_DEFAULT_LOG_RETENTION = "interval 30 days"


@dataclass(frozen=True)
class PrivacyOptions:
    action: str = option(
        help="migrate: rewrite tables written with raw identifiers", choices=("migrate",), positional=True
    )


def legacy_click_event_id(source: str, raw_fields: Iterable[str]) -> str:
    """The event id as derived before it was keyed: sha1 of "<source>:" + raw fields."""
    return hashlib.sha1((f"{source}:" + ",".join(raw_fields)).encode("utf-8")).hexdigest()[:24]


def legacy_id_map(lake_bronze: Path, wanted: set[str], *, key: bytes) -> dict[str, str]:
    """Old (unkeyed) event id -> keyed id, for the ids in `wanted` that a bronze click
    row derives (absent raw fields count as '', as the batch clean job reads them)."""
    out: dict[str, str] = {}
    for table, (source, raw) in CLICK_BRONZE.items():
        path = lake_bronze / table
        if not wanted or not table_exists(path):
            continue
        columns = read_arrow(path, columns=list(raw)).to_pydict()
        for fields in zip(*(columns[name] for name in raw)):
            values = ["" if v is None else str(v) for v in fields]
            old = legacy_click_event_id(source, values)
            if old in wanted:
                out[old] = click_event_id(source, values, key=key)
    return out


def migrate_stream_clicks(rows: pa.Table, id_map: Mapping[str, str], *, key: bytes) -> tuple[pa.Table, int]:
    """`silver/clicks_stream` rows with legacy event ids replaced and session ids that
    are not pseudonyms yet pseudonymized; (rows, how many rows changed)."""
    session = Pseudonymizer(PERSONAL_FIELDS["session_id"], key=key)
    data = rows.to_pydict()
    changed = 0
    for i, (event_id, session_id) in enumerate(zip(data["event_id"], data["session_id"])):
        new_id = id_map.get(event_id, event_id)
        new_session = session_id
        if session_id is not None and not is_pseudonym(session_id):
            new_session = session(session_id)
        if (new_id, new_session) != (event_id, session_id):
            data["event_id"][i], data["session_id"][i] = new_id, new_session
            changed += 1
    return pa.Table.from_pydict(data, schema=rows.schema), changed


def redact_stream_quarantine_row(row: Mapping[str, Any], redactor: Redactor) -> dict[str, Any]:
    """One `silver/quarantine_stream` row as written before redaction -> its safe form:
    `record` (the dead letter's raw bytes as latin-1 text) redacted, reasons re-derived
    into `detail`, the unkeyed `raw_sha256` dropped (for the keyed `raw_hmac_sha256` of
    the bytes, when the table has that column and they were not cut). A redacted row
    comes back as is."""
    out = dict(row)
    record = row.get("record")
    if record is None or str(record).startswith(_REDACTED_PREFIX):
        out["raw_sha256"] = None
        return out
    try:
        raw = str(record).encode("latin-1")
        truncated = row.get("raw_truncated") is True
    except UnicodeEncodeError:  # not what the fold wrote: summarize it, parse nothing
        raw, truncated = str(record).encode("utf-8", errors="surrogatepass"), True
    out["record"] = redactor.click_value_text(raw, truncated=truncated)
    step, code = str(row.get("step") or ""), row.get("reason_code")
    out["detail"] = "; ".join(redactor.reasons(raw, step, None if code is None else str(code), truncated=truncated))
    out["raw_sha256"] = None
    if "raw_hmac_sha256" in row and out.get("raw_hmac_sha256") is None and not truncated:
        out["raw_hmac_sha256"] = redactor.keyed_hash(raw)  # the keyed hash, where the table has its column
    return out


def migrate_stream_quarantine(rows: pa.Table, redactor: Redactor) -> pa.Table:
    return pa.Table.from_pylist(
        [redact_stream_quarantine_row(r, redactor) for r in rows.to_pylist()], schema=rows.schema
    )


def purge_history(path: Path) -> None:
    """Keep only the current version of a Delta table: data files no longer referenced
    are deleted, and the log before a fresh checkpoint (old add actions carry column
    statistics, min/max values of the rows they describe). App transactions survive in
    the checkpoint, so exactly-once writers resume where they were."""
    table = DeltaTable(str(path))
    table.vacuum(retention_hours=0, dry_run=False, enforce_retention_duration=False, full=True)
    retention = table.metadata().configuration.get("delta.logRetentionDuration", _DEFAULT_LOG_RETENTION)
    table.alter.set_table_properties({"delta.logRetentionDuration": "interval 0 seconds"})
    table = DeltaTable(str(path))
    table.create_checkpoint()
    table.cleanup_metadata()
    table.alter.set_table_properties({"delta.logRetentionDuration": retention})


def delta_tables(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.glob("*/_delta_log")) if root.is_dir() else []


def migrate(settings: Settings, spark: SparkSession | None = None) -> dict[str, int]:
    """The whole migration (see the module's docstring); counts of rows rewritten."""
    from batch import clean, features

    key = settings.pseudonymization_key.get_secret_value().encode("utf-8")
    counts: dict[str, int] = {}
    clean.run(settings, clean.CleanOptions(force=True), spark=spark)
    stream = settings.lake.table("silver", settings.fold.stream_table)
    if table_exists(stream):
        rows = read_arrow(stream)
        wanted = set(rows["event_id"].to_pylist()) - {None}
        id_map = legacy_id_map(settings.lake.root / "bronze", wanted, key=key)
        migrated, counts["clicks_stream"] = migrate_stream_clicks(rows, id_map, key=key)
        write_arrow(migrated, stream, mode="overwrite", info={"job": "jobs.privacy"})
    quarantine = settings.lake.table("silver", settings.fold.quarantine_table)
    if table_exists(quarantine):
        rows = read_arrow(quarantine)
        write_arrow(
            migrate_stream_quarantine(rows, Redactor(key)), quarantine, mode="overwrite", info={"job": "jobs.privacy"}
        )
        counts["quarantine_stream"] = rows.num_rows
    features.run(settings, features.FeaturesOptions(force=True), spark=spark)
    for layer in ("silver", "gold"):
        for path in delta_tables(settings.lake.root / layer):
            purge_history(path)
            log.info("%s/%s: earlier versions removed", layer, path.name)
    return counts


def main(argv: list[str] | None = None) -> int:
    options, settings = start_job(PrivacyOptions, argv, prog="shopflow privacy", doc=__doc__)
    counts = migrate(settings)
    print(f"privacy migrate: silver and gold rewritten, earlier versions removed ({counts})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
