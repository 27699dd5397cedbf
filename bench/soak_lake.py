"""Soak bench, the lake's part: 500 small folds into real Delta tables, then compaction;
a fold's and a features run's seconds before and after it.

usage: python -m bench.soak_lake [--folds 500] [--events 200] [--no-features]

A 15-minute loop folds a few hundred events at a time, so every fold adds a small file
to each folded table (~100 a day). This bench drives the fold's commit path
(`jobs.fold_delta.FoldCommitter.commit`, the code `shopflow fold` runs per batch: both
MERGEs, the app transactions with the offsets and topic ids, the silver/clicks lookup)
with batches shaped like the broker's: `--events` scored events per fold over 4
partitions with 10% at-least-once duplicates and 2 dead letters, event times 15 minutes
apart from one fold to the next. The broker is left out (its poll is not what grows with
the table's history); the records and the consumer's bookkeeping are plain stand-ins.

Then `jobs.maintain`'s table maintenance (`shared.delta_maintenance.maintain_table`:
compact, vacuum, log retention) runs on the folded tables, and a few more folds are timed.
With features (default), `batch.features` rebuilds the click tables (click_sessions,
item_click_stats: they read silver/clicks and the whole folded table) before and after
the compaction (a warm-up run first, not timed: Spark's start).

Prints ONE JSON line: fold seconds (the first fold, medians of the first and last 10,
per 50 folds); `fold_after_n` and `fold_after_compaction`: `--after` folds into the soaked
tables taken in turns with folds into fresh tables (a first fold's conditions), so the
machine's load weighs on both alike, and `ratio` = the medians' ratio (goal after 500
folds: at most 1.5); the folded table's files before and after compaction, the
compaction's seconds and the features seconds before and after. `--maintain-every 24`
compacts as the loop's maintain step would (every 6 h of 15-minute folds).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, NamedTuple

import pyarrow as pa

T0 = datetime(2017, 11, 25, tzinfo=timezone.utc)
PARTITIONS = 4
FOLD_EVERY = timedelta(minutes=15)


class Record(NamedTuple):
    """What the commit path reads of a polled Kafka record."""

    offset: int
    value: bytes


class TopicPartition(NamedTuple):
    topic: str
    partition: int


class Position:
    """The consumer's bookkeeping the commit path reads and updates (`jobs.fold_kafka.FoldConsumer`)."""

    def __init__(self, topic_ids: dict[str, int]) -> None:
        self.expected: dict[Any, int | None] = {}
        self.recreated: set[Any] = set()
        self.identities: dict[str, int | None] = dict(topic_ids)

    def confirmed_ends(self, tps: list[Any]) -> dict[Any, int]:
        return {tp: self.expected.get(tp) or 0 for tp in tps}

    def reread_from(self, tp: Any, stored: int) -> None:
        self.expected[tp] = stored


def _event(n: int, fold: int, events: int) -> dict[str, Any]:
    kind = "view" if n % 3 else "add_to_cart"
    ts = T0 + fold * FOLD_EVERY + timedelta(seconds=n % events * (FOLD_EVERY.total_seconds() / events))
    return {
        "event_id": hashlib.sha1(f"soak-lake:{n}".encode()).hexdigest()[:24],
        "user_id": hashlib.sha256(f"u{n % 5000}".encode()).hexdigest()[:32],
        "session_id": None,
        "item_id": f"i{n % 3000}",
        "event_type": kind,
        "ts": ts,
        "query": None,
        "category_id": "c",
        "model_name": "propensity",
        "model_version": "1",
        "score": 0.2 if kind == "view" else None,
        "received_at": ts + timedelta(milliseconds=3),
        "scored_at": ts + timedelta(milliseconds=7),
    }


def _dead_letter(n: int) -> bytes:
    return json.dumps(
        {
            "raw": f"bad-{n}",
            "raw_encoding": "latin-1",
            "step": "parse_validate",
            "reasons": ["not JSON"],
            "reason_code": "not_json",
            "source": {"topic": "clicks", "partition": n % PARTITIONS, "offset": n},
            "failed_at": "2017-11-25T10:00:00.000Z",
        }
    ).encode()


class Feed:
    """Batches of records per topic-partition, offsets continuing from fold to fold."""

    def __init__(self, settings: Any, events: int) -> None:
        self.settings = settings
        self.events = events
        self.next_offset: dict[TopicPartition, int] = {}
        self.sent = 0

    def _append(self, pending: dict[Any, list[Any]], tp: TopicPartition, value: bytes) -> None:
        offset = self.next_offset.get(tp, 0)
        self.next_offset[tp] = offset + 1
        pending.setdefault(tp, []).append(Record(offset, value))

    def batch(self, fold: int) -> dict[Any, list[Any]]:
        from shared.schemas import SCORED_EVENT, to_wire

        k = self.settings.kafka
        pending: dict[Any, list[Any]] = {}
        for _ in range(self.events):
            n = self.sent
            self.sent += 1
            event = _event(n, fold, self.events)
            value = to_wire({name: event[name] for name in SCORED_EVENT.names})
            tp = TopicPartition(k.scored_topic, n % PARTITIONS)
            self._append(pending, tp, value)
            if n % 10 == 0:  # the worker's at-least-once duplicates
                self._append(pending, tp, value)
        for i in range(2):
            self._append(pending, TopicPartition(k.dlq_topic, (fold + i) % PARTITIONS), _dead_letter(fold * 2 + i))
        return pending


def _silver_clicks(settings: Any, rows: int) -> None:
    """A batch silver/clicks table (older events) for the fold's lookup and the features' union."""
    from shared.delta import write_arrow
    from shared.schemas import CLICK_EVENT

    schema = pa.schema(
        [*CLICK_EVENT.arrow_schema(), pa.field("source", pa.string()), pa.field("_batch_id", pa.string())]
    )
    batch = []
    for i in range(rows):
        e = _event(-1 - i, -1, rows)
        batch.append({**{k: e[k] for k in CLICK_EVENT.names}, "source": "taobao", "_batch_id": "b"})
    write_arrow(pa.Table.from_pylist(batch, schema=schema), settings.lake.table("silver", "clicks"), mode="overwrite")


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 4)


def _features_seconds(settings: Any) -> float:
    from batch import features

    started = time.monotonic()
    features.run(settings, features.FeaturesOptions(tables=("click_sessions", "item_click_stats"), force=True))
    return round(time.monotonic() - started, 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak_lake", description=__doc__.split("\n")[0])
    parser.add_argument("--folds", type=int, default=500)
    parser.add_argument("--events", type=int, default=200, help="scored events per fold")
    parser.add_argument(
        "--after", type=int, default=15, help="folds timed (against fresh tables) before and after compaction"
    )
    parser.add_argument(
        "--maintain-every", type=int, default=0, help="compact every N folds as the loop would (0: never)"
    )
    parser.add_argument("--no-features", action="store_true", help="time the folds only (no Spark)")
    args = parser.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING)
    root = Path(tempfile.mkdtemp(prefix="shopflow-soak-lake-"))
    try:
        print(json.dumps(_run(root, args)))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


class Lake:
    """Folded tables of their own, the fold's committer and a feed of batches for them."""

    def __init__(self, root: Path, events: int) -> None:
        from jobs.fold_delta import FoldCommitter, FoldResult
        from shared.contract.folded import QUARANTINE_SCHEMA, STREAM_SCHEMA, quarantine_table_path, stream_table_path
        from shared.delta_merge import ensure_table
        from shared.settings import Settings

        self.settings = Settings(lake={"root": root})
        self.tables = (stream_table_path(self.settings), quarantine_table_path(self.settings))
        ensure_table(self.tables[0], STREAM_SCHEMA)
        ensure_table(self.tables[1], QUARANTINE_SCHEMA)
        _silver_clicks(self.settings, 20_000)
        k = self.settings.kafka
        self.position = Position({k.scored_topic: uuid.uuid4().int >> 65, k.dlq_topic: uuid.uuid4().int >> 65})
        self.committer = FoldCommitter(self.settings, FoldResult())
        self.feed = Feed(self.settings, events)
        self.folds = 0

    def fold(self) -> float:
        """One fold's commit of the next batch; its seconds."""
        pending = self.feed.batch(self.folds)
        self.folds += 1
        started = time.perf_counter()
        self.committer.commit(pending, self.position)  # type: ignore[arg-type]
        return time.perf_counter() - started

    def files(self) -> int:
        from shared.delta import open_table

        return len(open_table(self.tables[0]).file_uris())

    def compact(self) -> list[Any]:
        from shared.delta_maintenance import maintain_table

        m = self.settings.maintenance
        return [
            maintain_table(
                path,
                protect=set(),
                target_file_mb=m.target_file_mb,
                deleted_file_retention_hours=0,  # nothing reads the old versions here
                log_retention_hours=m.log_retention_hours,
            )
            for path in self.tables
        ]


def _against_fresh(lake: Lake, fresh: Lake, n: int) -> dict[str, float]:
    """Folds into `lake` and into fresh tables, taken in turns so the machine's load
    (other processes) weighs on both alike; medians and their ratio."""
    mine, theirs = [], []
    for _ in range(n):
        mine.append(lake.fold())
        theirs.append(fresh.fold())
    return {
        "median": _median(mine),
        "fresh_median": _median(theirs),
        "ratio": round(_median(mine) / _median(theirs), 2),
    }


def _run(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    os.environ.update(
        {
            "SHOPFLOW_METRICS_DIR": str(root / "metrics"),
            "SHOPFLOW_STREAM__RUN_DIR": str(root / "run"),
            "SHOPFLOW_SPARK__SHUFFLE_PARTITIONS": "4",
        }
    )
    lake = Lake(root / "lake", args.events)
    out: dict[str, Any] = {
        "bench": "soak.lake",
        "folds": args.folds,
        "events_per_fold": args.events,
        "maintain_every": args.maintain_every,
    }
    if not args.no_features:
        _features_seconds(lake.settings)  # warm-up: Spark's start and first plans, not timed
    seconds, maintained = [], 0
    for n in range(args.folds):
        seconds.append(lake.fold())
        if args.maintain_every and (n + 1) % args.maintain_every == 0:
            lake.compact()  # as the loop's maintain step would (not timed)
            maintained += 1
    out["maintenance_runs_during"] = maintained
    out["fold_seconds"] = {
        "first": round(seconds[0], 4),
        "first10_median": _median(seconds[:10]),
        "last10_median": _median(seconds[-10:]),
        "per_50_median": [_median(seconds[i : i + 50]) for i in range(0, len(seconds), 50)],
    }
    fresh = Lake(root / "fresh", args.events)
    fresh.fold()  # its first commit opens the tables' caches
    # A fold after N folds against a fold into fresh tables (the first fold's conditions), in turns.
    out["fold_after_n"] = _against_fresh(lake, fresh, args.after)
    out["stream_table_files_before"] = lake.files()
    if not args.no_features:
        out["features_seconds_before"] = _features_seconds(lake.settings)

    started = time.monotonic()
    reports = lake.compact()
    out["compaction_seconds"] = round(time.monotonic() - started, 2)
    out["stream_table_files_after"] = reports[0].files_after
    out["files_vacuumed"] = sum(r.files_vacuumed for r in reports)
    out["fold_after_compaction"] = _against_fresh(lake, fresh, args.after)
    if not args.no_features:
        out["features_seconds_after"] = _features_seconds(lake.settings)
    out["rows_folded"] = lake.committer.result.rows_folded
    return out


if __name__ == "__main__":
    raise SystemExit(main())
