"""Bulk inference: score a Delta table with a registered model through Spark mapInPandas
and write a scored Delta table carrying the model's name and version.

usage: python -m batch.score --task propensity [--input PATH] [--input-version N]
           [--output PATH] [--version N | --alias champion] [--mode overwrite|append]
       (also: spark-submit batch/score.py ..., shopflow score ...)

Default input is the task's gold table; default output is the lake's scored/<task>.
Each Python worker loads the predictor once (checksums verified) and reuses it for
every partition it scores.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # spark-submit batch/score.py runs this file as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import json
import logging
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Callable, Iterator

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame

log = logging.getLogger("shopflow.score")

# One predictor per (registry, task, version) per Python worker process.
_PREDICTORS: dict[tuple[str, str, int], Any] = {}


@dataclass(frozen=True)
class ScoreArgs:
    task: str
    input: str | None = None
    input_version: int | None = None
    output: str | None = None
    version: int | None = None
    alias: str = "champion"
    mode: str = "overwrite"
    batch_size: int = 64


def parse_args(argv: list[str] | None) -> ScoreArgs:
    from shared.tasks import TASKS

    p = argparse.ArgumentParser(prog="shopflow score", description="bulk-score a Delta table")
    p.add_argument("--task", required=True, choices=sorted(TASKS))
    p.add_argument("--input", help="Delta table to score (default: the task's gold table)")
    p.add_argument("--input-version", type=int)
    p.add_argument("--output", help="scored Delta table (default: <lake>/scored/<task>)")
    p.add_argument("--version", type=int, help="model version (default: the alias)")
    p.add_argument("--alias", default="champion")
    p.add_argument("--mode", choices=["overwrite", "append"], default="overwrite")
    p.add_argument("--batch-size", type=int, default=64)
    ns = p.parse_args(argv)
    return ScoreArgs(**{f.name: getattr(ns, f.name) for f in fields(ScoreArgs)})


def _predictor(registry_root: str, task: str, version: int, batch_size: int) -> Any:
    from shared.predictor import load_predictor
    from shared.registry import ModelRegistry

    key = (registry_root, task, version)
    if key not in _PREDICTORS:
        _PREDICTORS[key] = load_predictor(
            task, version=version, registry=ModelRegistry(registry_root), batch_size=batch_size
        )
    return _PREDICTORS[key]


def make_scorer(
    registry_root: str, task: str, version: int, batch_size: int
) -> Callable[[Iterator["pd.DataFrame"]], Iterator["pd.DataFrame"]]:
    """The mapInPandas function: appends model_name, model_version, score, probabilities."""

    def score_batches(batches: Iterator["pd.DataFrame"]) -> Iterator["pd.DataFrame"]:
        predictor = _predictor(registry_root, task, version, batch_size)
        for frame in batches:
            proba = predictor.predict_proba(frame.to_dict("records"))
            out = frame.copy()
            out["model_name"] = predictor.model_name
            out["model_version"] = predictor.version
            out["score"] = proba[:, predictor.task_def.score_index].astype("float64")
            out["predicted_label"] = proba.argmax(axis=1).astype("int64")
            out["probabilities"] = [row.astype("float64").tolist() for row in proba]
            yield out

    return score_batches


def score_frame(df: "DataFrame", registry_root: str, task: str, version: int, batch_size: int = 64) -> "DataFrame":
    """Pure DataFrame -> DataFrame: the input columns plus the model's outputs."""
    from pyspark.sql import types as T

    schema = T.StructType(
        list(df.schema.fields)
        + [
            T.StructField("model_name", T.StringType(), False),
            T.StructField("model_version", T.StringType(), False),
            T.StructField("score", T.DoubleType(), False),
            T.StructField("predicted_label", T.LongType(), False),
            T.StructField("probabilities", T.ArrayType(T.DoubleType()), False),
        ]
    )
    return df.mapInPandas(make_scorer(registry_root, task, version, batch_size), schema=schema)


def run(args: ScoreArgs) -> dict[str, Any]:
    from shared.delta import read_table, table_version, write_table
    from shared.errors import ModelNotFoundError
    from shared.registry import ModelRegistry
    from shared.settings import get_settings
    from shared.spark import get_spark
    from shared.tasks import get_task

    settings = get_settings()
    task = get_task(args.task)
    registry = ModelRegistry()
    version = args.version if args.version is not None else registry.resolve(task.name, args.alias)
    if version is None:
        raise ModelNotFoundError(
            f"task {task.name!r} has no {args.alias!r}: train and promote one first (`shopflow train --promote`)"
        )
    # Verify in the driver so a corrupt checkpoint fails fast, before any executor starts.
    registry.verify(task.name, version)

    source = args.input or str(settings.lake.table("gold", task.training_set.table))
    target = args.output or str(settings.lake.table("scored", task.name))
    input_version = args.input_version if args.input_version is not None else table_version(source)
    spark = get_spark()
    scored = score_frame(read_table(spark, source, input_version), str(registry.root), task.name, version,
                         args.batch_size)
    result = write_table(
        scored, target, mode=args.mode,  # type: ignore[arg-type]
        info={"model": f"{task.model_name}:{version}", "source": f"{source}@{input_version}"},
    )
    return {"task": task.name, "model_version": version, "input": source, "input_version": input_version,
            "output": result.path, "output_version": result.version, "rows": result.rows}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(json.dumps(run(parse_args(argv))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
