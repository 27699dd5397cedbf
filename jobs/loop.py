"""The periodic loop: fold the stream into Delta -> features -> retrain -> evaluate -> promote.

usage: python -m jobs.loop --once            # one iteration, then exit (cron, Airflow)
       python -m jobs.loop --interval 15m    # every 15 minutes until stopped
       python -m jobs.loop                   # every SHOPFLOW_LOOP__INTERVAL (15m) until stopped
       python -m jobs.loop --once --epochs 2 --max-train-samples 500   # retrain's options pass on
       (also: shopflow loop ...)

One iteration runs the jobs in order, each through its own `run(settings, options)`:
`jobs.fold` (Kafka -> Delta, exactly once), `batch.features` (gold tables and training
sets from history + folded stream; skipped when its inputs did not change) and
`jobs.retrain` (fine-tune from the last trained version, compare on the same unseen
slice, promote only a model proven better and not worse than its baselines; with no
champion and nothing passing, the fallback baseline serves), then `jobs.maintain` when
it is due (compaction, vacuum and log retention of the lake, the registry's retention,
rotation of the metrics files; at most once per `maintenance.interval`). Each step
writes its own metrics JSON and the iteration a summary one. A file lock makes sure two
runs never overlap on this host; on a cluster
scheduler use its own guard as well (Airflow: `max_active_runs=1`).
"""

from __future__ import annotations

import fcntl
import logging
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from jobs.retrain import RetrainOptions
from shared.errors import ShopflowError, UserError
from shared.options import option, options_group, resolve, start_job
from shared.run_metrics import write_metrics
from shared.settings import Settings, parse_interval
from shared.tracking import track_run

log = logging.getLogger("jobs.loop")


class LoopBusyError(UserError, ShopflowError):
    """Another loop run holds the lock."""


@dataclass(frozen=True)
class LoopOptions:
    once: bool = option(False, help="run one iteration and exit")
    interval: str | None = option(
        None,
        help="run every INTERVAL (e.g. 90s, 15m, 1h) until stopped",
        setting="loop.interval",
        unless="once",
        check=parse_interval,
    )
    skip_retrain: bool = option(False, help="fold and rebuild features only")
    skip_maintain: bool = option(False, help="do not end iterations with `shopflow maintain` when it is due")
    max_iterations: int | None = option(None, help="stop after this many iterations (without --once)", ge=1)
    retrain: RetrainOptions = options_group(RetrainOptions, title="the retrain step (as `shopflow retrain`)")


@dataclass
class StepResult:
    name: str
    status: str  # succeeded | failed | skipped
    seconds: float
    detail: dict[str, Any] = field(default_factory=dict)
    metrics_file: str | None = None


@dataclass
class IterationResult:
    started_at: str
    steps: list[StepResult] = field(default_factory=list)
    metrics_file: str | None = None

    @property
    def ok(self) -> bool:
        return all(step.status != "failed" for step in self.steps)

    def step(self, name: str) -> StepResult | None:
        return next((s for s in self.steps if s.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "started_at": self.started_at,
            "ok": self.ok,
            "steps": [s.__dict__ for s in self.steps],
        }


@contextmanager
def run_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive, non-blocking lock on `path` for the duration of a run."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise LoopBusyError(f"another loop run holds {path}; wait for it to finish") from exc
        handle.seek(0)
        handle.truncate()
        handle.write(f"{datetime.now(timezone.utc).isoformat()}\n")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def lock_path(settings: Settings) -> Path:
    return settings.stream.run_dir / "loop.lock"


Step = tuple[str, Callable[[Settings], Any]]


def default_steps(options: LoopOptions) -> list[Step]:
    """fold -> features -> retrain, each imported when it runs (Spark/torch load lazily)."""

    def fold(settings: Settings) -> Any:
        from jobs import fold as fold_job

        return fold_job.run(settings, fold_job.FoldOptions())

    def features(settings: Settings) -> Any:
        from batch import features as features_job

        return features_job.run(settings, features_job.FeaturesOptions())

    def retrain(settings: Settings) -> Any:
        from jobs import retrain as retrain_job

        return retrain_job.run(settings, options.retrain)

    def maintain(settings: Settings) -> Any:
        from jobs import maintain as maintain_job

        if not settings.maintenance.enabled:
            return {"skipped": "SHOPFLOW_MAINTENANCE__ENABLED=false"}
        if not maintain_job.due(settings, parse_interval(settings.maintenance.interval)):
            return {"skipped": f"the last maintenance is younger than {settings.maintenance.interval}"}
        return maintain_job.run(settings, maintain_job.MaintainOptions())

    steps: list[Step] = [("fold", fold), ("features", features)]
    if not options.skip_retrain:
        steps.append(("retrain", retrain))
    if not options.skip_maintain:
        steps.append(("maintain", maintain))
    return steps


def _as_dict(result: Any) -> dict[str, Any]:
    if result is None:
        return {}
    if hasattr(result, "to_dict"):
        return result.to_dict()
    if isinstance(result, dict):
        return result
    return {"result": repr(result)}


def run_iteration(settings: Settings, steps: list[Step]) -> IterationResult:
    """One pass over `steps` under the lock, as a tracked run with a nested run per step."""
    with track_run(settings, "loop", task=settings.loop.task, name="loop iteration") as tracked:
        iteration = _iteration(settings, [(name, tracked_step(name, fn)) for name, fn in steps])
        tracked.log_document(
            {"ok": iteration.ok, "steps": {s.name: {"status": s.status, "seconds": s.seconds} for s in iteration.steps}}
        )
    return iteration


def tracked_step(name: str, fn: Callable[[Settings], Any]) -> Callable[[Settings], Any]:
    """`fn` in a run of its own nested under the iteration's; a job that opens a run of
    the same kind (the retrain) logs into this one."""

    def step(settings: Settings) -> Any:
        with track_run(settings, name, name=f"loop {name}", adoptable=True) as tracked:
            result = fn(settings)
            if not tracked.documented:
                tracked.log_document(_as_dict(result))
        return result

    return step


def _iteration(settings: Settings, steps: list[Step]) -> IterationResult:
    """One pass over `steps` under the lock; a failed step stops the iteration."""
    iteration = IterationResult(started_at=datetime.now(timezone.utc).isoformat())
    with run_lock(lock_path(settings)):
        for name, fn in steps:
            started = time.perf_counter()
            try:
                result = fn(settings)
                step = StepResult(name, "succeeded", round(time.perf_counter() - started, 3), _as_dict(result))
            except ShopflowError as exc:
                log.error("loop step %s failed: %s", name, exc)
                step = StepResult(
                    name, "failed", round(time.perf_counter() - started, 3), {"error": f"{type(exc).__name__}: {exc}"}
                )
            step.metrics_file = str(
                write_metrics(settings.metrics_dir, f"jobs.loop.{name}", {"step": name, **step.__dict__})
            )
            iteration.steps.append(step)
            log.info("loop step %s %s in %.1fs", name, step.status, step.seconds)
            if step.status == "failed":
                break
    iteration.metrics_file = str(write_metrics(settings.metrics_dir, "jobs.loop", iteration.to_dict()))
    return iteration


def run(settings: Settings, options: LoopOptions, steps: list[Step] | None = None) -> list[IterationResult]:
    """Run once, or every `options.interval` (default: settings.loop.interval) until
    stopped (SIGTERM/SIGINT end it cleanly)."""
    options = resolve(options, settings)
    steps = steps if steps is not None else default_steps(options)
    if options.once:
        return [run_iteration(settings, steps)]

    assert options.interval is not None  # resolved: the option's, else settings.loop.interval
    every = parse_interval(options.interval)
    stopping = {"now": False}

    def stop(signum: int, _frame: Any) -> None:
        log.info("signal %d: stopping after the current iteration", signum)
        stopping["now"] = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    results: list[IterationResult] = []
    while not stopping["now"]:
        started = time.monotonic()
        try:
            results.append(run_iteration(settings, steps))
        except LoopBusyError as exc:  # a slow previous run on this host: skip this tick
            log.warning("%s; skipping this tick", exc)
        if options.max_iterations and len(results) >= options.max_iterations:
            break
        deadline = started + every
        while not stopping["now"] and time.monotonic() < deadline:
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
    return results


def main(argv: list[str] | None = None) -> int:
    options, settings = start_job(LoopOptions, argv, prog="shopflow loop", doc=__doc__)
    results = run(settings, options)
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
