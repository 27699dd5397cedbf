"""What one demo run did, as typed data: the input of the report, saved beside it as JSON.

    record = DemoRecord(stages=[Stage("batch", started_at, 212.4, {"clicks": 1_000_000})],
                        samples=sampler.stop(), dlq_by_reason={"bad ts": 3}, ...)
    Path("out/demo.json").write_text(record.to_json())
    same = DemoRecord.from_json(Path("out/demo.json").read_text())

Every part but the stages is optional: a run that stopped early still has a record, and
the report says on each chart what is missing. Timestamps are timezone-aware UTC
datetimes (ISO-8601 in JSON; unix seconds are accepted on input); sampler timestamps
stay unix seconds. Model versions are strings, as the worker's metric labels are.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from demo.observe import Sample

DECISIONS = ("promoted", "not promoted")


def to_utc(value: datetime | str | float | int) -> datetime:
    """A datetime, an ISO-8601 string or unix seconds -> an aware UTC datetime."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, (int, float)):
        return datetime.fromtimestamp(float(value), tz=timezone.utc)
    else:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if moment.tzinfo is None:  # a naive time in this project is UTC
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


@dataclass(frozen=True)
class Stage:
    name: str
    started_at: datetime
    seconds: float
    counts: dict[str, Any] = field(default_factory=dict)  # e.g. {"events": 120000}
    run_id: str | None = None  # the stage's MLflow run (None: not tracked)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Stage:
        run_id = d.get("run_id")
        return cls(
            str(d["name"]),
            to_utc(d["started_at"]),
            float(d["seconds"]),
            dict(d.get("counts") or {}),
            None if run_id is None else str(run_id),
        )


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its confidence interval (bounds None when not computed)."""

    value: float
    ci_low: float | None = None
    ci_high: float | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Estimate:
        return cls(float(d["value"]), _opt_float(d.get("ci_low")), _opt_float(d.get("ci_high")))


@dataclass(frozen=True)
class ModelScore:
    """One model's metric on the evaluation slice."""

    version: str
    value: float
    ci_low: float | None = None
    ci_high: float | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelScore:
        return cls(str(d["version"]), float(d["value"]), _opt_float(d.get("ci_low")), _opt_float(d.get("ci_high")))


@dataclass(frozen=True)
class Evaluation:
    """Champion vs challenger on the same unseen slice, and what was decided."""

    metric: str
    champion: ModelScore
    challenger: ModelScore
    difference: Estimate  # challenger - champion, paired bootstrap interval
    margin: float
    decision: str  # one of DECISIONS
    reason: str
    slice: dict[str, Any] = field(default_factory=dict)  # e.g. {"from": ..., "to": ..., "users": n}

    def __post_init__(self) -> None:
        if self.decision not in DECISIONS:
            raise ValueError(f"decision must be one of {DECISIONS}, got {self.decision!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Evaluation:
        return cls(
            str(d["metric"]),
            ModelScore.from_dict(d["champion"]),
            ModelScore.from_dict(d["challenger"]),
            Estimate.from_dict(d["difference"]),
            float(d["margin"]),
            str(d["decision"]),
            str(d.get("reason", "")),
            dict(d.get("slice") or {}),
        )


@dataclass(frozen=True)
class Accounting:
    """Every replayed event ends up folded or dead-lettered; duplicates are extra reads."""

    rows_in: int
    folded: int
    dead_lettered: int
    duplicates_dropped: int = 0

    @property
    def unaccounted(self) -> int:
        return self.rows_in - self.folded - self.dead_lettered

    @property
    def balanced(self) -> bool:
        return self.unaccounted == 0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Accounting:
        return cls(int(d["rows_in"]), int(d["folded"]), int(d["dead_lettered"]), int(d.get("duplicates_dropped", 0)))


@dataclass(frozen=True)
class TableVersion:
    table: str
    version: int | None  # None: the table did not exist yet

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TableVersion:
        v = d.get("version")
        return cls(str(d["table"]), None if v is None else int(v))


@dataclass(frozen=True)
class LineageStep:
    """The Delta versions a step read and wrote, and the Kafka offsets it consumed."""

    step: str
    reads: list[TableVersion] = field(default_factory=list)
    writes: list[TableVersion] = field(default_factory=list)
    offsets: dict[str, tuple[int, int]] = field(default_factory=dict)  # "topic[p]": (from, to)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LineageStep:
        return cls(
            str(d["step"]),
            [TableVersion.from_dict(t) for t in d.get("reads", [])],
            [TableVersion.from_dict(t) for t in d.get("writes", [])],
            {str(k): (int(v[0]), int(v[1])) for k, v in (d.get("offsets") or {}).items()},
        )


@dataclass(frozen=True)
class Swap:
    """The moment the worker started serving the promoted model."""

    at: datetime
    from_version: str | None
    to_version: str

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Swap:
        f = d.get("from_version")
        return cls(to_utc(d["at"]), None if f is None else str(f), str(d["to_version"]))

    @classmethod
    def from_samples(cls, samples: list[Sample], to_version: str | None = None) -> Swap | None:
        """The first scrape that saw the worker serve a new version (to `to_version`, if
        given): when the worker actually swapped, which the promotion alone cannot tell."""
        previous: str | None = None
        for s in samples:
            if not s.up or s.serving_version is None:
                continue
            if (
                previous is not None
                and s.serving_version != previous
                and (to_version is None or s.serving_version == str(to_version))
            ):
                return cls(to_utc(s.at), previous, s.serving_version)
            previous = s.serving_version
        return None


@dataclass(frozen=True)
class DemoRecord:
    title: str = "shopflow demo"
    created_at: datetime | None = None
    stages: list[Stage] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    dlq_by_reason: dict[str, int] = field(default_factory=dict)
    evaluation: Evaluation | None = None
    accounting: Accounting | None = None
    lineage: list[LineageStep] = field(default_factory=list)
    swap: Swap | None = None
    summary: dict[str, Any] = field(default_factory=dict)  # headline figures, JSON-safe
    # Per task, the model that serves at the end and why: {"version", "kind", "why"}
    # (version None: nothing serves that task).
    serving: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["samples"] = [s.to_dict() for s in self.samples]
        return _jsonable(out)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DemoRecord:
        ev, acc, swap, created = (d.get("evaluation"), d.get("accounting"), d.get("swap"), d.get("created_at"))
        return cls(
            title=str(d.get("title", "shopflow demo")),
            created_at=None if created is None else to_utc(created),
            stages=[Stage.from_dict(s) for s in d.get("stages", [])],
            samples=[s if isinstance(s, Sample) else Sample.from_dict(s) for s in d.get("samples", [])],
            dlq_by_reason={str(k): int(v) for k, v in (d.get("dlq_by_reason") or {}).items()},
            evaluation=None if ev is None else Evaluation.from_dict(ev),
            accounting=None if acc is None else Accounting.from_dict(acc),
            lineage=[LineageStep.from_dict(s) for s in d.get("lineage", [])],
            swap=None if swap is None else Swap.from_dict(swap),
            summary=dict(d.get("summary") or {}),
            serving={str(k): dict(v) for k, v in (d.get("serving") or {}).items()},
        )

    @classmethod
    def from_json(cls, text: str) -> DemoRecord:
        return cls.from_dict(json.loads(text))


def _opt_float(v: Any) -> float | None:
    return None if v is None else float(v)


def _jsonable(value: Any) -> Any:
    """Datetimes -> ISO strings, tuples -> lists, NaN/inf -> None, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN; a missing figure reads better than a crash at the end
    if isinstance(value, datetime):
        return to_utc(value).isoformat()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
