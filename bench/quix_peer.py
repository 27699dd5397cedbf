"""The Quix Streams peer of bench.stream_peers: a stateful per-user count over a backlog.

usage: var/bench/quix-venv/bin/python bench/quix_peer.py --bootstrap 127.0.0.1:19092 \
           --in peers-backlog --out peers-quix.out --group peers-quix --expect 50000
       (create the venv first: bash bench/quix_env.sh)

Runs with the separate venv's python and imports nothing from shopflow: Quix Streams caps
pydantic below the project's pin, so the two never share an interpreter. Reads the
backlog from the earliest offset, keeps a count and the last record timestamp per user
key in Quix's state (RocksDB backed by a changelog topic), produces one JSON record per
event to --out, stops after --expect outputs (or once nothing arrives for --idle-seconds)
and prints ONE JSON line: {"events", "seconds", "events_per_s", "quixstreams", ...}, timed
from the first record processed until the application stopped: its final checkpoint
flushes the outputs and the changelog and commits the offsets, as the aiokafka ceiling's
span ends at the last ack. "to_last_processed_events_per_s" stops at the last record
processed, before its output and the changelog are flushed, and so reads higher.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from importlib.metadata import version
from typing import Any

# A week, written out: the embedded broker's DescribeConfigs answers only the configs a
# topic was created with, and Quix copies retention.ms from the input topic into the
# changelog topic it creates (a KeyError when the broker does not report it).
RETENTION_MS = "604800000"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="quix_peer", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--in", dest="in_topic", required=True)
    parser.add_argument("--out", dest="out_topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--expect", type=int, required=True, help="stop after this many outputs")
    parser.add_argument("--partitions", type=int, default=4, help="for topics Quix has to create")
    parser.add_argument(
        "--fetch-max-wait-ms", type=int, default=25, help="the same fetch wait the other consumers of the bench use"
    )
    parser.add_argument(
        "--session-timeout-ms", type=int, default=6000, help="the other consumers' value (start-up only)"
    )
    parser.add_argument("--heartbeat-interval-ms", type=int, default=2000)
    parser.add_argument(
        "--idle-seconds", type=float, default=30.0, help="stop when no record arrived for this long (a short backlog)"
    )
    args = parser.parse_args(argv)

    from quixstreams import Application
    from quixstreams.models import TopicConfig

    config = TopicConfig(
        num_partitions=args.partitions, replication_factor=1, extra_config={"retention.ms": RETENTION_MS}
    )
    with tempfile.TemporaryDirectory(prefix="quix-peer-") as state_dir:
        app = Application(
            broker_address=args.bootstrap,
            consumer_group=args.group,
            auto_offset_reset="earliest",
            state_dir=state_dir,
            loglevel="WARNING",
            # Tansu holds a waiting fetch for its full max wait instead of answering when
            # records arrive (shopflow's stream.transport); librdkafka waits 500 ms by default.
            # Tansu joins a group after about half the session timeout (librdkafka: 45 s).
            consumer_extra_config={
                "fetch.wait.max.ms": args.fetch_max_wait_ms,
                "session.timeout.ms": args.session_timeout_ms,
                "heartbeat.interval.ms": args.heartbeat_interval_ms,
            },
        )
        source = app.topic(args.in_topic, key_deserializer="bytes", value_deserializer="bytes", config=config)
        sink = app.topic(args.out_topic, key_serializer="bytes", value_serializer="json", config=config)

        span: dict[str, float] = {}
        processed = [0]

        def count_user(value: bytes, key: bytes, timestamp: int, headers: Any, state: Any) -> dict[str, int]:
            # Per-user state, as the project's session table keeps per user: one read and
            # one write of the user's entry per event.
            now = time.perf_counter()
            span.setdefault("first", now)
            entry = state.get("entry") or {"count": 0, "last_ts": 0}
            entry = {"count": entry["count"] + 1, "last_ts": timestamp}
            state.set("entry", entry)
            processed[0] += 1
            span["last"] = now
            return entry

        sdf = app.dataframe(source)
        sdf = sdf.apply(count_user, stateful=True, metadata=True)
        sdf.to_topic(sink)
        # collect=False: the outputs are in --out; keeping 50,000 dicts here costs time.
        app.run(count=args.expect, timeout=args.idle_seconds, collect=False)
        stopped = time.perf_counter()  # after the final checkpoint; closing takes ~ms

    n = processed[0]
    seconds = stopped - span.get("first", stopped)
    processing = span.get("last", 0.0) - span.get("first", 0.0)
    print(
        json.dumps(
            {
                "events": n,
                "seconds": round(seconds, 3),
                "events_per_s": round(n / seconds, 1) if seconds > 0 else None,
                # n - 1 intervals between the first and the last record processed.
                "to_last_processed_events_per_s": round((n - 1) / processing, 1) if processing > 0 else None,
                "quixstreams": version("quixstreams"),
            }
        )
    )
    return 0 if n >= args.expect else 1


if __name__ == "__main__":
    sys.exit(main())
