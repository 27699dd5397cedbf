"""Profile one `shopflow pipeline` run: seconds by stage, by operation and by Spark job.

    PYTHONPATH=$PWD python bench/spark_profile.py --lake var/profile/lake [--json out.json]

Runs ingest -> clean -> features (all sources, a fresh lake) in this process and reads
Spark's own status store (jobs and stages with their times, the same records the UI's
REST API serves, kept with the UI off) after the run. Operations are labelled by
wrapping the project's I/O functions (inputs pinned, table writes, Arrow conversions,
Delta commits): each Spark job carries the label of the operation that started it, and
each operation's driver time (its wall time less its Spark jobs) is planning, Arrow on
the driver, py4j round trips and delta-rs commits.

The script imports `batch` and `shared` from PYTHONPATH, so the same file profiles
another checkout (PYTHONPATH=/path/to/other/checkout python bench/spark_profile.py ...).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import shutil
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# Run as a script, this folder is first on sys.path and its batch.py would hide the
# `batch` package: the packages come from PYTHONPATH (this checkout or another).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]


class Profile:
    """Wall times of labelled operations (nested) and the Spark jobs each one started."""

    def __init__(self) -> None:
        self._local = threading.local()  # each thread its own nesting (ingest runs tables side by side)
        self.ops: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.spark: Any = None

    @property
    def stack(self) -> list[str]:
        if not hasattr(self._local, "stack"):
            self._local.stack = []
        return self._local.stack

    @contextmanager
    def op(self, label: str) -> Iterator[None]:
        self.stack.append(label)
        self._describe()
        start = time.perf_counter()
        try:
            yield
        finally:
            key = " > ".join(self.stack)
            self.ops[key] += time.perf_counter() - start
            self.calls[key] += 1
            self.stack.pop()
            self._describe()

    def _describe(self) -> None:
        if self.spark is not None:
            self.spark.sparkContext.setJobDescription(" > ".join(self.stack) or None)

    def wrap(self, module: Any, name: str, label: Callable[..., str]) -> None:
        """Time `module.name` under label(*args, **kwargs) (no-op when it does not exist)."""
        fn = getattr(module, name, None)
        if fn is None or getattr(fn, "_profiled", False):
            return

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.op(label(*args, **kwargs)):
                return fn(*args, **kwargs)

        timed._profiled = True  # type: ignore[attr-defined]
        setattr(module, name, timed)


def _table(path: Any) -> str:
    parts = Path(str(path)).parts
    return "/".join(parts[-2:])


def instrument(profile: Profile) -> None:
    """Label the pipeline's operations (whatever of them this checkout has)."""
    delta = importlib.import_module("shared.delta")
    incremental = importlib.import_module("shared.incremental")
    profile.wrap(delta, "write_deltalake", lambda path, *a, **k: "delta commit (arrow)")
    profile.wrap(delta, "create_table_with_add_actions", lambda *a, **k: "delta commit (files)")
    profile.wrap(delta, "_spark_to_arrow", lambda *a, **k: "toArrow")
    profile.wrap(delta, "_write_via_executors", lambda df, root, *a, **k: "executors write parquet")
    profile.wrap(delta, "read_table", lambda spark, path, *a, **k: f"read {_table(path)}")
    for module in ("batch.ingest", "batch.clean", "batch.features", "shared.incremental"):
        mod = importlib.import_module(module)
        profile.wrap(mod, "write_table", lambda df, path, *a, **k: f"write {_table(path)}")
        profile.wrap(mod, "read_table", lambda spark, path, *a, **k: f"read {_table(path)}")
        profile.wrap(mod, "pin_inputs", lambda *a, **k: "pin inputs")
    profile.wrap(incremental, "pin_inputs", lambda *a, **k: "pin inputs")
    ingest = importlib.import_module("batch.ingest")
    profile.wrap(ingest, "ingest_file", lambda spark, settings, source, *a, **k: f"ingest {source.name}")
    clean = importlib.import_module("batch.clean")
    profile.wrap(clean, "clean_table", lambda spark, spec, *a, **k: f"clean {spec.name}")
    features = importlib.import_module("batch.features")
    profile.wrap(features, "build_table", lambda spark, spec, *a, **k: f"gold {spec.name}")
    # Commits of files the executors wrote go through the table's transaction API.
    from deltalake import DeltaTable

    if not getattr(DeltaTable.create_write_transaction, "_profiled", False):
        original = DeltaTable.create_write_transaction

        @functools.wraps(original)
        def commit(self: Any, *args: Any, **kwargs: Any) -> Any:
            with profile.op("delta commit (files)"):
                return original(self, *args, **kwargs)

        commit._profiled = True  # type: ignore[attr-defined]
        DeltaTable.create_write_transaction = commit  # type: ignore[method-assign]


def spark_jobs(spark: Any) -> list[dict[str, Any]]:
    """Every job of the session from Spark's status store, with its stages' metrics."""
    store = spark.sparkContext._jsc.sc().statusStore()
    jobs = store.jobsList(None)
    out = []
    for i in range(jobs.size()):
        job = jobs.apply(i)
        start = job.submissionTime().get().getTime() if job.submissionTime().isDefined() else None
        end = job.completionTime().get().getTime() if job.completionTime().isDefined() else None
        stages = []
        ids = job.stageIds()
        for s in range(ids.size()):
            try:
                stage = store.lastStageAttempt(ids.apply(s))
            except Exception:  # skipped stages (shuffle reused) have no attempt
                continue
            stages.append(
                {
                    "id": stage.stageId(),
                    "name": stage.name(),
                    "tasks": stage.numTasks(),
                    "status": str(stage.status()),
                    "run_ms": stage.executorRunTime(),
                    "deserialize_ms": stage.executorDeserializeTime(),
                    "shuffle_read_bytes": stage.shuffleReadBytes(),
                    "shuffle_write_bytes": stage.shuffleWriteBytes(),
                }
            )
        description = job.description().get() if job.description().isDefined() else ""
        out.append(
            {
                "id": job.jobId(),
                "name": job.name(),
                "label": description,
                "seconds": (end - start) / 1000 if start and end else None,
                "tasks": job.numTasks(),
                "stages": [s for s in stages if s["status"] != "SKIPPED"],
            }
        )
    return sorted(out, key=lambda j: j["id"])


def cpu_seconds() -> float:
    """CPU seconds used so far by this process and everything it started (the JVM and its
    Python workers, live or ended): unlike wall time, little moved by other users' load."""
    import psutil

    def used(p: psutil.Process) -> float:
        t = p.cpu_times()
        return t.user + t.system + t.children_user + t.children_system

    me = psutil.Process()
    total = 0.0
    for proc in [me, *me.children(recursive=True)]:
        try:
            total += used(proc)
        except psutil.Error:
            pass
    return total


def run_pipeline(lake: Path, force: bool = True) -> dict[str, Any]:
    """One `shopflow pipeline` run on a fresh lake, profiled."""
    shutil.rmtree(lake, ignore_errors=True)
    os.environ["SHOPFLOW_LAKE__ROOT"] = str(lake)
    os.environ.setdefault("SHOPFLOW_METRICS_DIR", str(lake.parent / "metrics"))
    profile = Profile()
    instrument(profile)
    from batch import clean, features, ingest, pipeline
    from shared.settings import get_settings
    from shared.spark import get_spark

    stages: dict[str, float] = {}
    cpu: dict[str, float] = {}
    wall = time.perf_counter()
    settings = get_settings()
    start, cpu_start = time.perf_counter(), cpu_seconds()
    spark = get_spark(settings)
    stages["session start"] = time.perf_counter() - start
    cpu["session start"] = cpu_seconds() - cpu_start
    profile.spark = spark
    for name, module in (("ingest", ingest), ("clean", clean), ("features", features)):
        original = module.run

        def staged(*args: Any, _name: str = name, _run: Any = original, **kwargs: Any) -> Any:
            with profile.op(_name):
                begin, cpu_begin = time.perf_counter(), cpu_seconds()
                try:
                    return _run(*args, **kwargs)
                finally:
                    stages[_name] = time.perf_counter() - begin
                    cpu[_name] = cpu_seconds() - cpu_begin

        module.run = staged  # type: ignore[attr-defined]
    pipeline.run(settings, spark=spark)
    stages["total"] = time.perf_counter() - wall
    cpu["total"] = cpu_seconds() - cpu_start
    jobs = spark_jobs(spark)
    return {
        "stages": stages,
        "cpu": cpu,
        "load_average": os.getloadavg(),
        "ops": dict(profile.ops),
        "calls": dict(profile.calls),
        "jobs": jobs,
    }


def summarize(result: dict[str, Any]) -> str:
    """Markdown tables: stages, operations (wall, Spark jobs, driver-only time), jobs by kind."""
    cpu = result.get("cpu", {})
    lines = ["| stage | wall s | CPU s (driver JVM + Python) |", "|---|---|---|"]
    lines += [f"| {k} | {v:.1f} | {cpu.get(k, float('nan')):.1f} |" for k, v in result["stages"].items()]
    lines.append(f"\nload average at the end: {[round(x, 1) for x in result.get('load_average', [])]}")
    by_label: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for job in result["jobs"]:
        by_label[job["label"]].append(job)
    lines += [
        "",
        "| operation | calls | wall s | Spark jobs | job s | tasks | driver-only s |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, wall in sorted(result["ops"].items()):
        # A label's own jobs (not those of operations nested under it).
        own = by_label.get(label, [])
        job_s = sum(j["seconds"] or 0 for j in own)
        nested = sum(
            v
            for k, v in result["ops"].items()
            if k.startswith(label + " > ") and k.count(" > ") == label.count(" > ") + 1
        )
        lines.append(
            f"| {label} | {result['calls'][label]} | {wall:.2f} | {len(own)} | {job_s:.2f} | "
            f"{sum(j['tasks'] for j in own)} | {max(0.0, wall - nested - job_s):.2f} |"
        )
    kinds: dict[str, list[float]] = defaultdict(list)
    for job in result["jobs"]:
        kinds[job["name"].split(" at ")[0]].append(job["seconds"] or 0)
    lines += ["", "| Spark action | jobs | s |", "|---|---|---|"]
    lines += [f"| {k} | {len(v)} | {sum(v):.1f} |" for k, v in sorted(kinds.items(), key=lambda kv: -sum(kv[1]))]
    small = [
        s for j in result["jobs"] for s in j["stages"] if s["shuffle_read_bytes"] and s["shuffle_read_bytes"] < 1 << 20
    ]
    lines += [
        "",
        f"jobs: {len(result['jobs'])}, stages run: {sum(len(j['stages']) for j in result['jobs'])}, "
        f"tasks: {sum(s['tasks'] for j in result['jobs'] for s in j['stages'])}, "
        f"stages reading < 1 MiB of shuffle: {len(small)} ({sum(s['tasks'] for s in small)} tasks)",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lake", type=Path, required=True, help="a fresh lake folder (deleted first)")
    p.add_argument("--json", type=Path, help="write the raw profile here")
    args = p.parse_args(argv)
    result = run_pipeline(args.lake.resolve())
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1, default=str))
    print(summarize(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
