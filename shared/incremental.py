"""One incremental-table pattern for every job that rebuilds tables from Delta inputs.

    read inputs at pinned Delta versions -> derive the app-transaction version
    -> skip if every output committed it (unless forced) -> write -> record the run

The work version is the sum over inputs of (version + 1): Delta versions only grow, so
the sum grows with any input change and orders an output's units of work. Each output
commits `AppTxn(app_id, work_version)` in the same Delta commit as its rows, so a crash
between two outputs redoes only the one that was not committed.

    pinned = pin_inputs(spark, settings.lake, required=("silver/orders",))
    outputs = [Output("gold/item_features", path, "features:item_features")]
    results = run_incremental(run, pinned, outputs, force=False,
                              write=lambda txns: {"gold/item_features": write_table(df, path, mode="overwrite",
                                                                                  txns=txns["gold/item_features"])})
    # results is None when every output was already up to date
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from shared.delta import AppTxn, WriteResult, already_committed, read_table, table_exists, table_version
from shared.errors import TableNotFoundError
from shared.run_metrics import JobRun
from shared.settings import LakeSettings

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)


def table_path(lake: LakeSettings, label: str) -> Path:
    """ "silver/orders" -> <lake>/silver/orders."""
    layer, _, name = label.partition("/")
    if not name:
        raise ValueError(f"a table is named <layer>/<table>, not {label!r}")
    return lake.table(layer, name)  # type: ignore[arg-type]


@dataclass(frozen=True)
class PinnedInputs:
    """Input frames read at one Delta version each (None: an optional input is absent)."""

    frames: Mapping[str, DataFrame | None]
    versions: Mapping[str, int]  # label -> version read, for the inputs that exist
    work_version: int

    def present(self, labels: Sequence[str]) -> bool:
        return any(self.frames.get(label) is not None for label in labels)


def pin_inputs(
    spark: SparkSession,
    lake: LakeSettings,
    *,
    required: Sequence[str] = (),
    optional: Sequence[str] = (),
    missing_hint: str = "run the job that writes it first",
) -> PinnedInputs:
    """Read each input at its latest version, once; a missing required input is an error."""
    frames: dict[str, DataFrame | None] = {}
    versions: dict[str, int] = {}
    for label in (*required, *optional):
        path = table_path(lake, label)
        if not table_exists(path):
            if label in required:
                raise TableNotFoundError(f"{label} does not exist at {path}: {missing_hint}")
            frames[label] = None
            continue
        version = table_version(path) or 0
        frames[label] = read_table(spark, path, version)
        versions[label] = version
    return PinnedInputs(frames, versions, sum(v + 1 for v in versions.values()))


@dataclass(frozen=True)
class Output:
    """A table (or a slice of one) the unit of work writes, and its app id."""

    label: str  # how the run records it, e.g. "silver/quarantine[orders]"
    path: Path
    app_id: str


def is_up_to_date(pinned: PinnedInputs, outputs: Sequence[Output]) -> bool:
    return all(already_committed(o.path, AppTxn(o.app_id, pinned.work_version)) for o in outputs)


def run_incremental(
    run: JobRun,
    pinned: PinnedInputs,
    outputs: Sequence[Output],
    *,
    force: bool,
    write: Callable[[Mapping[str, list[AppTxn]]], Mapping[str, WriteResult]],
) -> Mapping[str, WriteResult] | None:
    """Record the reads; skip when every output committed this work; else `write`.

    `write` gets each output's app transactions by label (empty when forced: a forced
    rebuild commits without one and the log keeps the previous) and returns each
    output's WriteResult by label. Returns None when skipped.
    """
    for label, version in pinned.versions.items():
        run.read(label, version)
    if not force and is_up_to_date(pinned, outputs):
        for output in outputs:
            log.info("%s is up to date with its inputs; nothing to do", output.label)
            run.wrote(output.label, table_version(output.path) or 0, 0, skipped=True)
        return None
    txns = {o.label: ([] if force else [AppTxn(o.app_id, pinned.work_version)]) for o in outputs}
    results = write(txns)
    for label, result in results.items():
        run.wrote(label, result.version, result.rows, result.skipped)
    return results
