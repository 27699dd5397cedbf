"""The click-event and scored-event schemas, defined once.

Each schema is a tuple of `FieldSpec`s. The Spark `StructType` and the Arrow schema are
derived from it here; the Faust `Record` is derived from it in the stream package; the
rules a click event must pass are in `shared.click_rules`, which reads these fields.
Nothing else spells these fields out by hand. The wire form of a time is here too, and
the one list of what is personal (`PERSONAL_FIELDS`) with the keyed event id.

    from shared.schemas import CLICK_EVENT, parse_timestamp, to_wire
    CLICK_EVENT.spark_schema()                    # StructType for batch
    parse_timestamp("2017-11-26T09:00:00+08:00")  # -> 2017-11-26 01:00 UTC
    PERSONAL_FIELDS["session_id"]                 # -> "session" (its pseudonym namespace)
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa

from shared.pseudonymize import pseudonymize

if TYPE_CHECKING:
    from pyspark.sql.types import StructType

FieldType = Literal["string", "int32", "int64", "float64", "bool", "timestamp", "string_list"]

EVENT_TYPES: tuple[str, ...] = ("view", "add_to_cart", "favorite", "purchase", "search")
MAX_ID_LENGTH = 128
MAX_QUERY_LENGTH = 1024


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: FieldType
    required: bool = True
    allowed: tuple[str, ...] | None = None
    doc: str = ""


_ARROW_TYPES: dict[FieldType, pa.DataType] = {
    "string": pa.string(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "string_list": pa.list_(pa.string()),
}


@dataclass(frozen=True)
class RecordSchema:
    name: str
    fields: tuple[FieldSpec, ...]

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(f.name, _ARROW_TYPES[f.type], nullable=not f.required) for f in self.fields])

    def spark_schema(self) -> StructType:
        from pyspark.sql import types as T

        spark_types = {
            "string": T.StringType(),
            "int32": T.IntegerType(),
            "int64": T.LongType(),
            "float64": T.DoubleType(),
            "bool": T.BooleanType(),
            "timestamp": T.TimestampType(),
            "string_list": T.ArrayType(T.StringType()),
        }
        return T.StructType([T.StructField(f.name, spark_types[f.type], nullable=not f.required) for f in self.fields])

    def extend(self, name: str, extra: tuple[FieldSpec, ...]) -> RecordSchema:
        return RecordSchema(name, self.fields + extra)


CLICK_EVENT = RecordSchema(
    "click_event",
    (
        FieldSpec("event_id", "string", doc="Unique id; producers derive it from content"),
        FieldSpec("user_id", "string", doc="Raw on the input topic, pseudonymized after it"),
        FieldSpec("session_id", "string", required=False, doc="Source session, if any; pseudonymized like user_id"),
        FieldSpec("item_id", "string"),
        FieldSpec("event_type", "string", allowed=EVENT_TYPES),
        FieldSpec("ts", "timestamp", doc="Event time, UTC"),
        FieldSpec("query", "string", required=False, doc="Search query text"),
        FieldSpec("category_id", "string", required=False),
    ),
)

SCORED_EVENT = CLICK_EVENT.extend(
    "scored_event",
    (
        FieldSpec("model_name", "string"),
        FieldSpec("model_version", "string"),
        FieldSpec(
            "score",
            "float64",
            required=False,
            doc="P(add_to_cart or purchase of item_id) for a view; null for other events",
        ),
        FieldSpec("received_at", "timestamp", doc="When the worker read the event"),
        FieldSpec("scored_at", "timestamp", doc="When the score was produced"),
        FieldSpec(
            "item_snapshot_version",
            "int64",
            required=False,
            doc="Delta version of the item snapshot the worker enriched the event with; null: none yet",
        ),
    ),
)


# ----------------------------------------------------------------------- personal fields

#: What identifies a person, by field name, and the pseudonymization namespace of each:
#: the one list batch cleaning, the stream worker and the fold read. The names are those
#: of CLICK_EVENT and of the bronze tables (batch.sources renames the upstream headers,
#: Diginetica's userId/sessionId and UCI's CustomerID, to these). No source has an e-mail
#: column today; a sender may still put one in a rejected record. Past bronze and the
#: input topic a personal value exists only as its pseudonym (`shared.pseudonymize`);
#: a value of a field not declared by the record's schema is dropped, never kept.
PERSONAL_FIELDS: Mapping[str, str] = MappingProxyType(
    {
        "user_id": "user",
        "session_id": "session",
        "customer_id": "customer",
        "email": "email",
    }
)


def personal_columns(names: Iterable[str]) -> dict[str, str]:
    """The personal fields among `names`: name -> pseudonymization namespace, in order."""
    return {name: PERSONAL_FIELDS[name] for name in names if name in PERSONAL_FIELDS}


# ---------------------------------------------------------------------------- timestamps

#: The one unit rule for a numeric time: epoch seconds below 10^11, milliseconds from
#: there on. 10^11 seconds is the year 5138 and 10^11 ms is 1973-03-03, both outside the
#: times the click rules accept, so the unit is never ambiguous for an accepted event.
EPOCH_MILLIS_FROM = 10**11
# ISO-8601 times already parsed (a batch's events share many): text -> UTC time.
ISO_TIMES_KEPT = 4096
_ISO_TIMES: dict[str, datetime] = {}


class NoTimeZoneError(ValueError):
    """An ISO-8601 time without an offset: no zone is guessed for it."""


def epoch_to_datetime(value: int | float) -> datetime:
    """Epoch seconds or milliseconds (EPOCH_MILLIS_FROM tells them apart) -> aware UTC."""
    seconds = value if abs(value) < EPOCH_MILLIS_FROM else value / 1000.0
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def parse_timestamp(value: Any) -> datetime:
    """A time as sent on the wire -> an aware UTC datetime: ISO-8601 text with an explicit
    offset (or 'Z'), or an epoch number (`epoch_to_datetime`'s unit rule).

    Raises TypeError for a value of another type (a boolean included), NoTimeZoneError
    for ISO text without an offset, and ValueError for anything else it cannot read. It
    applies no bounds: the click rules bound an event's time (`shared.click_rules`), a
    reader of records already accepted takes the time it finds.
    """
    try:
        if isinstance(value, str):
            parsed = _ISO_TIMES.get(value)
            if parsed is None:
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
                if parsed.tzinfo is None:
                    raise NoTimeZoneError("timestamp has no time zone; send UTC with 'Z' or an offset")
                parsed = parsed.astimezone(timezone.utc)
                if len(_ISO_TIMES) >= ISO_TIMES_KEPT:
                    _ISO_TIMES.clear()
                _ISO_TIMES[value] = parsed
            return parsed
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"expected an ISO-8601 string or an epoch number, got {type(value).__name__}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("not a finite number")
        return epoch_to_datetime(value)
    except (OverflowError, OSError) as exc:  # a time outside what datetime holds
        raise ValueError(str(exc)) from exc


def format_timestamp(value: datetime) -> str:
    """The wire form of a timestamp: ISO-8601 UTC with millisecond precision and 'Z'."""
    return value.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def to_wire(record: dict[str, Any]) -> bytes:
    """JSON bytes of a typed record, timestamps in their wire form."""
    return json.dumps(
        {k: (format_timestamp(v) if isinstance(v, datetime) else v) for k, v in record.items()},
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode("utf-8")


# ------------------------------------------------------------------------------ event ids


#: Hex characters kept of an event id (96 bits).
EVENT_ID_HEX_CHARS = 24
#: The pseudonymization namespace of event ids.
EVENT_ID_NAMESPACE = "event"


def click_event_payload(source: str, raw_fields: list[str] | tuple[str, ...]) -> str:
    """What an event id is keyed over: "<source>:" + the raw fields joined by ','."""
    return f"{source}:" + ",".join(raw_fields)


def click_event_id(source: str, raw_fields: list[str] | tuple[str, ...], *, key: bytes) -> str:
    """Deterministic event id: the keyed pseudonym (HMAC-SHA256 with the pseudonymization
    key, namespace "event") of `click_event_payload`, cut to EVENT_ID_HEX_CHARS.

    Producers (the replay tool) and the batch clean job derive ids the same way, so an
    event replayed into Kafka and the same row cleaned from a file share one id and are
    deduplicated when the stream is folded back into Delta. The raw fields hold the raw
    user id: keyed, the id cannot be recomputed (by enumerating small user ids) without
    the key.
    """
    payload = click_event_payload(source, raw_fields)
    return str(pseudonymize(payload, EVENT_ID_NAMESPACE, key=key))[:EVENT_ID_HEX_CHARS]
