"""Faust Record classes derived from the schemas of `shared.schemas`: a reference for tests.

The worker does not use them (it writes scored events with `shared.contract.scored`, on
its hot path); the tests check that those bytes are what Faust's own JSON serialization
of the schema's record would be, and that the records follow the schemas.

    from tests.faust_records import scored_event_record
    scored_event_record()(**typed_dict).asdict()
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
