"""The registry manifest of one model version, as a typed object.

The registry writes `manifest.json` beside the weights; this class is its only reader
and writer. Keys it does not know are **kept** (in `extra`) and written back unchanged,
so a newer job may add a field (e.g. the retrain job's promotion evidence) without
older code dropping it on a rewrite, and old manifests, which lack the newer fields,
still load with those fields at their defaults.

    manifest = Manifest(primary_metric="roc_auc", metrics={"roc_auc": 0.71})
    Manifest.from_json(manifest.to_json()) == manifest
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.errors import CorruptCheckpointError


@dataclass(frozen=True)
class TrainingTable:
    """A Delta table a model was trained on, pinned to the version read."""

    path: str
    delta_version: int


@dataclass(frozen=True)
class Manifest:
    # Set by the registry on register(); a caller's values are overwritten.
    task: str = ""
    version: int = 0
    created_at: str = ""
    files: dict[str, str] = field(default_factory=dict)  # relative path -> sha256
    # Supplied by the trainer.
    model_name: str = ""
    base_model: str = ""
    init_from_champion: dict[str, Any] | None = None
    label_names: tuple[str, ...] = ()
    primary_metric: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    baseline_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    training_data: dict[str, TrainingTable] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    # Every key this class does not name, preserved as read.
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def primary_value(self) -> float | None:
        return self.metrics.get(self.primary_metric) if self.primary_metric else None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.extra)
        for f in dataclasses.fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if f.name == "training_data":
                value = {name: dataclasses.asdict(t) for name, t in value.items()}
            elif f.name == "label_names":
                value = list(value)
            out[f.name] = value
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Manifest:
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        values: dict[str, Any] = {k: v for k, v in data.items() if k in known and v is not None}
        if "init_from_champion" in data:
            values["init_from_champion"] = data["init_from_champion"]
        try:
            if "version" in values:
                values["version"] = int(values["version"])
            if "label_names" in values:
                values["label_names"] = tuple(values["label_names"])
            if "training_data" in values:
                values["training_data"] = {
                    name: TrainingTable(path=str(t["path"]), delta_version=int(t["delta_version"]))
                    for name, t in values["training_data"].items()
                }
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptCheckpointError(f"manifest field has the wrong shape: {exc}") from exc
        extra = {k: v for k, v in data.items() if k not in known}
        return cls(**values, extra=extra)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("manifest.json must hold a JSON object")
        return cls.from_dict(data)

    def with_fields(self, **changes: Any) -> Manifest:
        """A copy with some fields replaced; unknown names go to `extra`."""
        known = {f.name for f in dataclasses.fields(self)}
        extra = {**self.extra, **{k: v for k, v in changes.items() if k not in known}}
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if k in known}, extra=extra)
