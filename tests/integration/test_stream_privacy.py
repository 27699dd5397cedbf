"""Raw identifiers stop at the input topic, for rejected records too: on the real worker,
broker, fold and Delta, records rejected for every click-rule reason code, whose personal
fields (user and session ids) hold raw e-mail addresses and names, and accepted events
holding them too, leave no raw identifier in the dead-letter topic, the scored topic, the
session changelog, the worker's log or metrics page, or any file under the lake."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from shared.click_rules import REASON_CODES, ClickRejected, check_click_bytes
from shared.contract.folded import quarantine_table_path, stream_table_path
from shared.delta import read_arrow
from shared.pseudonymize import pseudonymize
from shared.schemas import to_wire
from tests.integration import kit
from tests.integration.support.privacy import identifiers_in_files

pytestmark = pytest.mark.integration

EMAIL = "zelda.quartermain@example.org"
NAME = "Zelda Quartermain"
SESSION_EMAIL = "quartermain.session@example.net"
SESSION_NAME = "Ophelia Brightwater"
OTHER_EMAIL = "brightwater.other@example.com"  # in unknown fields and unparseable values
# The accepted events' senders.
GOOD_EMAIL = "ulysses.goodwright@example.org"
GOOD_NAME = "Ulysses Goodwright"
IDENTIFIERS = (EMAIL, NAME, SESSION_EMAIL, SESSION_NAME, OTHER_EMAIL, GOOD_EMAIL, GOOD_NAME)
# Each identifier and the names in them (a prefix of an id is as bad), case-insensitively.
NAMES = ("zelda", "quartermain", "ophelia", "brightwater", "ulysses", "goodwright")
NEEDLES = sorted({i.encode() for i in IDENTIFIERS} | {n.encode() for n in NAMES})
TS = "2017-11-26T01:00:00Z"


def _event(i: int, user: str, session: str | None, **over) -> dict:
    return {
        "event_id": f"priv-{i}",
        "user_id": user,
        "session_id": session,
        "item_id": "4625350",
        "event_type": "view",
        "ts": TS,
        "query": None,
        "category_id": "7",
        **over,
    }


def _json(event: dict) -> bytes:
    return json.dumps(event).encode()


# One record per click-rule reason code: personal fields hold e-mail addresses and names.
REJECTED: dict[str, bytes] = {
    "not_utf8": b"\xff" + _json(_event(1, EMAIL, SESSION_NAME, note=OTHER_EMAIL)),
    "not_json": f"{EMAIL},{SESSION_NAME},4625350,pv,{OTHER_EMAIL}".encode(),
    "missing_field": _json({"user_id": NAME, "session_id": SESSION_EMAIL, "item_id": "1", "event_type": "view"}),
    "blank_id": _json(_event(3, EMAIL, SESSION_NAME, item_id="   ")),
    "bad_type": _json(_event(4, NAME, SESSION_EMAIL, item_id=4625350)),
    "too_long": _json(_event(5, EMAIL, SESSION_NAME, query="q" * 5000)),
    "unknown_event_type": _json(_event(6, NAME, SESSION_EMAIL, event_type="teleport")),
    "bad_timestamp": _json(_event(7, EMAIL, SESSION_NAME, ts="yesterday")),
    "unknown_field": _json(_event(8, NAME, SESSION_EMAIL, **{OTHER_EMAIL: NAME, "contact": f"{NAME} <{EMAIL}>"})),
}
GOOD = [_event(100 + i, GOOD_EMAIL if i % 2 else GOOD_NAME, SESSION_NAME if i % 3 else GOOD_EMAIL) for i in range(6)]


def _legacy_entry() -> bytes:
    """A dead letter as workers wrote it before entries were redacted (wire version 2)."""
    raw = REJECTED["unknown_event_type"]
    return _json(
        {
            "wire_version": 2,
            "raw": raw.decode("latin-1"),
            "raw_encoding": "latin-1",
            "raw_truncated": False,
            "reasons": [f"event_type: 'teleport' is not one of view ({NAME})"],
            "step": "parse_validate",
            "reason_code": "unknown_event_type",
            "source": {"topic": "clicks", "partition": 0, "offset": 999},
            "failed_at": "2017-11-26T01:00:00.000Z",
            "raw_size": len(raw),
            "raw_sha256": "00" * 32,
        }
    )


def _send_to(settings, topic: str, values: list[bytes]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    try:
        for value in values:
            producer.send(topic, value=value)
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=5)


def _fold(env: dict) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "jobs.fold"],
        cwd=kit.REPO_ROOT,
        env={**os.environ, **env, "PYTHONPATH": str(kit.REPO_ROOT), "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _found(label: str, text: bytes | str) -> list[tuple[bytes, str]]:
    blob = (text.encode() if isinstance(text, str) else text).lower()
    return [(needle, label) for needle in NEEDLES if needle.lower() in blob]


def test_rejected_and_accepted_records_leave_no_raw_identifier_anywhere(stream_env, tmp_path):
    from stream.topics import changelog_topic

    # The records have the reason codes they stand for (the test covers every one).
    for code, raw in REJECTED.items():
        with pytest.raises(ClickRejected) as rejected:
            check_click_bytes(raw)
        assert rejected.value.code == code, (code, rejected.value.reasons)
    assert set(REJECTED) == set(REASON_CODES)

    env = {
        **stream_env,
        "SHOPFLOW_LAKE__ROOT": str(tmp_path / "lake"),
        "SHOPFLOW_METRICS_DIR": str(tmp_path / "metrics"),
        "SHOPFLOW_FOLD__GROUP_ID": f"privacy-fold-{uuid.uuid4().hex[:8]}",
    }
    settings = kit.settings_from(env)
    port = int(env["SHOPFLOW_STREAM__METRICS_PORT"])
    log_path = tmp_path / "worker.log"
    worker = kit.start_worker(env, log_path)
    try:
        kit.wait_serving(port, worker)
        # The rejected ones first, on the good ones' partition, so they are handled before.
        kit.send_raw(settings, [(b"k", raw) for raw in REJECTED.values()] + [(b"k", to_wire(e)) for e in GOOD])
        scored = kit.read_topic(settings, settings.kafka.scored_topic, expect=len(GOOD), timeout=90)
        dead = kit.read_topic(settings, settings.kafka.dlq_topic, expect=len(REJECTED), timeout=60)
        changelog = kit.read_topic(settings, changelog_topic(settings), expect=1, timeout=30)
        page = kit.metrics_text(port)
        assert worker.poll() is None, "the worker must still be running"
    finally:
        kit.stop_worker(worker)

    # What went through: every record is accounted for (so this test can fail).
    entries = kit.json_values(dead)
    assert sorted(e["reason_code"] for e in entries) == sorted(REJECTED)
    assert {json.loads(v)["event_id"] for _, v in scored} == {e["event_id"] for e in GOOD}
    assert changelog, "the session changelog was written"

    # An entry left in the topic from before entries were redacted: the fold redacts it.
    _send_to(settings, settings.kafka.dlq_topic, [_legacy_entry()])
    result = _fold(env)
    assert result["dlq_rows"] == len(REJECTED) + 1 and result["rows_folded"] == len(GOOD), result

    found = []
    found += _found(settings.kafka.dlq_topic, b"\n".join(v for _, v in dead))
    found += _found(settings.kafka.scored_topic, b"\n".join(v for _, v in scored))
    found += _found(changelog_topic(settings), b"\n".join((k or b"") + b" " + (v or b"") for k, v in changelog))
    found += _found("worker log", log_path.read_bytes())
    found += _found("metrics page", page)
    lake_files = [f for f in (tmp_path / "lake").rglob("*") if f.is_file()]
    assert any(f.parent.name == "_delta_log" for f in lake_files) and any(f.suffix == ".parquet" for f in lake_files)
    found += [(needle, str(f)) for needle, f in identifiers_in_files(lake_files, NEEDLES)]
    assert not found, f"raw identifiers found: {found}"

    # ...while the rows carrying them went through, pseudonymized.
    key = settings.pseudonymization_key.get_secret_value().encode()
    quarantine = read_arrow(quarantine_table_path(settings)).to_pylist()
    assert len(quarantine) == len(REJECTED) + 1 and all(r["raw_sha256"] is None for r in quarantine)
    users = {json.loads(r["record"]).get("record", {}).get("user_id") for r in quarantine if r["record"]}
    assert {pseudonymize(EMAIL, "user", key=key), pseudonymize(NAME, "user", key=key)} <= users
    stream = read_arrow(stream_table_path(settings)).to_pylist()
    assert {r["user_id"] for r in stream} == {pseudonymize(u, "user", key=key) for u in (GOOD_EMAIL, GOOD_NAME)}
