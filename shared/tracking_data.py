"""What a job's documents become in an experiment tracker: pure functions, no MLflow.

A job's metrics JSON and a registry manifest are nested dicts whose shape grows as the
project does (a gate's figures, per-baseline intervals, per-epoch histories). Rather than
naming each field, they are flattened by the kind of each value, so a field added later is
tracked without a change here:

    flat = flatten({"metrics": {"roc_auc": 0.61}, "decision": {"promote": False, "reason": "..."}})
    flat.metrics  # {"metrics.roc_auc": 0.61}
    flat.tags     # {"decision.promote": "false", "decision.reason": "..."}
    flat.series   # {"training.epochs.valid.roc_auc": [0.58, 0.60]}  (lists of numbers, per step)

Secrets never leave: `masked` replaces the values of SecretStr fields (already masked by a
JSON dump) and of every key named like a secret (key, secret, password, token, ...), and
credentials written into URLs.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

MASK = "**********"  # what pydantic prints for a SecretStr
# Words that name a secret. A key is split into words on '_', '-', '.' and case changes,
# so `pseudonymization_key` and `apiToken` are masked (and so would be a harmless
# `row_key`: a masked harmless value costs nothing, a leaked key costs a rotation).
SECRET_WORDS = frozenset(
    {"key", "secret", "password", "passwd", "pwd", "token", "credential", "credentials", "apikey", "auth"}
)
_WORD = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s:]*:[^/@\s]*@")
# MLflow's limits: tag values 8,000 characters, param values 6,000, keys 250.
MAX_VALUE_CHARS = 5000
MAX_KEY_CHARS = 250
_KEY_CHARS = re.compile(r"[^A-Za-z0-9_\-. /:]")


def is_secret_name(name: str) -> bool:
    """Whether a setting or field called `name` holds a secret (by the words in its name)."""
    words = {w.lower() for w in _WORD.findall(str(name))}
    return bool(words & SECRET_WORDS)


def mask_url(text: str) -> str:
    """`scheme://user:password@host` -> `scheme://**********@host`."""
    return _URL_CREDENTIALS.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)


def masked(value: Any, name: str = "") -> Any:
    """`value` with every secret replaced by MASK, recursively (a secret's name masks all
    below it); a SecretStr object masks itself."""
    if type(value).__name__ in ("SecretStr", "SecretBytes"):
        return MASK
    if name and is_secret_name(name) and value not in (None, "", {}, []):
        return MASK
    if isinstance(value, Mapping):
        return {k: masked(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [masked(v) for v in value]
    if isinstance(value, str):
        return mask_url(value)
    return value


def clean_key(key: str) -> str:
    """A metric, param or tag name MLflow accepts: other characters become '_'."""
    return _KEY_CHARS.sub("_", key)[:MAX_KEY_CHARS]


def as_text(value: Any) -> str:
    """A param or tag value: JSON for containers, lower-case booleans, cut to MLflow's limit."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = "None"
    elif isinstance(value, (Mapping, list, tuple)):
        text = json.dumps(value, default=str, sort_keys=True)
    else:
        text = str(value)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 3] + "..."


def _number(value: Any) -> float | None:
    """A finite real number, or None (booleans and NaN are not metrics)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            import numpy as np

            if isinstance(value, np.generic) and np.issubdtype(type(value), np.number):
                value = value.item()
            else:
                return None
        except ImportError:  # pragma: no cover - numpy is always there
            return None
    number = float(value)
    return number if math.isfinite(number) else None


@dataclass
class Flat:
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    series: dict[str, list[float]] = field(default_factory=dict)

    def update(self, other: Flat) -> None:
        self.metrics.update(other.metrics)
        self.tags.update(other.tags)
        self.series.update(other.series)


def _series(key: str, items: Sequence[Any], out: Flat) -> bool:
    """Lists of numbers (one per step) or of dicts of numbers (one dict per epoch) become
    series; returns False for any other list."""
    if not items:
        return False
    if all(_number(v) is not None for v in items):
        out.series[key] = [float(v) for v in items]
        return True
    if all(isinstance(v, Mapping) for v in items):
        per_step: dict[str, list[float]] = {}
        for item in items:
            for name, leaf in _leaves(item):
                number = _number(leaf)
                if number is not None:
                    per_step.setdefault(name, []).append(number)
        for name, values in per_step.items():
            out.series[f"{key}.{name}"] = values
        return bool(per_step)
    return False


def _leaves(doc: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in doc.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.extend(_leaves(v, key + "."))
        else:
            out.append((key, v))
    return out


def flatten(doc: Mapping[str, Any], *, prefix: str = "", skip: Sequence[str] = ()) -> Flat:
    """Numbers -> metrics, lists of numbers (or of dicts of numbers) -> series, anything
    else -> tags (strings, booleans, None, short lists as JSON). Keys are dotted paths;
    top-level keys in `skip` are left out (e.g. the options, logged as params)."""
    out = Flat()
    for key, value in _leaves(masked(dict(doc))):
        if key.split(".", 1)[0] in skip:
            continue
        name = clean_key(prefix + key)
        number = _number(value)
        if number is not None:
            out.metrics[name] = number
        elif isinstance(value, (list, tuple)) and _series(name, value, out):
            continue
        elif isinstance(value, float):  # NaN or infinite: say so rather than drop it
            out.tags[name] = str(value)
        elif value is not None and value != {} and value != []:
            out.tags[name] = as_text(value)
    return out


def params_of(doc: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """A flat, masked {dotted key: text} of options or settings, for run params."""
    return {clean_key(prefix + k): as_text(v) for k, v in _leaves(masked(dict(doc)))}


@dataclass(frozen=True)
class TableRead:
    """A Delta table a run read, pinned to the version it read."""

    name: str
    path: str
    version: int | None


def tables_read(doc: Mapping[str, Any]) -> list[TableRead]:
    """The Delta tables a job's document says it read: its `data` ({table, path,
    delta_version}) and its `tables_read` ({name: version})."""
    found: dict[str, TableRead] = {}
    data = doc.get("data")
    if isinstance(data, Mapping) and data.get("table") and "delta_version" in data:
        path = str(data.get("path") or data["table"])
        name = _table_name(str(data["table"]))
        found[name] = TableRead(name, path, _version(data.get("delta_version")))
    reads = doc.get("tables_read")
    if isinstance(reads, Mapping):
        for table, version in reads.items():
            name = _table_name(str(table))
            if name not in found:
                found[name] = TableRead(name, str(table), _version(version))
    return list(found.values())


def _table_name(table: str) -> str:
    """'/lake/gold/train_propensity' or 'gold/train_propensity' -> 'gold/train_propensity'."""
    parts = [p for p in table.replace("\\", "/").split("/") if p]
    return "/".join(parts[-2:]) if len(parts) >= 2 else table


def _version(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None
