"""jobs.fold against the real broker and real Delta: killed at each point and rerun, and
two folds at once in one group, every event_id lands once and the offsets are exact."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pytest

from shared.contract.folded import STREAM_SCHEMA, quarantine_table_path, stream_table_path
from shared.delta import open_table, read_arrow, write_arrow
from shared.schemas import CLICK_EVENT, SCORED_EVENT, to_wire
from tests.integration import kit

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
PARTITIONS = 4
_COUNTER = itertools.count()
T0 = datetime(2017, 11, 25, 10, tzinfo=timezone.utc)


@pytest.fixture
def fold_env(broker_env: dict, tmp_path: Path) -> dict:
    from stream.broker import ensure_topics
    from stream.topics import TopicSpec

    n = next(_COUNTER)
    env = {
        **broker_env,
        "SHOPFLOW_KAFKA__SCORED_TOPIC": f"fold-{n}.scored",
        "SHOPFLOW_KAFKA__DLQ_TOPIC": f"fold-{n}.dlq",
        "SHOPFLOW_FOLD__GROUP_ID": f"fold-test-{n}",
        "SHOPFLOW_LAKE__ROOT": str(tmp_path / "lake"),
        "SHOPFLOW_METRICS_DIR": str(tmp_path / "metrics"),
    }
    settings = kit.settings_from(env)
    ensure_topics(
        settings.kafka.bootstrap_servers,
        [TopicSpec(settings.kafka.scored_topic, PARTITIONS), TopicSpec(settings.kafka.dlq_topic, PARTITIONS)],
    )
    return env


def _event(i: int) -> dict:
    kind = "view" if i % 3 else "add_to_cart"
    return {
        "event_id": hashlib.sha1(f"fold-test:{i}".encode()).hexdigest()[:24],
        "user_id": f"u{i % 17}",
        "session_id": None,
        "item_id": f"i{i % 50}",
        "event_type": kind,
        "ts": T0 + timedelta(seconds=i),
        "query": None,
        "category_id": "c1",
        "model_name": "propensity",
        "model_version": "3",
        "score": 0.25 if kind == "view" else None,  # non-view events carry no score
        "received_at": T0 + timedelta(seconds=i, milliseconds=5),
        "scored_at": T0 + timedelta(seconds=i, milliseconds=9),
    }


def _dlq(i: int, new_fields: bool) -> dict:
    entry = {
        "raw": f"bad-{i}",
        "raw_encoding": "latin-1",
        "step": "parse_validate",
        "reasons": ["not JSON"],
        "source": {"topic": "clicks", "partition": i % PARTITIONS, "offset": 1000 + i},
        "failed_at": "2017-11-25T10:00:00.000Z",
    }
    if new_fields:
        entry.update(
            reason_code="not_json",
            raw_size=5 + len(str(i)),
            raw_truncated=False,
            raw_sha256=hashlib.sha256(f"bad-{i}".encode()).hexdigest(),
        )
    return entry


def _produce(settings, n: int, start: int = 0) -> dict:
    """Scored events (+ worker duplicates, + ids already in silver/clicks, + unreadable values)
    and dead letters (+ duplicates, + one unreadable), each to a chosen partition.
    Returns the ids and the end offset of every partition."""
    from kafka import KafkaProducer

    events = [_event(i) for i in range(start, start + n)]
    scored: list[tuple[int, bytes]] = [
        (i % PARTITIONS, to_wire({k: e.get(k) for k in SCORED_EVENT.names})) for i, e in enumerate(events)
    ]
    scored += scored[::10]  # at-least-once duplicates, on the original's partition
    scored += [(1, b"not json at all"), (2, b'{"event_id": "x"}')]
    dead = [(i % PARTITIONS, json.dumps(_dlq(start + i, new_fields=i % 2 == 0)).encode()) for i in range(n // 20)]
    dead += dead[:3] + [(3, b"\xff garbage")]
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all", linger_ms=5)
    for topic, values in ((settings.kafka.scored_topic, scored), (settings.kafka.dlq_topic, dead)):
        for partition, value in values:
            producer.send(topic, partition=partition, value=value)
    producer.flush(30)
    producer.close()
    return {
        "ids": [e["event_id"] for e in events],
        "events": events,
        "dead_keys": len({(p, json.loads(v)["source"]["offset"]) for p, v in dead if v.startswith(b"{")}) + 1,
        "counts": {
            settings.kafka.scored_topic: Counter(p for p, _ in scored),
            settings.kafka.dlq_topic: Counter(p for p, _ in dead),
        },
    }


def _silver_clicks(settings, events: list[dict]) -> None:
    """A silver/clicks table holding some of the events, as the batch would have cleaned them."""
    schema = pa.schema(
        [*CLICK_EVENT.arrow_schema(), pa.field("source", pa.string()), pa.field("_batch_id", pa.string())]
    )
    rows = [{**{k: e[k] for k in CLICK_EVENT.names}, "source": "taobao", "_batch_id": "b1"} for e in events]
    write_arrow(pa.Table.from_pylist(rows, schema=schema), settings.lake.table("silver", "clicks"), mode="overwrite")


def _fold(env: dict, *extra_env: tuple[str, str], batch: int = 100) -> subprocess.Popen:
    full = {
        **os.environ,
        **env,
        **dict(extra_env),
        "SHOPFLOW_FOLD__BATCH_RECORDS": str(batch),
        "PYTHONPATH": str(REPO),
        "PYTHONUNBUFFERED": "1",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "jobs.fold"],
        cwd=REPO,
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen, timeout: float = 180) -> tuple[int, dict | None, str]:
    out, err = proc.communicate(timeout=timeout)
    result = json.loads(out.strip().splitlines()[-1]) if proc.returncode == 0 and out.strip() else None
    return proc.returncode, result, err


def _check_consistent(settings, produced: dict, *, complete: bool) -> None:
    """No event_id twice; no row past its partition's stored offset; when complete, every
    id (but those already in silver/clicks) is there and the offsets equal the topic ends."""
    stream_path = stream_table_path(settings)
    quarantine_path = quarantine_table_path(settings)
    for path, key in ((stream_path, "event_id"), (quarantine_path, "dedupe_key")):
        if not (path / "_delta_log").exists():
            continue
        table = read_arrow(path)
        counts = Counter(table.column(key).to_pylist())
        assert not [k for k, c in counts.items() if c > 1], f"{path.name}: keys folded twice"
        snapshot = open_table(path)
        topic = settings.kafka.scored_topic if path == stream_path else settings.kafka.dlq_topic
        for p in range(PARTITIONS):
            stored = snapshot.transaction_version(f"fold:{topic}:{p}") or 0
            offsets = [
                o
                for t, q, o in zip(
                    table["_topic"].to_pylist(), table["_partition"].to_pylist(), table["_offset"].to_pylist()
                )
                if t == topic and q == p
            ]
            assert all(o < stored for o in offsets), f"{topic}[{p}]: rows past the stored offset {stored}"
            if complete:
                assert stored == produced["counts"][topic][p], f"{topic}[{p}]: stored {stored}"
    if complete:
        ids = read_arrow(stream_path).column("event_id").to_pylist()
        assert sorted(ids) == sorted(set(produced["ids"]) - produced["in_silver"])
        quarantine = read_arrow(quarantine_path)
        # every dead letter once, plus the two unreadable scored values
        assert quarantine.num_rows == produced["dead_keys"] + 2
        reasons = Counter(quarantine["reason"].to_pylist())
        assert reasons["not_json"] and reasons["parse_validate"] and reasons["unreadable_scored_event"] == 2
        assert reasons["unreadable_dlq_entry"] == 1


def test_fold_killed_at_each_point_then_rerun(fold_env):
    settings = kit.settings_from(fold_env)
    produced = _produce(settings, 600)
    in_silver = produced["events"][100:130] + produced["events"][500:510]
    _silver_clicks(settings, in_silver)
    produced["in_silver"] = {e["event_id"] for e in in_silver}

    for point, batch in (("before_commit", 2), ("between_tables", 1), ("during_write", 2), ("after_commit", 1)):
        proc = _fold(fold_env, ("SHOPFLOW_FOLD__CRASH_AT", point), ("SHOPFLOW_FOLD__CRASH_BATCH", str(batch)))
        code, _, err = _finish(proc)
        assert code == -9, f"{point}: expected a kill -9, got {code}: {err[-2000:]}"
        assert "test hook: kill -9" in err or point == "during_write", err[-2000:]
        _check_consistent(settings, produced, complete=False)
        stream_path = stream_table_path(settings)
        log = [p.name for p in (stream_path / "_delta_log").glob("*.json")]
        files = list(stream_path.glob("*.parquet"))
        print(
            f"after kill at {point}: stream table v{len(log) - 1}, {read_arrow(stream_path).num_rows} rows, "
            f"{len(files) - len(open_table(stream_path).file_uris())} data files no commit names"
        )

    code, result, err = _finish(_fold(fold_env))
    assert code == 0, err[-3000:]
    _check_consistent(settings, produced, complete=True)
    assert result["rows_folded"] > 0 and result["versions_written"]
    from jobs.fold import committed_offsets

    assert committed_offsets(settings) == {
        f"{topic}[{p}]": n for topic, counts in produced["counts"].items() for p, n in counts.items()
    }
    # A second run finds nothing new, and more events are folded incrementally.
    code, again, err = _finish(_fold(fold_env))
    assert code == 0 and again["rows_folded"] == 0 and again["records_read"] == 0, err[-2000:]
    more = _produce(settings, 200, start=600)
    code, third, err = _finish(_fold(fold_env))
    assert code == 0, err[-2000:]
    assert third["rows_folded"] == 200, third
    metrics = sorted((Path(fold_env["SHOPFLOW_METRICS_DIR"])).glob("jobs.fold-*.json"))
    assert json.loads(metrics[-1].read_text())["counts"]["rows_folded"] == 200
    assert more["ids"][0] in read_arrow(stream_table_path(settings)).column("event_id").to_pylist()


def test_two_folds_in_one_group_at_once(fold_env):
    settings = kit.settings_from(fold_env)
    produced = _produce(settings, 3000)
    produced["in_silver"] = set()
    procs = [_fold(fold_env, batch=100) for _ in range(2)]
    outcomes = [_finish(p, timeout=300) for p in procs]
    for code, _, err in outcomes:
        assert code == 0, err[-3000:]
    try:
        _check_consistent(settings, produced, complete=True)
    except AssertionError as exc:
        logs = "\n\n".join(
            f"--- fold {i} ---\n" + "\n".join(line for line in err.splitlines() if "jobs.fold" in line)[-6000:]
            for i, (_, _, err) in enumerate(outcomes)
        )
        raise AssertionError(f"{exc}\n{logs}") from exc
    results = [r for _, r, _ in outcomes]
    assert sum(r["rows_folded"] for r in results) == 3000
    print("two folds:", [(sorted(r["partitions"]), r["rows_folded"], r["conflicts_retried"]) for r in results])


# ------------------------------------------- the Delta side alone (shared.delta_merge)


def _rows(ids: list[str], day: int) -> pa.Table:

    return pa.Table.from_pylist(
        [
            {**_event(i), "event_id": eid, "ts": T0 + timedelta(days=day, seconds=i), "_offset": i}
            for i, eid in enumerate(ids)
        ],
        schema=STREAM_SCHEMA,
    )


def test_insert_new_rows_skips_history_and_stores_offsets_alone(tmp_path):
    from shared.delta import AppTxn
    from shared.delta_merge import ensure_table, insert_new_rows

    path = tmp_path / "t"
    ensure_table(path, STREAM_SCHEMA)
    for day in range(5):
        insert_new_rows(
            open_table(path),
            _rows([f"d{day}-{i}" for i in range(50)], day),
            key="event_id",
            range_column="ts",
            txns=[AppTxn("fold:x:0", day + 1)],
        )
    merge = insert_new_rows(
        open_table(path),
        _rows(["d4-0", "d4-1", "new"], 4),
        key="event_id",
        range_column="ts",
        txns=[AppTxn("fold:x:0", 6)],
    )
    assert merge.inserted == 1 and merge.files_skipped == 4 and merge.files_scanned == 1
    # Nothing new: the offsets are still committed, alone.
    again = insert_new_rows(
        open_table(path), _rows(["d4-0"], 4), key="event_id", range_column="ts", txns=[AppTxn("fold:x:0", 7)]
    )
    assert again.inserted == 0 and again.version == merge.version + 1
    assert open_table(path).transaction_version("fold:x:0") == 7
    assert read_arrow(path).num_rows == 251


def test_concurrent_commits_of_one_partition_conflict(tmp_path):
    from shared.delta import AppTxn
    from shared.delta_merge import ensure_table, insert_new_rows
    from shared.errors import ConcurrentCommitError

    path = tmp_path / "t"
    ensure_table(path, STREAM_SCHEMA)
    first, second = open_table(path), open_table(path)
    insert_new_rows(first, _rows(["a"], 0), key="event_id", range_column="ts", txns=[AppTxn("fold:x:0", 1)])
    with pytest.raises(ConcurrentCommitError):  # same app id: the second fold must re-read
        insert_new_rows(second, _rows(["b"], 9), key="event_id", range_column="ts", txns=[AppTxn("fold:x:0", 1)])
    other = open_table(path)
    insert_new_rows(open_table(path), _rows(["c"], 20), key="event_id", range_column="ts", txns=[AppTxn("fold:x:1", 1)])
    # other partitions, other event times: no conflict
    insert_new_rows(other, _rows(["d"], 30), key="event_id", range_column="ts", txns=[AppTxn("fold:x:2", 1)])
    assert sorted(read_arrow(path).column("event_id").to_pylist()) == ["a", "c", "d"]


def _recreate_topics(settings) -> None:
    from kafka.admin import KafkaAdminClient

    from stream.broker import ensure_topics, list_topics
    from stream.topics import TopicSpec

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    try:
        admin.delete_topics([settings.kafka.scored_topic, settings.kafka.dlq_topic])
    finally:
        admin.close()
    kit.wait_for(
        lambda: settings.kafka.scored_topic not in list_topics(settings.kafka.bootstrap_servers),
        30,
        what="the topics deleted",
    )
    ensure_topics(
        settings.kafka.bootstrap_servers,
        [TopicSpec(settings.kafka.scored_topic, PARTITIONS), TopicSpec(settings.kafka.dlq_topic, PARTITIONS)],
    )


def test_a_recreated_topic_is_folded_again_from_its_start(fold_env):
    """The embedded broker keeps topics in memory: after a restart the offsets begin at 0
    again. The new events must be folded whether the new log ends below what Delta says
    was folded or has already grown past it: the topic's id tells the two topics apart."""
    settings = kit.settings_from(fold_env)
    topic = settings.kafka.scored_topic
    first = _produce(settings, 200)
    code, _, err = _finish(_fold(fold_env))
    assert code == 0, err[-2000:]
    _recreate_topics(settings)
    second = _produce(settings, 40, start=1000)  # fewer records than before: offsets end below the folded ones
    code, result, err = _finish(_fold(fold_env))
    assert code == 0, err[-2000:]
    assert "recreated" in err, err[-2000:]
    ids = read_arrow(stream_table_path(settings)).column("event_id").to_pylist()
    assert sorted(ids) == sorted(first["ids"] + second["ids"])
    stream = open_table(stream_table_path(settings))
    assert {p: stream.transaction_version(f"fold:{topic}:{p}") for p in range(PARTITIONS)} == dict(
        second["counts"][topic]
    )

    _recreate_topics(settings)
    third = _produce(settings, 120, start=2000)  # more records than Delta's offsets: the log grew past them
    assert all(third["counts"][topic][p] > second["counts"][topic][p] for p in range(PARTITIONS))
    code, result, err = _finish(_fold(fold_env))
    assert code == 0, err[-2000:]
    ids = read_arrow(stream_table_path(settings)).column("event_id").to_pylist()
    assert sorted(ids) == sorted(first["ids"] + second["ids"] + third["ids"])
    assert "topic id changed" in err, err[-2000:]
    stream = open_table(stream_table_path(settings))
    assert {p: stream.transaction_version(f"fold:{topic}:{p}") for p in range(PARTITIONS)} == dict(
        third["counts"][topic]
    )


# ------------------------------------------- a lake written before rows kept their version

_TS = pa.timestamp("us", tz="UTC")
# The folded tables' schemas as the fold wrote them before `_wire_version`, copied literally.
OLD_STREAM_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("session_id", pa.string()),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("event_type", pa.string(), nullable=False),
        pa.field("ts", _TS, nullable=False),
        pa.field("query", pa.string()),
        pa.field("category_id", pa.string()),
        pa.field("source", pa.string()),
        pa.field("_batch_id", pa.string()),
        pa.field("model_name", pa.string()),
        pa.field("model_version", pa.string()),
        pa.field("score", pa.float64()),
        pa.field("received_at", _TS),
        pa.field("scored_at", _TS),
        pa.field("_topic", pa.string()),
        pa.field("_partition", pa.int64()),
        pa.field("_offset", pa.int64()),
        pa.field("_folded_at", _TS),
    ]
)
OLD_QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field(name, type_)
        for name, type_ in (
            ("source_table", pa.string()),
            ("reason", pa.string()),
            ("detail", pa.string()),
            ("record", pa.string()),
            ("_source", pa.string()),
            ("_batch_id", pa.string()),
            ("_row_number", pa.int64()),
            ("step", pa.string()),
            ("reason_code", pa.string()),
            ("raw_size", pa.int64()),
            ("raw_sha256", pa.string()),
            ("raw_truncated", pa.bool_()),
            ("source_topic", pa.string()),
            ("source_partition", pa.int64()),
            ("source_offset", pa.int64()),
            ("failed_at", _TS),
            ("dedupe_key", pa.string()),
            ("key_offset", pa.int64()),
            ("_topic", pa.string()),
            ("_partition", pa.int64()),
            ("_offset", pa.int64()),
            ("_folded_at", _TS),
        )
    ]
)


def _v1_scored(i: int) -> bytes:
    """A scored event as the worker wrote it before wire versions, byte for byte."""
    return (
        f'{{"event_id":"v1-{i}","user_id":"p1","session_id":null,"item_id":"i1","event_type":"view",'
        f'"ts":"2017-11-25T11:00:{i:02d}.000Z","query":null,"category_id":"c1","model_name":"propensity",'
        f'"model_version":"3","received_at":"2017-11-25T11:00:{i:02d}.005Z",'
        f'"scored_at":"2017-11-25T11:00:{i:02d}.009Z","score":0.25}}'
    ).encode()


def _v1_dlq(i: int) -> bytes:
    """A dead-letter entry as the worker wrote it before wire versions, byte for byte."""
    return (
        f'{{"raw":"bad-{i}","raw_encoding":"latin-1","raw_truncated":false,"reasons":["not JSON"],'
        f'"step":"parse_validate","reason_code":"not_json","source":{{"topic":"clicks","partition":0,'
        f'"offset":{500 + i}}},"failed_at":"2017-11-25T11:00:00.000Z","raw_size":{5 + len(str(i))},'
        f'"raw_sha256":"{hashlib.sha256(f"bad-{i}".encode()).hexdigest()}"}}'
    ).encode()


def test_tables_written_before_wire_versions_evolve_in_place(fold_env):
    """Tables of the schemas before `_wire_version` and `raw_hmac_sha256` gain both columns
    in place; entries of every version are folded redacted, with keyed hashes only."""
    from kafka import KafkaProducer

    from shared.contract import WIRE_VERSION
    from shared.contract.dead_letter import dlq_entry
    from shared.contract.folded import QUARANTINE_SCHEMA, WIRE_VERSION_COLUMN
    from shared.contract.scored import ScoredBatch
    from shared.redaction import Redactor

    settings = kit.settings_from(fold_env)
    redactor = Redactor(settings.pseudonymization_key.get_secret_value().encode())
    stream_path, quarantine_path = stream_table_path(settings), quarantine_table_path(settings)
    # The lake as the fold left it before: one folded event, one dead letter, today's schemas.
    old_event = {**_event(0), "event_id": "old-0", "source": "stream", "_batch_id": "old"}
    old_event.update(_topic="old.scored", _partition=0, _offset=0, _folded_at=T0)
    write_arrow(pa.Table.from_pylist([old_event], schema=OLD_STREAM_SCHEMA), stream_path, mode="append")
    old_dead = {"source_table": "stream", "reason": "not_json", "dedupe_key": "input:clicks[0]@1", "key_offset": 1}
    write_arrow(pa.Table.from_pylist([old_dead], schema=OLD_QUARANTINE_SCHEMA), quarantine_path, mode="append")
    # The topics hold records of both versions: written before the change, and after it.
    batch = ScoredBatch("propensity", "4", T0, T0)
    scored = [_v1_scored(i) for i in range(5)] + [
        batch.value({**_event(i), "event_id": f"v2-{i}"}, 0.5) for i in range(5)
    ]
    dead = [_v1_dlq(i) for i in range(3)] + [
        dlq_entry(
            b"bad",
            ["not JSON"],
            redactor=redactor,
            step="parse_validate",
            reason_code="not_json",
            topic="clicks",
            partition=1,
            offset=900 + i,
            failed_at=T0,
            max_raw_bytes=settings.stream.dlq_max_raw_bytes,
        )
        for i in range(3)
    ]
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    for topic, values in ((settings.kafka.scored_topic, scored), (settings.kafka.dlq_topic, dead)):
        for i, value in enumerate(values):
            producer.send(topic, partition=i % PARTITIONS, value=value)
    producer.flush(30)
    producer.close()

    code, result, err = _finish(_fold(fold_env))
    assert code == 0, err[-3000:]
    assert result["rows_folded"] == 10 and result["dlq_rows"] == 6 and result["unreadable"] == 0, result

    stream = read_arrow(stream_path)
    assert stream.schema.names == STREAM_SCHEMA.names  # the column was added in place, at the end
    versions = dict(zip(stream["event_id"].to_pylist(), stream[WIRE_VERSION_COLUMN].to_pylist()))
    assert versions == {
        "old-0": None,
        **{f"v1-{i}": 1 for i in range(5)},
        **{f"v2-{i}": WIRE_VERSION for i in range(5)},
    }
    quarantine = read_arrow(quarantine_path)
    assert quarantine.schema.names == QUARANTINE_SCHEMA.names
    by_key = dict(zip(quarantine["dedupe_key"].to_pylist(), quarantine[WIRE_VERSION_COLUMN].to_pylist()))
    assert by_key == {
        "input:clicks[0]@1": None,
        **{f"input:clicks[0]@{500 + i}": 1 for i in range(3)},
        **{f"input:clicks[1]@{900 + i}": WIRE_VERSION for i in range(3)},
    }
    rows = {r["dedupe_key"]: r for r in quarantine.to_pylist()}
    assert all(r["raw_sha256"] is None for r in rows.values())  # no unkeyed hash is written
    assert rows["input:clicks[0]@1"]["raw_hmac_sha256"] is None  # the old row reads the new column as null
    for i in range(3):
        old, new = rows[f"input:clicks[0]@{500 + i}"], rows[f"input:clicks[1]@{900 + i}"]
        assert old["raw_hmac_sha256"] == redactor.keyed_hash(f"bad-{i}".encode())  # redacted as it was folded
        assert json.loads(old["record"]) == redactor.click_value(f"bad-{i}".encode())
        assert new["raw_hmac_sha256"] == redactor.keyed_hash(b"bad")
        assert json.loads(new["record"]) == redactor.click_value(b"bad")
    # Both tables keep working: a second run finds nothing new.
    code, again, err = _finish(_fold(fold_env))
    assert code == 0 and again["records_read"] == 0, err[-2000:]
