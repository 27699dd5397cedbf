"""Throughput peers for the stream bench: systems other than the worker consuming the same
pre-produced backlog of click events, each with its own consumer group and output topic.

usage: python -m bench.stream_peers all --events 50000 [--repeat 2]
       python -m bench.stream_peers faust-passthrough --bootstrap H:P --in T --out T.out --group G
       (the Quix peer needs its own venv first: bash bench/quix_env.sh)

`all` starts an embedded broker on a free port, produces the backlog once and prints ONE
JSON line with events/s of:
  aiokafka_passthrough   ceiling A: getmany -> one send_batch per partition -> acks ->
                         commit; timed from the partition assignment to the last ack
  faust_passthrough      a Faust agent taking micro-batches and sending each through the
                         aiokafka producer's batch API; timed from the broker timestamps of
                         the output records (so the worker's start-up is excluded)
  quix                   Quix Streams with a per-user count in its state (changelog topic),
                         in its own venv (bench/quix_peer.py), timed there from the first
                         record processed until it stopped (final checkpoint flushed and
                         committed); {"skipped": reason} without the venv
Each figure is the median of --repeat runs, with every run listed. Every output topic is
checked to hold exactly the backlog's records by key (none lost, none doubled).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from bench.local import free_port, settings_with
from shared.errors import ShopflowError

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
QUIX_VENV = REPO_ROOT / "var" / "bench" / "quix-venv"
QUIX_SCRIPT = REPO_ROOT / "bench" / "quix_peer.py"
# The size limit of a produced record batch: aiokafka's and Faust's default, what the
# worker and stream.replay's producer use (about 60 click events). `--max-batch-bytes`
# changes it for the aiokafka and Faust peers; Quix keeps librdkafka's own (1 MB).
BATCH_BYTES = 16_384
# Every topic here is created with retention.ms written out: the embedded broker's
# DescribeConfigs reports only the configs a topic was created with, and Quix copies it
# from its input topic into the changelog topic it creates.
TOPIC_CONFIGS = {"retention.ms": "604800000"}
# Tansu holds a waiting fetch for its full max wait instead of answering when records
# arrive (stream.transport): every consumer here waits as briefly as the worker's does
# (settings.stream.fetch_max_wait_ms), so none of them idles on the broker.
FETCH_MAX_WAIT_MS = 25
# Tansu completes a group join after about half the session timeout; every consumer here
# uses the embedded profile's settings.kafka values (clients' defaults of 10-60 s made a
# peer wait 5-30 s before its first record; outside the timed spans, but slow).
SESSION_TIMEOUT_MS = 6_000
HEARTBEAT_INTERVAL_MS = 2_000
# The output header that numbers a Faust micro-batch (see faust_passthrough).
BATCH_HEADER = "bench-batch"

# (key, value, timestamp ms or None for now, headers); the C record builder wants a list.
Record = tuple[bytes | None, bytes | None, int | None, list[tuple[str, bytes]]]


class PeerError(ShopflowError):
    """A peer did not consume and produce the whole backlog."""


async def _send_partition(producer: Any, topic: str, partition: int, records: Iterable[Record]) -> list[Any]:
    """Append (key, value, timestamp_ms, headers) records to as few batches as fit and
    send each with `send_batch`, in order; returns the futures of their acks."""
    futures = []
    batch = producer.create_batch()
    empty = True
    for key, value, timestamp, headers in records:
        if batch.append(key=key, value=value, timestamp=timestamp, headers=headers) is None:
            # A full batch refuses the record (batches are size-limited): ship it, start anew.
            futures.append(await producer.send_batch(batch, topic, partition=partition))
            batch = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=timestamp, headers=headers) is None:
                raise PeerError(f"a record of {len(value or b'')} bytes does not fit an empty batch")
        empty = False
    if not empty:
        futures.append(await producer.send_batch(batch, topic, partition=partition))
    return futures


def _producer(bootstrap: str, max_batch_bytes: int) -> Any:
    from aiokafka import AIOKafkaProducer

    return AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_batch_size=max_batch_bytes)


async def _produce_backlog(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]], partitions: int) -> None:
    from aiokafka.partitioner import DefaultPartitioner

    # Batches of the size a replayed log has on the topic (stream.replay's producer).
    producer = _producer(bootstrap, BATCH_BYTES)
    await producer.start()
    try:
        found = len(await producer.partitions_for(topic))
        if found != partitions:
            raise PeerError(f"{topic} has {found} partitions, expected {partitions}: create it first")
        # aiokafka's default partitioner is Kafka's (murmur2 of the key), so one user's
        # events land on the partition any Kafka client would pick; a list per partition
        # keeps their order.
        choose = DefaultPartitioner()
        every = list(range(partitions))
        by_partition: dict[int, list[Record]] = {p: [] for p in every}
        for key, value in records:
            by_partition[choose(key, every, every)].append((key, value, None, []))
        futures = []
        for partition, batch in by_partition.items():
            futures += await _send_partition(producer, topic, partition, batch)
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def produce_backlog(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]], partitions: int) -> None:
    """Produce keyed (key, value) records to `topic` (which must have `partitions`
    partitions) with the batch API, keyed like Kafka's default partitioner, in order per
    partition; returns once the broker acknowledged every batch."""
    asyncio.run(_produce_backlog(bootstrap, topic, records, partitions))


async def aiokafka_passthrough(
    bootstrap: str,
    in_topic: str,
    out_topic: str,
    *,
    expect: int,
    group: str,
    max_batch_bytes: int = BATCH_BYTES,
    timeout_s: float = 300.0,
) -> dict[str, Any]:
    """Ceiling A: consume `expect` records of `in_topic` in group `group` and produce each
    fetched batch unchanged to the same partition of `out_topic`, acks awaited before the
    offsets are committed. Returns {"events", "seconds", "events_per_s"}, timed from the
    partitions' assignment (when the first fetch starts) to the last ack, and
    "from_first_record_events_per_s", timed from the first getmany that returned records:
    aiokafka fetches ahead in the background, so by then most of a backlog of this size is
    in memory already and that figure leaves the reading out."""
    from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener

    assigned: list[float] = []

    class Listener(ConsumerRebalanceListener):
        async def on_partitions_revoked(self, revoked: Any) -> None:
            pass

        async def on_partitions_assigned(self, tps: Any) -> None:
            if tps and not assigned:  # fetching starts right after this returns
                assigned.append(time.perf_counter())

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        session_timeout_ms=SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
    )
    consumer.subscribe([in_topic], listener=Listener())
    producer = _producer(bootstrap, max_batch_bytes)
    await producer.start()
    await consumer.start()
    try:
        # The output keeps each record's input partition: that is where its key belongs.
        if len(await producer.partitions_for(out_topic)) != len(consumer.partitions_for_topic(in_topic) or ()):
            raise PeerError(f"{out_topic} and {in_topic} must have as many partitions")
        n, first, last = 0, None, None
        deadline = time.monotonic() + timeout_s
        while n < expect:
            if time.monotonic() > deadline:
                raise PeerError(f"aiokafka pass-through consumed {n} of {expect} records in {timeout_s:.0f} s")
            fetched = await consumer.getmany(timeout_ms=1000)
            if not fetched:
                continue
            first = first or time.perf_counter()
            futures = []
            for tp, records in fetched.items():
                futures += await _send_partition(
                    producer, out_topic, tp.partition, ((r.key, r.value, r.timestamp, list(r.headers)) for r in records)
                )
            await asyncio.gather(*futures)
            last = time.perf_counter()
            await consumer.commit({tp: records[-1].offset + 1 for tp, records in fetched.items()})
            n += sum(len(records) for records in fetched.values())
    finally:
        await consumer.stop()
        await producer.stop()
    seconds = last - assigned[0]
    return {
        "events": n,
        "seconds": round(seconds, 3),
        "events_per_s": round(n / seconds, 1),
        "from_first_record_events_per_s": round(n / (last - first), 1),
    }


def read_topic(bootstrap: str, topic: str, expect: int, timeout_s: float = 60.0) -> list[Any]:
    """Every record of `topic` from its start (kafka-python ConsumerRecords): read until
    at least `expect` arrived and one more poll found nothing, or `timeout_s`. End offsets
    are no stop signal: Tansu's ListOffsets answers short of the end (stream.transport)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
    )
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        out: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = [r for records in consumer.poll(timeout_ms=300).values() for r in records]
            out += got
            if len(out) >= expect and not got:
                break
        return out
    finally:
        consumer.close()


def wait_committed(
    bootstrap: str, group: str, topic: str, partitions: int, expect: int, *, alive: Callable[[], bool], timeout_s: float
) -> bool:
    """Poll until `group` committed offsets summing to `expect` on `topic`: True then,
    False as soon as `alive()` is false, PeerError after `timeout_s`. One admin client
    for the whole wait: a new one per poll costs CPU the peer under test is using."""
    from kafka import TopicPartition
    from kafka.admin import KafkaAdminClient

    tps = [TopicPartition(topic, p) for p in range(partitions)]
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-peers")
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            offsets = admin.list_group_offsets({group: tps}).get(group, {})
            if sum(meta.offset for meta in offsets.values() if meta.offset > 0) >= expect:
                return True
            if not alive():
                return False
            if time.monotonic() > deadline:
                raise PeerError(f"{group} did not commit {expect} records of {topic} in {timeout_s:.0f} s")
            time.sleep(0.5)
    finally:
        admin.close()


def check_output(bootstrap: str, topic: str, expect: int, who: str, keys: Counter[bytes] | None = None) -> list[Any]:
    """The records of `topic`; PeerError unless there are exactly `expect`, and, given
    `keys` (key -> count of the input), unless each key came out as often as it went in."""
    records = read_topic(bootstrap, topic, expect)
    if len(records) != expect:
        raise PeerError(f"{who} wrote {len(records)} records to {topic}, expected {expect}")
    if keys is not None and Counter(r.key for r in records) != keys:
        raise PeerError(f"{who} wrote {expect} records to {topic}, but not one per input record by key")
    return records


def create_faust_passthrough(
    bootstrap: str,
    in_topic: str,
    out_topic: str,
    group: str,
    *,
    datadir: str,
    take: int,
    within: float,
    per_event_send: bool = False,
    max_batch_bytes: int = BATCH_BYTES,
) -> Any:
    """A Faust app (id and consumer group `group`) whose one agent copies `in_topic` to the
    same partitions of `out_topic`: micro-batches of up to `take` events (or what arrived
    within `within` s), each sent with one `send_batch` per partition and its acks awaited
    before the next; with `per_event_send`, one `topic.send` per event instead. Every
    output carries the BATCH_HEADER header with its micro-batch's number."""
    from collections import defaultdict

    import faust

    from stream.pipeline import die
    from stream.transport import ShopflowApp

    # ShopflowApp, not faust.App: its consumer takes the short fetch wait Tansu needs,
    # the one thing of the worker's transport a backlog run depends on.
    app = ShopflowApp(
        group,
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        broker=f"kafka://{bootstrap}",
        datadir=datadir,
        store="memory://",
        web_enabled=False,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_max_batch_size=max_batch_bytes,
        broker_commit_interval=1.0,
        broker_session_timeout=SESSION_TIMEOUT_MS / 1000,
        broker_heartbeat_interval=HEARTBEAT_INTERVAL_MS / 1000,
    )
    raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
    source = app.topic(in_topic, **raw)
    sink = app.topic(out_topic, **raw)

    async def batch_sends(stream: faust.StreamT) -> None:
        try:
            # take_events is take() that yields the events (keys and partitions too).
            index = 0
            async for events in stream.take_events(take, within=within):
                producer = app.producer._ensure_producer()  # the AIOKafkaProducer under Faust
                header = [(BATCH_HEADER, str(index).encode())]
                by_partition: dict[int, list[Record]] = defaultdict(list)
                for event in events:
                    by_partition[event.message.partition].append((event.key, event.value, None, header))
                futures = []
                for partition, records in by_partition.items():
                    futures += await _send_partition(producer, out_topic, partition, records)
                await asyncio.gather(*futures)
                index += 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # Faust would log it and leave the partitions stalled
            die("batch_sends", exc)

    async def per_event_sends(stream: faust.StreamT) -> None:
        try:
            index = 0
            async for event in stream.events():
                await sink.send(
                    key=event.key,
                    value=event.value,
                    partition=event.message.partition,
                    headers=[(BATCH_HEADER, str(index).encode())],
                )
                index += 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            die("per_event_sends", exc)

    agent = per_event_sends if per_event_send else batch_sends
    app.agent(source, name=agent.__name__)(agent)
    return app


def _run_faust(args: argparse.Namespace) -> int:
    """The `faust-passthrough` command: run the app as a worker until SIGTERM."""
    import faust

    with tempfile.TemporaryDirectory(prefix="bench-faust-") as datadir:
        app = create_faust_passthrough(
            args.bootstrap,
            args.in_topic,
            args.out_topic,
            args.group,
            datadir=datadir,
            take=args.take,
            within=args.within,
            per_event_send=args.per_event_send,
            max_batch_bytes=args.max_batch_bytes,
        )
        worker = faust.Worker(app, loglevel="warning", quiet=True)
        logging.getLogger("aiokafka").setLevel(logging.WARNING)
        logging.getLogger("kafka").setLevel(logging.WARNING)
        try:
            worker.execute_from_commandline()
        except SystemExit as exc:
            return 0 if exc.code in (0, None) else 1
    return 0


def faust_passthrough(
    bootstrap: str,
    in_topic: str,
    out_topic: str,
    *,
    expect: int,
    group: str,
    partitions: int = 4,
    take: int = 1000,
    within: float = 0.05,
    per_event_send: bool = False,
    max_batch_bytes: int = BATCH_BYTES,
    keys: Counter[bytes] | None = None,
    timeout_s: float = 300.0,
    log_dir: Path | None = None,
) -> dict[str, Any]:
    """Run `create_faust_passthrough` as a worker subprocess until its group committed
    `expect` records of `in_topic`, check `out_topic` holds them (`check_output`), stop it.

    Timed from the output records' timestamps (set by the producer as it appends them):
    from the first record of micro-batch 0 to the last record, which spans the work on
    every later micro-batch, so the rate counts the records outside batch 0. Start-up,
    group join and the first fetch fall outside the span.
    """
    from stream.broker import ensure_topics
    from stream.topics import TopicSpec

    # Faust's assignor topic; pre-created like every other topic (see TOPIC_CONFIGS).
    ensure_topics(bootstrap, [TopicSpec(f"{group}-__assignor-__leader", 1, TOPIC_CONFIGS)])
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="bench-faust-"))
    log_path = log_dir / f"{group}.log"
    command = [
        sys.executable,
        "-m",
        "bench.stream_peers",
        "faust-passthrough",
        "--bootstrap",
        bootstrap,
        "--in",
        in_topic,
        "--out",
        out_topic,
        "--group",
        group,
        "--take",
        str(take),
        "--within",
        str(within),
        "--max-batch-bytes",
        str(max_batch_bytes),
    ]
    if per_event_send:
        command.append("--per-event-send")
    with open(log_path, "ab") as log_fh:
        proc = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            stdout=log_fh,
            stderr=subprocess.STDOUT,
        )
    try:
        # Committed offsets, not the output topic, tell when it is done: reading 50,000
        # records while it runs would take CPU from it (two cores), and Faust commits only
        # what its agent finished.
        if not wait_committed(
            bootstrap, group, in_topic, partitions, expect, alive=lambda: proc.poll() is None, timeout_s=timeout_s
        ):
            raise PeerError(f"the Faust pass-through exited with status {proc.returncode}; see {log_path}")
        records = check_output(bootstrap, out_topic, expect, "the Faust pass-through", keys)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
    batch_of = [int(dict(r.headers)[BATCH_HEADER]) for r in records]
    stamps = [r.timestamp for r in records]
    first = min(t for t, b in zip(stamps, batch_of) if b == 0)
    seconds = (max(stamps) - first) / 1000.0
    counted = sum(1 for b in batch_of if b > 0)
    if seconds <= 0 or not counted:
        raise PeerError(f"the Faust pass-through sent everything in one micro-batch: no span to time ({log_path})")
    return {
        "events": len(records),
        "seconds": round(seconds, 3),
        "events_per_s": round(counted / seconds, 1),
        "micro_batches": max(batch_of) + 1,
    }


def quix_unavailable(venv: Path = QUIX_VENV) -> str | None:
    """Why the Quix peer cannot run (its venv is missing), or None."""
    if not (venv / "bin" / "python").is_file():
        return f"no Quix Streams venv at {venv}: run `bash bench/quix_env.sh`"
    return None


def quix_peer(
    bootstrap: str,
    in_topic: str,
    *,
    expect: int,
    group: str = "peers-quix",
    out_topic: str | None = None,
    partitions: int = 4,
    venv: Path = QUIX_VENV,
    keys: Counter[bytes] | None = None,
    timeout_s: float = 300.0,
) -> dict[str, Any] | None:
    """Run bench/quix_peer.py with the Quix venv's python on the backlog; its JSON result
    once `out_topic` is checked to hold `expect` records (`check_output`), or None (reason logged) when the
    venv does not exist."""
    from stream.broker import ensure_topics
    from stream.topics import TopicSpec

    reason = quix_unavailable(venv)
    if reason:
        log.warning("quix peer skipped: %s", reason)
        return None
    out_topic = out_topic or f"{group}.out"
    ensure_topics(bootstrap, [TopicSpec(out_topic, partitions, TOPIC_CONFIGS)])
    command = [
        str(venv / "bin" / "python"),
        str(QUIX_SCRIPT),
        "--bootstrap",
        bootstrap,
        "--in",
        in_topic,
        "--out",
        out_topic,
        "--group",
        group,
        "--expect",
        str(expect),
        "--partitions",
        str(partitions),
        "--fetch-max-wait-ms",
        str(FETCH_MAX_WAIT_MS),
        "--session-timeout-ms",
        str(SESSION_TIMEOUT_MS),
        "--heartbeat-interval-ms",
        str(HEARTBEAT_INTERVAL_MS),
    ]
    # A clean environment apart from PATH: nothing of the project's venv may leak in.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout_s)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise PeerError(f"the Quix peer exited with status {done.returncode}: {done.stderr.strip()[-2000:]}")
    result = json.loads(lines[-1])
    check_output(bootstrap, out_topic, expect, "the Quix peer", keys)
    return result


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    rates = [r["events_per_s"] for r in runs]
    return {"events_per_s": round(statistics.median(rates), 1), "min": min(rates), "max": max(rates), "runs": runs}


def run_all(
    events: int, repeat: int, *, take: int, within: float, per_event_send: bool, max_batch_bytes: int = BATCH_BYTES
) -> dict[str, Any]:
    """Start a broker, produce `events` Taobao clicks once, run every peer `repeat` times
    on that backlog (interleaved, so drift on a shared machine hits all alike)."""
    from shared.schemas import to_wire
    from stream import broker
    from stream.replay import load_events
    from stream.topics import TopicSpec

    work = Path(tempfile.mkdtemp(prefix="bench-peers-"))
    settings = settings_with(
        {
            "SHOPFLOW_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
            "SHOPFLOW_STREAM__RUN_DIR": str(work / "run"),
            "SHOPFLOW_LOG_LEVEL": "WARNING",
        }
    )
    bootstrap, partitions = settings.kafka.bootstrap_servers, settings.kafka.partitions
    clicks = load_events("taobao", settings.data_root, limit=events)
    if len(clicks) < events:
        raise PeerError(f"the Taobao slice has {len(clicks)} events, fewer than --events {events}")
    records = [(e["user_id"].encode("utf-8"), to_wire(e)) for e in clicks]
    keys = Counter(key for key, _ in records)
    backlog = "peers-backlog"
    systems = ["aiokafka_passthrough", "faust_passthrough"] + (["faust_per_event_send"] if per_event_send else [])
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in systems + ["quix"]}
    quix_skipped = quix_unavailable()
    broker.start(settings)
    try:
        outs = [f"peers-{name}-{i}.out" for i in range(repeat) for name in systems]
        broker.ensure_topics(bootstrap, [TopicSpec(t, partitions, TOPIC_CONFIGS) for t in [backlog, *outs]])
        started = time.perf_counter()
        produce_backlog(bootstrap, backlog, records, partitions)
        produce_rate = len(records) / (time.perf_counter() - started)
        for i in range(repeat):
            out = f"peers-aiokafka_passthrough-{i}.out"
            result = asyncio.run(
                aiokafka_passthrough(
                    bootstrap, backlog, out, expect=events, group=f"peers-aiokafka-{i}", max_batch_bytes=max_batch_bytes
                )
            )
            check_output(bootstrap, out, events, "the aiokafka pass-through", keys)
            runs["aiokafka_passthrough"].append(result)
            for name in systems[1:]:
                runs[name].append(
                    faust_passthrough(
                        bootstrap,
                        backlog,
                        f"peers-{name}-{i}.out",
                        expect=events,
                        group=f"peers-{name}-{i}",
                        partitions=partitions,
                        take=take,
                        within=within,
                        per_event_send=name == "faust_per_event_send",
                        max_batch_bytes=max_batch_bytes,
                        keys=keys,
                        log_dir=work,
                    )
                )
            if not quix_skipped:
                runs["quix"].append(
                    quix_peer(
                        bootstrap, backlog, expect=events, group=f"peers-quix-{i}", partitions=partitions, keys=keys
                    )
                )
    finally:
        broker.stop(settings)
    report: dict[str, Any] = {
        "bench": "stream_peers",
        "host": {"cpus": os.cpu_count(), "machine": platform.machine()},
        "events": events,
        "partitions": partitions,
        "repeat": repeat,
        "backlog_produce_events_per_s": round(produce_rate, 1),
        "faust_take": {"max": take, "within_s": within},
        "max_batch_bytes": max_batch_bytes,
    }
    report.update({name: _summary(runs[name]) for name in systems})
    report["quix"] = _summary(runs["quix"]) if runs["quix"] else {"skipped": quix_skipped}
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.stream_peers", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    every = commands.add_parser("all", help="every peer on one broker and backlog; one JSON line")
    every.add_argument("--events", type=int, default=50_000, help="backlog size (Taobao clicks)")
    every.add_argument("--repeat", type=int, default=1, help="runs of each peer; the median is reported")
    every.add_argument("--per-event-send", action="store_true", help="also the Faust variant with one send per event")
    faust_cmd = commands.add_parser("faust-passthrough", help="run the Faust pass-through worker (until SIGTERM)")
    faust_cmd.add_argument("--bootstrap", required=True)
    faust_cmd.add_argument("--in", dest="in_topic", required=True)
    faust_cmd.add_argument("--out", dest="out_topic", required=True)
    faust_cmd.add_argument("--group", required=True, help="the Faust app id, which is its consumer group")
    faust_cmd.add_argument("--per-event-send", action="store_true", help="one topic.send per event instead")
    for sub in (every, faust_cmd):
        sub.add_argument("--take", type=int, default=1000, help="events per Faust micro-batch at most")
        sub.add_argument("--within", type=float, default=0.05, help="seconds a Faust micro-batch waits to fill")
        sub.add_argument(
            "--max-batch-bytes",
            type=int,
            default=BATCH_BYTES,
            help="size limit of a produced record batch (aiokafka and Faust peers)",
        )
    args = parser.parse_args(argv)

    if args.command == "faust-passthrough":
        return _run_faust(args)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.ERROR)  # per-connection chatter
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    print(
        json.dumps(
            run_all(
                args.events,
                args.repeat,
                take=args.take,
                within=args.within,
                per_event_send=args.per_event_send,
                max_batch_bytes=args.max_batch_bytes,
            )
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
