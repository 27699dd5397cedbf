"""The click-event rules, defined once: the stream validator and batch cleaning apply them.

One event, one verdict: the worker's `parse_validate` runs `check_click_bytes` on each
Kafka value, and batch cleaning runs `check_click_columns` (through a pandas UDF) on each
candidate row built from a click log, so both paths reject the same events with the same
reason code (proved by tests/integration/test_click_rules_parity.py).

    from shared.click_rules import check_click_bytes, ClickRejected
    try:
        event = check_click_bytes(raw)          # typed CLICK_EVENT dict
    except ClickRejected as exc:
        exc.code, exc.reasons                   # "blank_id", ["user_id: blank"]

Reason codes, in the order that picks the primary one when a record has several problems.
They are also the batch quarantine's `reason` (batch adds `malformed_row` before these and
`duplicate` after them):

  not_utf8            bytes that are not UTF-8, or text with a lone surrogate
  not_json            not JSON, or JSON that is not an object
  missing_field       a required field absent, null or ""
  blank_id            an id that is only whitespace
  bad_type            a JSON value of the wrong type (an integer where a string is declared)
  too_long            an id over 128 characters, a query over 1024
  unknown_event_type  an event type outside CLICK_EVENT's list
  bad_timestamp       unreadable, without a time zone, or outside 2000-01-01 .. now + 1 day
  unknown_field       a field CLICK_EVENT does not declare

No reason text quotes a sender's value, nor the name of a field the sender made up: a
reason says which declared field is wrong and how (its type, its length, how many
unknown fields), since reasons are written to the dead-letter topic and the quarantine.

Rules, so both paths read them the same way:
- A field declared as a string must be a JSON string: integers are rejected, not coerced.
- user_id and item_id lose surrounding spaces (batch has always trimmed them).
- A time is read by `shared.schemas.parse_timestamp` (the one reader of times, readers of
  the lake's inputs use it too): ISO-8601 with an offset, or an epoch number, seconds
  below 10^11 and milliseconds from there on (`schemas.EPOCH_MILLIS_FROM`: 10^11 seconds
  is the year 5138 and 10^11 ms is 1973-03-03, both outside the accepted range, so the
  unit is never ambiguous for an accepted event). The bounds above are the rules' own.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from shared.errors import ValidationError
from shared.schemas import CLICK_EVENT, MAX_ID_LENGTH, MAX_QUERY_LENGTH, FieldSpec, NoTimeZoneError, parse_timestamp

REASON_CODES: tuple[str, ...] = (
    "not_utf8",
    "not_json",
    "missing_field",
    "blank_id",
    "bad_type",
    "too_long",
    "unknown_event_type",
    "bad_timestamp",
    "unknown_field",
)
EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)
MAX_FUTURE = timedelta(days=1)
# Fields whose value identifies something: whitespace alone is no id.
ID_FIELDS = frozenset({"event_id", "user_id", "session_id", "item_id", "category_id"})
TRIMMED_FIELDS = frozenset({"user_id", "item_id"})
EXCERPT_CHARS = 200
_KNOWN_FIELDS = frozenset(CLICK_EVENT.names)
# JSON values orjson and the standard library read alike (see decode_click_json).
_EXACT_JSON_TYPES = frozenset({str, int, bool, type(None)})


def excerpt(value: Any, limit: int = EXCERPT_CHARS) -> str:
    """A bounded, escaped excerpt of a value for messages and logs (never the whole value).

    Not for a sender's values in reasons: those say what is wrong (`_shape`), never quote.
    """
    text = ascii(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _shape(value: Any) -> str:
    """What a sender's value is without any of its content: its type and size."""
    if isinstance(value, str):
        return f"text of {len(value)} characters"
    return type(value).__name__


@dataclass(frozen=True)
class Problem:
    code: str
    message: str


class ClickRejected(ValidationError):
    """A click event the rules reject; `code` is the primary reason code, `problems` all."""

    def __init__(self, problems: list[Problem]) -> None:
        ordered = sorted(problems, key=lambda p: REASON_CODES.index(p.code))
        self.problems = ordered
        self.code = ordered[0].code
        messages = [p.message for p in ordered]
        super().__init__("; ".join(messages), messages)


def _has_surrogate(text: str) -> bool:
    if text.isascii():  # the common case, and far cheaper than encoding
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _check_timestamp(value: Any, now: datetime) -> tuple[datetime | None, Problem | None]:
    """The event time read by `parse_timestamp`, then held to EARLIEST .. now + MAX_FUTURE."""
    name = "ts"
    # Before reading it: a lone surrogate is a not_utf8 problem wherever it is, and
    # datetime.fromisoformat accepts any character between the date and the time.
    if isinstance(value, str) and _has_surrogate(value):
        return None, Problem("not_utf8", f"{name}: not valid Unicode (lone surrogate)")
    try:
        parsed = parse_timestamp(value)
    except TypeError as exc:
        return None, Problem("bad_type", f"{name}: {exc}")
    except NoTimeZoneError:
        return None, Problem("bad_timestamp", f"{name}: bad timestamp, no time zone ({_shape(value)})")
    except ValueError:
        return None, Problem("bad_timestamp", f"{name}: bad timestamp, unreadable ({_shape(value)})")
    latest = now + MAX_FUTURE
    if not EARLIEST <= parsed < latest:
        return None, Problem(
            "bad_timestamp",
            f"{name}: bad timestamp, outside {EARLIEST.date()} .. {latest.isoformat(timespec='seconds')}",
        )
    return parsed, None


@dataclass(frozen=True)
class _StringRule:
    """What `_check_string` needs to know about one string field, worked out once."""

    name: str
    is_id: bool
    trimmed: bool
    limit: int
    allowed: tuple[str, ...] | None

    @classmethod
    def of(cls, spec: FieldSpec) -> _StringRule:
        return cls(
            spec.name,
            spec.name in ID_FIELDS,
            spec.name in TRIMMED_FIELDS,
            MAX_QUERY_LENGTH if spec.name == "query" else MAX_ID_LENGTH,
            spec.allowed,
        )


def _check_string(rule: _StringRule, value: Any) -> tuple[str | None, Problem | None]:
    name = rule.name
    if not isinstance(value, str):
        return None, Problem("bad_type", f"{name}: expected a string, got {type(value).__name__}")
    if _has_surrogate(value):
        return None, Problem("not_utf8", f"{name}: not valid Unicode (lone surrogate)")
    if rule.is_id and value.strip() == "":
        return None, Problem("blank_id", f"{name}: blank")
    if rule.trimmed:
        value = value.strip(" ")
    if len(value) > rule.limit:
        return None, Problem("too_long", f"{name}: longer than {rule.limit} characters ({len(value)})")
    if rule.allowed is not None and value not in rule.allowed:
        return None, Problem("unknown_event_type", f"{name}: not one of {', '.join(rule.allowed)}")
    return value, None


# CLICK_EVENT's fields in order: (name, required, its string rule, or None for the time).
_FIELD_RULES: tuple[tuple[str, bool, _StringRule | None], ...] = tuple(
    (spec.name, spec.required, None if spec.type == "timestamp" else _StringRule.of(spec))
    for spec in CLICK_EVENT.fields
)


def check_click(obj: Any, *, now: datetime | None = None) -> dict[str, Any]:
    """A decoded JSON value -> the typed CLICK_EVENT dict, or ClickRejected with every problem."""
    if not isinstance(obj, dict):
        raise ClickRejected([Problem("not_json", f"expected a JSON object, got {type(obj).__name__}")])
    now = now or datetime.now(timezone.utc)
    record: dict[str, Any] = {}
    problems: list[Problem] = []
    for name, required, rule in _FIELD_RULES:
        value = obj.get(name)
        if value is None or value == "":
            record[name] = None
            if required:
                problems.append(Problem("missing_field", f"{name}: required"))
            continue
        checked, problem = _check_timestamp(value, now) if rule is None else _check_string(rule, value)
        record[name] = checked
        if problem:
            problems.append(problem)
    if not _KNOWN_FIELDS.issuperset(obj):
        # How many, never which: a field's name is the sender's text as much as its value.
        unknown = sum(1 for k in obj if k not in _KNOWN_FIELDS)
        problems.append(Problem("unknown_field", f"unknown fields: {unknown} not in {CLICK_EVENT.name}"))
    if problems:
        raise ClickRejected(problems)
    return record


def decode_click_json(raw: bytes | bytearray | str) -> Any:
    """Kafka value bytes (or text) -> the JSON value exactly as the standard library's
    `json.loads` reads the UTF-8 text, or ClickRejected (not_utf8, not_json).

    orjson decodes first, at a fifth of the cost. Its answer is kept only where it cannot
    differ from the standard library's: an object whose values are all strings, integers,
    booleans or nulls. orjson refuses lone surrogates, NaN, Infinity and out-of-range
    floats that json accepts, and reads integers beyond 64 bits as floats; so a value
    with a float or a container, or one orjson refuses, is decoded again by the standard
    library, whose answer decides (tests/unit/test_click_rules.py holds the edge cases).
    """
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    else:
        if type(obj) is dict and _EXACT_JSON_TYPES.issuperset(map(type, obj.values())):
            return obj
    if isinstance(raw, (bytes, bytearray)):
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ClickRejected([Problem("not_utf8", f"not UTF-8: invalid byte at position {exc.start}")]) from None
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:  # its message is the parser's, its position a number
        message = f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        raise ClickRejected([Problem("not_json", message)]) from None
    except (ValueError, RecursionError) as exc:  # too many digits, too deep
        raise ClickRejected([Problem("not_json", f"not JSON: {type(exc).__name__}")]) from None


def check_click_bytes(raw: bytes | bytearray | str, *, now: datetime | None = None) -> dict[str, Any]:
    """Kafka value bytes (UTF-8 JSON) -> typed CLICK_EVENT dict, or ClickRejected."""
    return check_click(decode_click_json(raw), now=now)


# -------------------------------------------------------------------------- the batch side

#: The candidate columns batch cleaning hands to `check_click_columns`: CLICK_EVENT's
#: string fields as text, the time as an epoch number (`ts_epoch`) or, when the source
#: time is not a number, its text (`ts_text`).
CANDIDATE_COLUMNS: tuple[str, ...] = (
    "event_id",
    "user_id",
    "session_id",
    "item_id",
    "event_type",
    "category_id",
    "query",
    "ts_epoch",
    "ts_text",
)


@dataclass(frozen=True)
class Verdict:
    reason: str | None  # None: accepted
    detail: str | None
    ts_micros: int | None  # the accepted event's time, epoch microseconds UTC


def check_click_columns(row: Mapping[str, Any], *, now: datetime) -> Verdict:
    """One candidate row of a click log (see CANDIDATE_COLUMNS) -> its verdict.

    Builds the event a producer would send for that row (absent columns are absent
    fields) and applies `check_click`, so batch and stream share every rule.
    """
    event = {k: row[k] for k in CANDIDATE_COLUMNS[:7] if row.get(k) is not None}
    ts = row.get("ts_epoch")
    if ts is None:
        ts = row.get("ts_text")
    if ts is not None:
        event["ts"] = ts
    try:
        record = check_click(event, now=now)
    except ClickRejected as exc:
        return Verdict(exc.code, "; ".join(exc.reasons)[:512], None)
    delta = record["ts"] - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return Verdict(None, None, (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds)
