"""Replay the Taobao / Diginetica click logs onto the `clicks` topic as CLICK_EVENTs.

    shopflow replay --source taobao --speed 20           # 20x the recorded pace
    shopflow replay --source taobao --speed max --limit 5000
    shopflow replay --source diginetica --speed 1        # real time

Events are keyed by user id (so one user's events stay in order on one partition) and
sent in (ts, event_id) order, the order the batch layer folds sessions in. An event's id
is `shared.schemas.click_event_id` of its source and raw fields, keyed with the
pseudonymization key of the settings: the same id the batch clean job gives the same
row, so a replayed file and the cleaned file share ids and the fold back into Delta
drops the repeats.
"""

from __future__ import annotations

import csv
import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

from shared.click_sources import (
    ANONYMOUS_USER_PREFIX,
    DIGINETICA_ANONYMOUS_USER,
    DIGINETICA_CATEGORIES_FILE,
    DIGINETICA_VIEWS_FILE,
    DIGINETICA_VIEWS_RAW,
    DIGINETICA_VIEWS_SOURCE,
    TAOBAO_BEHAVIOR,
    TAOBAO_FILE,
    TAOBAO_SOURCE,
)
from shared.errors import BrokerError, SourceReadError
from shared.options import option, start_job
from shared.schemas import click_event_id, to_wire
from shared.settings import Settings, get_settings

log = logging.getLogger(__name__)

Source = Literal["taobao", "diginetica"]


@dataclass(frozen=True)
class MalformedRow:
    """A line of a source file that is not a click. Replay still sends its raw bytes, so
    the worker dead-letters it with a reason instead of the row vanishing here."""

    raw: str
    where: str
    error: str


def _taobao(path: Path, key: bytes) -> Iterator[dict[str, Any] | MalformedRow]:
    with path.open("r", encoding="ascii", newline="") as fh:
        for number, line in enumerate(fh, start=1):
            raw = line.rstrip("\r\n")
            if not raw:
                continue
            parts = raw.split(",")
            if len(parts) != 5 or parts[3] not in TAOBAO_BEHAVIOR or not parts[4].isdigit():
                yield MalformedRow(raw, f"{path.name}:{number}", "not a Taobao UserBehavior row")
                continue
            user, item, category, behavior, ts = parts
            yield {
                "event_id": click_event_id(TAOBAO_SOURCE, parts, key=key),
                "user_id": user,
                "session_id": None,
                "item_id": item,
                "event_type": TAOBAO_BEHAVIOR[behavior],
                "ts": datetime.fromtimestamp(int(ts), tz=timezone.utc),
                "query": None,
                "category_id": category,
            }


def _diginetica(path: Path, categories_path: Path, key: bytes) -> Iterator[dict[str, Any] | MalformedRow]:
    categories: dict[str, str] = {}
    if categories_path.exists():
        with categories_path.open("r", encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh, delimiter=";"):
                categories[row["itemId"]] = row["categoryId"]
    with path.open("r", encoding="utf-8", newline="") as fh:
        header = fh.readline().rstrip("\r\n").split(";")
        if tuple(header) != DIGINETICA_VIEWS_RAW:
            raise SourceReadError(f"{path}: unexpected header {header}")
        for number, line in enumerate(fh, start=2):
            raw = line.rstrip("\r\n")
            if not raw:
                continue
            fields = raw.split(";")
            if len(fields) != 5 or not all(fields[i] for i in (0, 2)):
                yield MalformedRow(
                    raw, f"{path.name}:{number}", "expected 5 ';'-separated fields with session and item ids"
                )
                continue
            session, user, item, timeframe, eventdate = fields
            try:
                ts = datetime.combine(
                    date.fromisoformat(eventdate), datetime.min.time(), tzinfo=timezone.utc
                ) + timedelta(milliseconds=int(timeframe))
            except ValueError:
                yield MalformedRow(raw, f"{path.name}:{number}", "bad eventdate/timeframe")
                continue
            yield {
                "event_id": click_event_id(DIGINETICA_VIEWS_SOURCE, fields, key=key),
                # Anonymous views (user NA) are keyed by their session: it is all we know.
                "user_id": user if user != DIGINETICA_ANONYMOUS_USER else f"{ANONYMOUS_USER_PREFIX}{session}",
                "session_id": session,
                "item_id": item,
                "event_type": "view",
                "ts": ts,
                "query": None,
                "category_id": categories.get(item),
            }


def _key(key: bytes | None) -> bytes:
    """The pseudonymization key event ids are keyed with (default: the settings')."""
    return key if key is not None else get_settings().pseudonymization_key.get_secret_value().encode("utf-8")


def read_source(
    source: Source, data_root: Path, *, key: bytes | None = None
) -> tuple[list[dict[str, Any]], list[MalformedRow]]:
    """A source's events as typed CLICK_EVENT dicts sorted by (ts, event_id), and its
    malformed lines in file order. `key`: the pseudonymization key the event ids are
    keyed with, the batch clean job's (default: the settings')."""
    try:
        if source == "taobao":
            rows = list(_taobao(data_root / TAOBAO_FILE, _key(key)))
        else:
            rows = list(
                _diginetica(data_root / DIGINETICA_VIEWS_FILE, data_root / DIGINETICA_CATEGORIES_FILE, _key(key))
            )
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceReadError(f"cannot read the {source} data under {data_root}: {exc}") from exc
    events = [r for r in rows if not isinstance(r, MalformedRow)]
    malformed = [r for r in rows if isinstance(r, MalformedRow)]
    events.sort(key=lambda e: (e["ts"], e["event_id"]))
    return events, malformed


def load_events(
    source: Source, data_root: Path, limit: int | None = None, *, key: bytes | None = None
) -> list[dict[str, Any]]:
    """A source's well-formed events, sorted by (ts, event_id); malformed lines are logged."""
    events, malformed = read_source(source, data_root, key=key)
    for row in malformed:
        log.warning("%s: %s: %r", row.where, row.error, row.raw)
    return events[:limit] if limit is not None else events


def replay(
    events: list[dict[str, Any]],
    settings: Settings,
    *,
    speed: float | None,
    progress: bool = True,
    malformed: list[MalformedRow] = (),
) -> int:
    """Send events to the clicks topic; `speed` None = as fast as possible, else N x real time.

    Malformed source lines go first, as their raw bytes with no key: the worker's validation
    sends them to the dead-letter topic with the reason, so nothing in the file is lost.
    """
    from kafka import KafkaProducer
    from kafka.errors import KafkaError
    from tqdm import tqdm

    try:
        producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all", linger_ms=5)
    except KafkaError as exc:
        raise BrokerError(
            f"cannot reach Kafka at {settings.kafka.bootstrap_servers}: {exc}; start it with `shopflow broker start`"
        ) from exc
    topic = settings.kafka.clicks_topic
    sent = 0
    started = time.monotonic()
    first_ts = events[0]["ts"] if events else None
    try:
        for row in malformed:
            producer.send(topic, key=None, value=row.raw.encode("utf-8"))
            sent += 1
        for event in tqdm(events, unit="ev", disable=not progress, desc=f"replay -> {topic}"):
            if speed:
                due = started + (event["ts"] - first_ts).total_seconds() / speed
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            producer.send(topic, key=event["user_id"].encode("utf-8"), value=to_wire(event))
            sent += 1
        producer.flush(timeout=60)
    except KafkaError as exc:
        raise BrokerError(f"replay to {topic} failed after {sent} events: {exc}") from exc
    finally:
        producer.close(timeout=10)
    return sent


def replay_speed(text: str) -> float | None:
    """'max' -> None (as fast as possible); '20' -> 20.0 times the recorded pace."""
    if text == "max":
        return None
    try:
        speed = float(text)
    except ValueError:
        speed = float("nan")
    if not speed > 0 or speed == float("inf"):
        raise ValueError(f"{text!r} is not 'max' or a positive multiple of real time")
    return speed


@dataclass(frozen=True)
class ReplayOptions:
    source: str = option("taobao", help="the click log to replay", choices=("taobao", "diginetica"))
    speed: str = option(
        "1", help="'max' (as fast as possible) or a multiple of real time, e.g. 1, 20", check=replay_speed
    )
    limit: int | None = option(None, help="send at most this many events", ge=1)
    progress: bool = option(True, help="show a progress bar")


def main(argv: list[str] | None = None) -> int:
    args, settings = start_job(ReplayOptions, argv, prog="shopflow replay", doc=__doc__)
    logging.getLogger("kafka").setLevel(logging.WARNING)
    speed = replay_speed(args.speed)
    try:
        key = settings.pseudonymization_key.get_secret_value().encode("utf-8")
        events, malformed = read_source(args.source, settings.data_root, key=key)
        if args.limit is not None:
            events = events[: args.limit]
        for row in malformed:
            log.warning("%s: %s (sent as is; the worker dead-letters it): %r", row.where, row.error, row.raw)
        sent = replay(events, settings, speed=speed, progress=args.progress, malformed=malformed)
    except (SourceReadError, BrokerError) as exc:
        print(f"shopflow replay: {exc}", file=sys.stderr)
        return 1
    print(
        f"sent {sent} {args.source} records to {settings.kafka.clicks_topic} "
        f"({len(malformed)} malformed lines among them, for the dead-letter topic)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
