"""Reading a task's gold training set at a pinned Delta version, and slicing it.

data = load_training_data(task, default_table_path(settings, task), max_train_samples=200, seed=13)
data.train, data.valid, data.test, data.delta_version

The valid rows choose among states of one run (epochs, early stopping); the test rows are
for the one evaluation the promotion gate reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shared.delta import read_arrow, table_version
from shared.errors import TableError, TableNotFoundError
from shared.settings import Settings
from shared.tasks import Task

Record = dict[str, Any]


@dataclass(frozen=True)
class TrainingData:
    table_path: str
    delta_version: int
    train: list[Record]
    test: list[Record]
    train_rows_available: int
    test_rows_available: int
    # Model selection rows (empty when the table has none: the trainer then keeps its last state).
    valid: list[Record] = field(default_factory=list)
    valid_rows_available: int = 0


def default_table_path(settings: Settings, task: Task) -> Path:
    return settings.lake.table("gold", task.training_set.table)


def _subsample(rows: list[Record], limit: int | None, rng: np.random.Generator) -> list[Record]:
    if limit is None or limit >= len(rows):
        return rows
    keep = np.sort(rng.choice(len(rows), size=limit, replace=False))
    return [rows[i] for i in keep]


def load_training_data(
    task: Task,
    table_path: str | Path,
    *,
    delta_version: int | None = None,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    seed: int = 13,
    eval_split: str = "test",
) -> TrainingData:
    """Train, valid and evaluation rows of one Delta version of the task's gold table
    (`max_eval_samples` caps the valid rows as well as the evaluation rows).

    The version read is pinned first and recorded, so a run can be reproduced later
    with Delta time travel (`--table-version`); rows are read in the order of the
    training set's row key, so the same content gives the same run however the table's
    files were written.
    """
    path = Path(table_path)
    version = table_version(path) if delta_version is None else delta_version
    if version is None:
        raise TableNotFoundError(
            f"no gold table for task {task.name!r} at {path}: run `shopflow features` first or pass --table-path"
        )
    # Rows in the order of their key, not of the files: Spark writes a table's files in
    # whatever order its tasks finish, and the same content must train the same weights.
    key = task.training_set.row_key
    rows = read_arrow(path, version).sort_by([(column, "ascending") for column in key]).to_pylist()
    train = [r for r in rows if r["split"] == "train"]
    test = [r for r in rows if r["split"] == eval_split]
    valid = [r for r in rows if r["split"] == "valid"] if eval_split != "valid" else []
    if not train or not test:
        raise TableError(
            f"{path} (version {version}) has {len(train)} train and {len(test)} {eval_split} rows; "
            "the trainer needs both: rebuild the gold table"
        )
    rng = np.random.default_rng(seed)
    train_rows = _subsample(train, max_train_samples, rng)
    test_rows = _subsample(test, max_eval_samples, rng)  # drawn before valid: the same slice as before
    return TrainingData(
        table_path=str(path),
        delta_version=int(version),
        train=train_rows,
        test=test_rows,
        train_rows_available=len(train),
        test_rows_available=len(test),
        valid=_subsample(valid, max_eval_samples, rng),
        valid_rows_available=len(valid),
    )
