"""Closed-loop benchmark: one iteration (fold + features + retrain + evaluate) for N new events
over 1x and 4x the history; the fold's time must not grow with the history.

usage: python -m bench.loop [--new-events 10000] [--history 20000] [--scales 1,4] [--fold-only]

For each scale s it starts from a fresh lake whose `silver/clicks_stream` already holds
s x history folded rows (in fold-sized files, earlier event times) and whose
`silver/clicks` holds as many batch rows, produces `new-events` scored events (with 10%
at-least-once duplicates) to fresh topics of its own embedded broker, runs `jobs.fold`
in this process and times it. Prints ONE JSON line: per scale the history rows, the
fold's seconds, rows folded and the Delta files its MERGEs scanned vs skipped, and
`ratio` = seconds at the largest scale / seconds at the smallest (flat: about 1).
Without --fold-only, each scale first trains a propensity champion on its history (not
timed), then times the whole loop iteration: fold, features (the click tables and the
training set, rebuilt from history + stream), and retrain split into fit, evaluate
(challenger and champion on the same slice), compare (the paired bootstrap) and register.
Features and retrain read the whole history by design, so they grow with it; the fold
must not.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa

from bench.local import free_port

T0 = datetime(2017, 11, 1, tzinfo=timezone.utc)


def _user(n: int) -> str:
    """A pseudonym-shaped user id (hex, like silver's), so the held-out user bucket is real."""
    return hashlib.sha256(f"bench-user:{n}".encode()).hexdigest()[:32]


def _event(i: int) -> dict[str, Any]:
    kind = "view" if i % 3 else "add_to_cart"
    return {
        "event_id": hashlib.sha1(f"bench:{i}".encode()).hexdigest()[:24],
        "user_id": _user(i % 997),
        "session_id": None,
        "item_id": f"i{i % 5000}",
        "event_type": kind,
        "ts": T0 + timedelta(milliseconds=200 * i),
        "query": None,
        "category_id": "c",
        "model_name": "propensity",
        "model_version": "1",
        "score": 0.1 if kind == "view" else None,
        "received_at": T0 + timedelta(milliseconds=200 * i + 3),
        "scored_at": T0 + timedelta(milliseconds=200 * i + 7),
    }


def _history(settings: Any, rows: int, file_rows: int) -> None:
    """Folded history and batch history, older than the new events."""
    from shared.contract.folded import STREAM_SCHEMA, stream_table_path
    from shared.delta import write_arrow
    from shared.schemas import CLICK_EVENT

    batch_schema = pa.schema(
        [*CLICK_EVENT.arrow_schema(), pa.field("source", pa.string()), pa.field("_batch_id", pa.string())]
    )
    stream_path = stream_table_path(settings)
    for start in range(0, rows, file_rows):
        events = [_event(i) for i in range(start, min(rows, start + file_rows))]
        folded = [
            {
                **e,
                "source": "stream",
                "_batch_id": "hist",
                "_topic": "old",
                "_partition": 0,
                "_offset": i,
                "_folded_at": T0,
            }
            for i, e in enumerate(events, start)
        ]
        write_arrow(pa.Table.from_pylist(folded, schema=STREAM_SCHEMA), stream_path, mode="append")
    batch = [{**_event(-1 - i), "source": "taobao", "_batch_id": "b"} for i in range(rows)]
    write_arrow(
        pa.Table.from_pylist(batch, schema=batch_schema), settings.lake.table("silver", "clicks"), mode="overwrite"
    )


def _produce(settings: Any, first: int, count: int) -> None:
    from kafka import KafkaProducer

    from shared.schemas import SCORED_EVENT, to_wire

    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all", linger_ms=20)
    for i in range(first, first + count):
        value = to_wire({k: v for k, v in _event(i).items() if k in SCORED_EVENT.names})
        producer.send(settings.kafka.scored_topic, partition=i % 4, value=value)
        if i % 10 == 0:  # the worker's at-least-once duplicates
            producer.send(settings.kafka.scored_topic, partition=i % 4, value=value)
    producer.flush(60)
    producer.close()


def fold_scale(
    root: Path, bootstrap: str, scale: int, history: int, new_events: int, fold_only: bool = False
) -> dict[str, Any]:
    from jobs.fold import FoldOptions, run
    from shared.settings import Settings
    from stream.broker import ensure_topics
    from stream.topics import TopicSpec

    env = {
        "SHOPFLOW_LAKE__ROOT": str(root / f"lake-{scale}"),
        "SHOPFLOW_MODELS__REGISTRY_ROOT": str(root / f"registry-{scale}"),
        "SHOPFLOW_METRICS_DIR": str(root / "metrics"),
        "SHOPFLOW_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "SHOPFLOW_KAFKA__SCORED_TOPIC": f"bench-{scale}.scored",
        "SHOPFLOW_KAFKA__DLQ_TOPIC": f"bench-{scale}.dlq",
        "SHOPFLOW_FOLD__GROUP_ID": f"bench-fold-{scale}",
    }
    os.environ.update(env)
    settings = Settings()
    ensure_topics(bootstrap, [TopicSpec(settings.kafka.scored_topic, 4), TopicSpec(settings.kafka.dlq_topic, 4)])
    rows = scale * history
    _history(settings, rows, settings.fold.batch_records)
    if not fold_only:
        _champion(settings)
    _produce(settings, rows, new_events)
    started = time.monotonic()
    result = run(settings, FoldOptions())
    seconds = time.monotonic() - started
    out = {
        "scale": scale,
        "history_rows": rows,
        "silver_clicks_rows": rows,
        "seconds": round(seconds, 2),
        "rows_folded": result.rows_folded,
        "duplicates_dropped": result.duplicates_dropped,
        "batches": result.batches,
        "files_scanned": result.files_scanned,
        "files_skipped": result.files_skipped,
    }
    if not fold_only:
        out["stages_seconds"] = {"fold": round(seconds, 2), **_rest_of_iteration(settings)}
    return out


_CLICK_TABLES = ("click_sessions", "item_click_stats", "train_propensity")


def _champion(settings: Any) -> None:
    """The champion the retrain starts from: trained on the history alone (not timed)."""
    from batch import features, train

    features.run(settings, features.FeaturesOptions(tables=_CLICK_TABLES))
    train.run(settings, train.TrainOptions(task="propensity", promote=True, progress=False))


def _rest_of_iteration(settings: Any) -> dict[str, float]:
    from batch import features
    from jobs import retrain

    started = time.monotonic()
    features.run(settings, features.FeaturesOptions(tables=_CLICK_TABLES))
    seconds = {"features": round(time.monotonic() - started, 2)}
    result = retrain.run(settings, retrain.RetrainOptions(promote=False))
    seconds.update({f"retrain_{k}": v for k, v in result.seconds.items()})
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loop", description=__doc__.split("\n")[0])
    parser.add_argument("--new-events", type=int, default=10_000)
    parser.add_argument("--history", type=int, default=20_000)
    parser.add_argument("--scales", default="1,4")
    parser.add_argument("--fold-only", action="store_true", help="time the fold alone (no Spark, no model)")
    args = parser.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING)
    root = Path(tempfile.mkdtemp(prefix="shopflow-bench-loop-"))
    bootstrap = f"127.0.0.1:{free_port()}"
    os.environ.update({"SHOPFLOW_KAFKA__BOOTSTRAP_SERVERS": bootstrap, "SHOPFLOW_STREAM__RUN_DIR": str(root / "run")})
    from shared.settings import Settings
    from stream import broker

    broker_settings = Settings()
    broker.start(broker_settings)
    try:
        runs = [
            fold_scale(root, bootstrap, int(s), args.history, args.new_events, args.fold_only)
            for s in args.scales.split(",")
        ]
    finally:
        broker.stop(broker_settings)
    print(
        json.dumps(
            {
                "bench": "loop.fold" if args.fold_only else "loop",
                "new_events": args.new_events,
                "runs": runs,
                "fold_ratio": round(runs[-1]["seconds"] / max(runs[0]["seconds"], 1e-9), 2),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
