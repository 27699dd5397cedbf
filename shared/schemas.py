"""The click-event and scored-event schemas, defined once.

Each schema is a tuple of `FieldSpec`s. The Spark `StructType`, the Arrow schema and the
validator are derived from it here; the Faust `Record` is derived from it in the stream
package. Nothing else spells these fields out by hand.

    from shared.schemas import CLICK_EVENT, validate_click_event
    CLICK_EVENT.spark_schema()             # StructType for batch
    validate_click_event(b'{"event_id": ...}')   # -> dict, or raises ValidationError
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa

from shared.errors import ValidationError

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
        FieldSpec("session_id", "string", required=False, doc="Source session, if any"),
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
    ),
)


# ---------------------------------------------------------------------------- validation


def parse_timestamp(value: Any) -> datetime:
    """ISO-8601 with an explicit offset (or 'Z'), or an epoch number -> aware UTC.

    The epoch unit (seconds or milliseconds) follows the one rule of `shared.click_rules`.
    """
    from shared.click_rules import epoch_to_datetime

    if isinstance(value, bool):
        raise ValueError("a boolean is not a timestamp")
    if isinstance(value, (int, float)):
        return epoch_to_datetime(value)
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            raise ValueError("timestamp has no time zone; send UTC with 'Z' or an offset")
        return parsed.astimezone(timezone.utc)
    raise ValueError(f"expected an ISO-8601 string or epoch millis, got {type(value).__name__}")


def format_timestamp(value: datetime) -> str:
    """The wire form of a timestamp: ISO-8601 UTC with millisecond precision and 'Z'."""
    return value.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _check_field(spec: FieldSpec, value: Any) -> tuple[Any, str | None]:
    if value is None or value == "":
        return None, (f"{spec.name}: required" if spec.required else None)
    if spec.type == "timestamp":
        try:
            return parse_timestamp(value), None
        except (ValueError, OverflowError, OSError) as exc:
            return None, f"{spec.name}: bad timestamp {value!r} ({exc})"
    if spec.type == "string":
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            return None, f"{spec.name}: expected a string, got {type(value).__name__}"
        text = str(value)
        limit = MAX_QUERY_LENGTH if spec.name == "query" else MAX_ID_LENGTH
        if len(text) > limit:
            return None, f"{spec.name}: longer than {limit} characters"
        if spec.allowed is not None and text not in spec.allowed:
            return None, f"{spec.name}: {text!r} is not one of {', '.join(spec.allowed)}"
        return text, None
    if spec.type == "string_list":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return None, f"{spec.name}: expected a list of strings"
        return value, None
    if spec.type in ("int64", "float64"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None, f"{spec.name}: expected a number, got {type(value).__name__}"
        return (int(value) if spec.type == "int64" else float(value)), None
    raise AssertionError(f"unhandled field type {spec.type}")


def validate_record(schema: RecordSchema, raw: bytes | str | dict[str, Any]) -> dict[str, Any]:
    """Parse and validate one record; returns the typed dict or raises ValidationError.

    Every problem is collected, not only the first, so a dead-letter entry says all
    that is wrong with the record. Unknown fields are an error: a producer that sends
    them is out of contract.
    """
    if isinstance(raw, (bytes, bytearray)):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValidationError(f"not UTF-8: {exc}") from exc
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValidationError(f"not JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ValidationError(f"expected a JSON object, got {type(raw).__name__}")

    record: dict[str, Any] = {}
    reasons: list[str] = []
    for spec in schema.fields:
        value, problem = _check_field(spec, raw.get(spec.name))
        record[spec.name] = value
        if problem:
            reasons.append(problem)
    unknown = sorted(set(raw) - set(schema.names))
    if unknown:
        reasons.append(f"unknown fields: {', '.join(map(str, unknown))}")
    if reasons:
        raise ValidationError("; ".join(reasons), reasons)
    return record


def validate_click_event(raw: bytes | str | dict[str, Any]) -> dict[str, Any]:
    """Validate a click event by the one set of click rules (`shared.click_rules`).

    Raises `shared.click_rules.ClickRejected` (a ValidationError) with a reason code.
    """
    from shared.click_rules import check_click, check_click_bytes

    return check_click(raw) if isinstance(raw, dict) else check_click_bytes(raw)


def to_wire(record: dict[str, Any]) -> bytes:
    """JSON bytes of a typed record, timestamps in their wire form."""
    return json.dumps(
        {k: (format_timestamp(v) if isinstance(v, datetime) else v) for k, v in record.items()},
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode("utf-8")


# ------------------------------------------------------------------------------ event ids


def click_event_id(source: str, raw_fields: list[str] | tuple[str, ...]) -> str:
    """Deterministic event id: sha1 of "<source>:" + the raw fields joined by ','.

    Producers (the replay tool) and the batch clean job derive ids the same way, so an
    event replayed into Kafka and the same row cleaned from a file share one id and are
    deduplicated when the stream is folded back into Delta.
    """
    import hashlib

    payload = f"{source}:" + ",".join(raw_fields)
    return hashlib.sha1(payload.encode("utf-8")).hexdigest()[:24]
