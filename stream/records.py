"""Faust Record classes derived from the one schema definition in `shared.schemas`.

No field is spelled out here: each class is built from a `RecordSchema`'s FieldSpecs,
so a field added to CLICK_EVENT appears in the Spark schema, the validator and these
records at once.

    from stream.records import ScoredEvent
    ScoredEvent(**typed_dict).asdict()
"""

from __future__ import annotations

import types
from datetime import datetime
from functools import cache
from typing import Any

import faust

from shared.schemas import CLICK_EVENT, SCORED_EVENT, FieldType, RecordSchema

_PY_TYPES: dict[FieldType, Any] = {
    "string": str,
    "int64": int,
    "float64": float,
    "timestamp": datetime,
    "string_list": list[str],
}


def record_class(schema: RecordSchema, class_name: str) -> type[faust.Record]:
    """A faust.Record subclass with one field per FieldSpec (optional ones default None)."""
    annotations: dict[str, Any] = {}
    defaults: dict[str, Any] = {}
    # Python needs fields with defaults after those without; keep schema order otherwise.
    ordered = [f for f in schema.fields if f.required] + [f for f in schema.fields if not f.required]
    for spec in ordered:
        py_type = _PY_TYPES[spec.type]
        if spec.required:
            annotations[spec.name] = py_type
        else:
            annotations[spec.name] = py_type | None
            defaults[spec.name] = None

    def body(ns: dict[str, Any]) -> None:
        ns["__annotations__"] = annotations
        ns.update(defaults)
        ns["__module__"] = __name__
        ns["__doc__"] = f"Faust record of `{schema.name}` (derived from shared.schemas)."

    return types.new_class(class_name, (faust.Record,), {"serializer": "json", "isodates": True}, body)


@cache
def click_event_record() -> type[faust.Record]:
    return record_class(CLICK_EVENT, "ClickEvent")


@cache
def scored_event_record() -> type[faust.Record]:
    return record_class(SCORED_EVENT, "ScoredEvent")
