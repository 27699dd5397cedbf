"""Bulk inference: score a Delta table with a registered model through Spark mapInPandas
and write a scored Delta table carrying the model's name and version.

usage: python -m batch.score --task propensity [--input PATH] [--input-version N]
           [--output PATH] [--version N | --alias champion] [--mode overwrite|append]
       (also: spark-submit batch/score.py ..., shopflow score ...)

Default input is the task's gold table; default output is the lake's scored/<task>.
Each Python worker loads the predictor once (checksums verified) and reuses it for
every partition it scores. By default the champion scores; a task without one is an
error that says so. Every scored row says what the version was when it scored
(`model_status`: "champion", another alias it held, or "unpromoted" for a version
given with --version that no alias points at), so output from an unpromoted version is
never mistaken for the champion's.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # spark-submit batch/score.py runs this file as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dataclasses
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.options import option, resolve, start_job
from shared.settings import Settings
from shared.tasks import TASKS

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame

log = logging.getLogger("shopflow.score")

# One predictor per (registry, task, version) per Python worker process.
_PREDICTORS: dict[tuple[str, str, int], Any] = {}


@dataclass(frozen=True)
class ScoreOptions:
    task: str = option(help="which task's model scores", choices=tuple(TASKS))
    input: str | None = option(None, help="Delta table to score (default: the task's gold table)")
    input_version: int | None = option(None, help="Delta version of the input (default: latest)", ge=0)
    output: str | None = option(None, help="scored Delta table (default: <lake>/scored/<task>)")
    version: int | None = option(None, help="model version (default: the alias)", ge=1)
    alias: str = option("champion", help="registry alias used when --version is not given")
    mode: str = option("overwrite", help="how to write the output", choices=("overwrite", "append"))
    batch_size: int = option(64, help="records per model call", ge=1)
    split: str | None = option(None, help="score only rows of this split (e.g. test), when the input has one")


@dataclass(frozen=True)
class ScoreResult:
    task: str
    model_version: int
    input: str
    input_version: int
    output: str
    output_version: int
    rows: int
    model_status: str = "champion"  # champion | another alias | unpromoted


def _predictor(registry_root: str, task: str, version: int, batch_size: int) -> Any:
    from shared.predictor import load_predictor
    from shared.registry import ModelRegistry

    key = (registry_root, task, version)
    if key not in _PREDICTORS:
        _PREDICTORS[key] = load_predictor(
            task, version=version, registry=ModelRegistry(registry_root), batch_size=batch_size
        )
    return _PREDICTORS[key]


def model_status(registry: Any, task: str, version: int) -> str:
    """What `version` is when it scores: "champion", another alias it holds, or "unpromoted"."""
    held = [alias for alias, v in registry.aliases(task).items() if v == version]
    return "champion" if "champion" in held else (held[0] if held else "unpromoted")


def make_scorer(
    registry_root: str, task: str, version: int, batch_size: int, status: str = "champion"
) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """The mapInPandas function: appends model_name, model_version, model_status, score,
    probabilities."""

    def score_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        predictor = _predictor(registry_root, task, version, batch_size)
        for frame in batches:
            proba = predictor.predict_proba(frame.to_dict("records"))
            out = frame.copy()
            out["model_name"] = predictor.model_name
            out["model_version"] = predictor.version
            out["model_status"] = status
            out["score"] = proba[:, predictor.task_def.score_index].astype("float64")
            out["predicted_label"] = proba.argmax(axis=1).astype("int64")
            out["probabilities"] = [row.astype("float64").tolist() for row in proba]
            yield out

    return score_batches


def score_frame(
    df: DataFrame, registry_root: str, task: str, version: int, batch_size: int = 64, status: str = "champion"
) -> DataFrame:
    """Pure DataFrame -> DataFrame: the input columns plus the model's outputs."""
    from pyspark.sql import types as T

    schema = T.StructType(
        list(df.schema.fields)
        + [
            T.StructField("model_name", T.StringType(), False),
            T.StructField("model_version", T.StringType(), False),
            T.StructField("model_status", T.StringType(), False),
            T.StructField("score", T.DoubleType(), False),
            T.StructField("predicted_label", T.LongType(), False),
            T.StructField("probabilities", T.ArrayType(T.DoubleType()), False),
        ]
    )
    return df.mapInPandas(make_scorer(registry_root, task, version, batch_size, status), schema=schema)


def run(settings: Settings, options: ScoreOptions) -> ScoreResult:
    from shared.delta import read_table, table_version, write_table
    from shared.errors import ModelNotFoundError, TableNotFoundError, UsageError
    from shared.registry import ModelRegistry
    from shared.spark import get_spark
    from shared.tasks import get_task

    options = resolve(options, settings)
    task = get_task(options.task)
    registry = ModelRegistry(settings.models.registry_root)
    version = options.version if options.version is not None else registry.resolve(task.name, options.alias)
    if version is None:
        raise ModelNotFoundError(
            f"task {task.name!r} has no {options.alias!r}: no version passed the baseline gate (see `shopflow "
            f"models list`); train and promote one first (`shopflow train --promote`), or score a version "
            f"with --version N (its rows are labelled unpromoted)"
        )
    # Verify in the driver so a corrupt checkpoint fails fast, before any executor starts.
    registry.verify(task.name, version)
    status = model_status(registry, task.name, version)
    if status != "champion":
        log.warning("%s v%d is not the champion: its scored rows are labelled %r", task.name, version, status)

    source = options.input or str(settings.lake.table("gold", task.training_set.table))
    target = options.output or str(settings.lake.table("scored", task.name))
    input_version = options.input_version if options.input_version is not None else table_version(source)
    if input_version is None:
        raise TableNotFoundError(f"no Delta table at {source}: run `shopflow features` first or pass --input")
    spark = get_spark(settings)
    frame = read_table(spark, source, input_version)
    if options.split is not None:
        if "split" not in frame.columns:
            raise UsageError(f"--split {options.split}: {source} has no split column")
        frame = frame.where(frame["split"] == options.split)
    scored = score_frame(frame, str(registry.root), task.name, version, options.batch_size, status)
    result = write_table(
        scored,
        target,
        mode=options.mode,  # type: ignore[arg-type]
        info={"model": f"{task.model_name}:{version}", "status": status, "source": f"{source}@{input_version}"},
        arrow_max_rows=settings.spark.arrow_write_max_rows,
    )
    return ScoreResult(
        task=task.name,
        model_version=version,
        input=source,
        input_version=input_version,
        output=result.path,
        output_version=result.version,
        rows=result.rows,
        model_status=status,
    )


def main(argv: list[str] | None = None) -> int:
    options, settings = start_job(ScoreOptions, argv, prog="shopflow score", doc=__doc__)
    print(json.dumps(dataclasses.asdict(run(settings, options)), default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
