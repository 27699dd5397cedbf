"""Runs in MLflow, where people compare them: every train, retrain, loop iteration (its
steps nested) and demo (its stages nested) is a run holding its task, settings (secrets
masked), seed, per-epoch figures, test metrics with their intervals, the promotion
decision and its reason, the Delta tables and versions it read, the code commit and the
registry version it made. The model registry stays the source of truth; its versions and
aliases are mirrored into MLflow's (shared/tracking_models.py) at every run start and
after every promotion.

    with track_run(settings, "train", task="propensity", params=options) as run:
        ...
        registered(settings, "propensity", version)   # the registry version this run made
        run.log_document(doc)                          # whatever the job's metrics JSON holds
    mirror_aliases(settings, "propensity")             # after a registry alias moved

A run opened inside another becomes its nested run; a loop step's run (`adoptable=True`)
is taken over by the job it runs when that job opens a run of the same kind, so a retrain
in the loop is one run, nested under its iteration.

Tracking never stops the work: a store that does not answer costs one WARNING and at most
one request timeout (`settings.tracking.request_timeout_seconds`, no retries), then is left
alone for `retry_after_seconds`. MLflow is imported only when a run starts (it takes a
second or two), so jobs that do not track stay fast.
"""

from __future__ import annotations

import contextvars
import dataclasses
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from shared.code_version import process_code_version
from shared.registry import ModelRegistry
from shared.settings import Settings, TrackingSettings
from shared.tracking_data import Flat, TableRead, flatten, mask_url, params_of, tables_read
from shared.tracking_models import sync_task

log = logging.getLogger(__name__)

KIND_TAG = "shopflow.kind"
TASK_TAG = "shopflow.task"
REGISTRY_VERSION_TAG = "shopflow.registry.version"
REGISTRY_PATH_TAG = "shopflow.registry.path"
# Manifest fields the run has already (from the job's document) or that are too big to tag.
_MANIFEST_SKIP = ("files", "metrics", "baseline_metrics", "reproduce", "training_data", "training", "evaluation")


def tracking_uri(settings: Settings) -> str:
    """MLFLOW_TRACKING_URI (MLflow's own variable) if set, else `settings.tracking.uri`,
    else the SQLite file under `settings.tracking.root`."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or settings.tracking.uri
    return uri or f"sqlite:///{(Path(settings.tracking.root) / 'mlflow.db').resolve()}"


def model_name(settings: Settings, task: str) -> str:
    """The MLflow registered model that mirrors `task`'s registry."""
    return f"{settings.tracking.model_prefix}{task}"


_SPENT = [0.0]  # seconds this process spent in tracking (connecting, logging, syncing)


def overhead_seconds() -> float:
    """Seconds this process has spent in tracking so far: what tracking added to its runs."""
    return _SPENT[0]


def _answers(uri: str, timeout_s: float) -> bool:
    """For an http(s) store, whether its server answers an HTTP request within `timeout_s`
    (any status counts): a store that refuses, or accepts and never answers, is known for
    down before MLflow is even imported (which takes seconds of its own)."""
    import urllib.error
    import urllib.request

    parsed = urlparse(uri)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return True
    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s).close()
    except urllib.error.HTTPError:
        return True  # it answered (a proxy's 401 or a 404 is an answer)
    except (OSError, ValueError):
        return False
    return True


class Store:
    """One tracking store of this process: its client, its experiment, and whether it is
    down (then every call is skipped until `retry_after_seconds` have passed)."""

    def __init__(self, uri: str, config: TrackingSettings) -> None:
        self.uri = uri
        self.config = config
        self.client: Any = None
        self.experiment_id: str | None = None
        self.down_until = 0.0

    @property
    def down(self) -> bool:
        return time.monotonic() < self.down_until

    def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """`fn(*args, **kwargs)`, or None when the store is down or the call fails (the
        first failure of an outage is one WARNING; the store is then left alone)."""
        if self.down:
            return None
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - tracking must never stop training or promotion
            self.down_until = time.monotonic() + self.config.retry_after_seconds
            log.warning(
                "experiment tracking is off for %.0f s: %s failed at %s (%s: %s); training and promotion go on",
                self.config.retry_after_seconds,
                what,
                mask_url(self.uri),
                type(exc).__name__,
                " ".join(str(exc).split())[:300],
            )
            return None
        finally:
            _SPENT[0] += time.perf_counter() - started

    def connect(self) -> bool:
        """Import MLflow, open the client and find (or create) the experiment once."""
        if self.experiment_id is not None:
            return not self.down
        return self.call("connecting", self._connect) is not None and self.experiment_id is not None

    def _connect(self) -> bool:
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(self.config.request_timeout_seconds))
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(self.config.request_max_retries))
        if not _answers(self.uri, self.config.request_timeout_seconds):
            raise ConnectionError(f"no answer within {self.config.request_timeout_seconds} s")
        default_store = self.uri.startswith("sqlite:///") and not self.config.uri
        if default_store:
            Path(self.config.root).mkdir(parents=True, exist_ok=True)
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        experiment = self.client.get_experiment_by_name(self.config.experiment)
        if experiment is None:
            location = (Path(self.config.root) / "artifacts").resolve().as_uri() if default_store else None
            try:
                self.experiment_id = self.client.create_experiment(self.config.experiment, artifact_location=location)
            except Exception:  # another process created it meanwhile
                experiment = self.client.get_experiment_by_name(self.config.experiment)
                if experiment is None:
                    raise
        if experiment is not None:
            self.experiment_id = experiment.experiment_id
        return True

    def sync(self, settings: Settings, tasks: list[str], runs: Mapping[int, str] | None = None) -> None:
        """Mirror the registry's versions and aliases of `tasks` into MLflow."""
        registry = ModelRegistry(settings.models.registry_root)
        for task in tasks:
            self.call(
                f"mirroring the {task} aliases",
                sync_task,
                self.client,
                registry,
                task,
                model_name(settings, task),
                runs=runs,
            )


_STORES: dict[tuple[str, TrackingSettings], Store] = {}


def store_for(settings: Settings) -> Store | None:
    """This process's Store for the settings' tracking URI; None when tracking is off."""
    if not settings.tracking.enabled:
        return None
    key = (tracking_uri(settings), settings.tracking)
    if key not in _STORES:
        _STORES[key] = Store(*key)
    return _STORES[key]


@dataclass
class TrackedRun:
    """One run; every method is a no-op once the store is down (or tracking is off)."""

    kind: str
    task: str | None
    name: str
    run_id: str | None = None
    store: Store | None = None
    adoptable: bool = False  # a loop step's run, taken over by the job it runs
    adopted: bool = False
    documented: bool = False
    registered: dict[str, int] = field(default_factory=dict)  # task -> registry version

    @property
    def active(self) -> bool:
        return self.run_id is not None and self.store is not None and not self.store.down

    def log_params(self, params: Mapping[str, Any], prefix: str = "") -> None:
        self._batch("logging params", params={**params_of(params, prefix)})

    def log_tags(self, tags: Mapping[str, Any]) -> None:
        self._batch("logging tags", tags={k: str(v) for k, v in tags.items()})

    def log_document(self, doc: Mapping[str, Any], *, skip: tuple[str, ...] = ("args",)) -> None:
        """Whatever a job's document holds: numbers as metrics, lists of numbers as
        per-step series, the rest as tags, the Delta tables it read as dataset inputs."""
        if not self.active:
            return
        self.documented = True
        self._log_flat(flatten(doc, skip=skip))
        context = "training" if self.kind in ("train", "retrain") else "input"
        self.log_tables(tables_read(doc), context=context)

    def log_tables(self, tables: list[TableRead], *, context: str = "training") -> None:
        if not self.active or not tables:
            return
        from mlflow.entities import Dataset, DatasetInput, InputTag

        inputs = []
        for t in tables:
            # MLflow's own Delta source (mlflow.data) leaves version 0 out; this says it.
            source = json.dumps({"path": t.path, "delta_table_version": t.version}, sort_keys=True)
            dataset = Dataset(
                name=t.name,
                digest=hashlib.sha256(source.encode()).hexdigest()[:8],
                source_type="delta_table",
                source=source,
            )
            inputs.append(DatasetInput(dataset=dataset, tags=[InputTag("mlflow.data.context", context)]))
        assert self.store is not None
        self.store.call("logging the tables read", self.store.client.log_inputs, self.run_id, datasets=inputs)

    def log_registered(self, settings: Settings, task: str, version: int) -> None:
        """The registry version this run made: its number and path, the manifest's own
        fields (the code commit, the libraries, a gate's figures, ...), and its MLflow
        model version, linked to this run (its files copied only when the settings ask)."""
        if not self.active:
            return
        assert self.store is not None
        registry = ModelRegistry(settings.models.registry_root)
        path = registry.path(task, version)
        manifest = registry.manifest(task, version).to_dict()
        self.registered[task] = int(version)
        self.log_tags({REGISTRY_VERSION_TAG: version, REGISTRY_PATH_TAG: path})
        flat = flatten(manifest, prefix="manifest.", skip=_MANIFEST_SKIP)
        reproduce = manifest.get("reproduce") or {}
        flat.update(flatten({k: reproduce.get(k) for k in ("code", "libraries")}, prefix="manifest.reproduce."))
        self._log_flat(flat)
        self.store.sync(settings, [task], runs={int(version): self.run_id} if self.run_id else None)
        if settings.tracking.log_model_files:
            self.store.call("copying the model files", self.store.client.log_artifacts, self.run_id, str(path), "model")

    def _log_flat(self, flat: Flat) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, 0) for k, v in flat.metrics.items()]
        metrics += [Metric(k, v, now, step) for k, values in flat.series.items() for step, v in enumerate(values)]
        self._batch("logging metrics", metrics=metrics, tags=flat.tags)

    def _batch(
        self, what: str, *, metrics: list[Any] | None = None, params: Mapping[str, str] | None = None, tags=None
    ) -> None:
        if not self.active:
            return
        from mlflow.entities import Param, RunTag

        assert self.store is not None
        self.store.call(
            what,
            self.store.client.log_batch,
            self.run_id,
            metrics=metrics or [],
            params=[Param(k, v) for k, v in (params or {}).items()],
            tags=[RunTag(k, v) for k, v in (tags or {}).items()],
        )


_ACTIVE: contextvars.ContextVar[tuple[TrackedRun, ...]] = contextvars.ContextVar("shopflow_tracked_runs", default=())


def current_run() -> TrackedRun | None:
    """The innermost tracked run open in this context, if any."""
    stack = _ACTIVE.get()
    return stack[-1] if stack else None


def _params_of(options: Any) -> dict[str, Any]:
    if options is None:
        return {}
    if dataclasses.is_dataclass(options) and not isinstance(options, type):
        return {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}
    return dict(options)


def _log_start(run: TrackedRun, settings: Settings, params: Any) -> None:
    """What every run holds from its start: the task, the options (and seed), the settings."""
    options = _params_of(params)
    run.log_params(
        {
            **({"task": run.task} if run.task else {}),
            **({"seed": options["seed"]} if "seed" in options else {}),
            **params_of(options, "args."),
            **params_of(settings.model_dump(mode="json"), "settings."),
        }
    )


@contextmanager
def track_run(
    settings: Settings,
    kind: str,
    *,
    task: str | None = None,
    name: str | None = None,
    params: Any = None,
    adoptable: bool = False,
) -> Iterator[TrackedRun]:
    """A run for the body of the `with` (FINISHED, or FAILED when it raises), nested
    under the run open around it; the registry's aliases are mirrored first."""
    stack = _ACTIVE.get()
    top = stack[-1] if stack else None
    if top is not None and top.adoptable and not top.adopted and top.kind == kind:
        # A loop step's run: the job it runs logs into it rather than one level deeper.
        top.adopted = True
        top.task = top.task or task
        if top.active:
            if task:
                top.log_tags({TASK_TAG: task})
            _log_start(top, settings, params)
        yield top
        return

    run = TrackedRun(kind=kind, task=task, name=name or kind, adoptable=adoptable)
    store = store_for(settings)
    if store is not None and store.connect():
        run.store = store
        registry = ModelRegistry(settings.models.registry_root)
        store.sync(settings, [task] if task else registry.tasks())
        parent = next((r.run_id for r in reversed(stack) if r.run_id), None)
        code = process_code_version()
        tags = {
            KIND_TAG: kind,
            "mlflow.runName": run.name,
            "mlflow.source.git.commit": code.get("commit") or "unknown",
            "shopflow.code.uncommitted_changes": str(code.get("uncommitted_changes")),
            **({TASK_TAG: task} if task else {}),
            **({"mlflow.parentRunId": parent} if parent else {}),
        }
        created = store.call(
            "starting a run", store.client.create_run, store.experiment_id, tags=tags, run_name=run.name
        )
        if created is not None:
            run.run_id = created.info.run_id
            _log_start(run, settings, params)
    token = _ACTIVE.set((*stack, run))
    status = "FAILED"
    try:
        yield run
        status = "FINISHED"
    finally:
        _ACTIVE.reset(token)
        if run.active and run.store is not None:
            run.store.call("ending the run", run.store.client.set_terminated, run.run_id, status)


def registered(settings: Settings, task: str, version: int) -> None:
    """Tell the open run (if any) that it made registry version `version` of `task`."""
    run = current_run()
    if run is not None:
        run.log_registered(settings, task, version)


def mirror_aliases(settings: Settings, task: str) -> None:
    """After a registry alias moved: move MLflow's too (a no-op when tracking is off or
    the store is down; the next run start catches up)."""
    store = store_for(settings)
    if store is not None and store.connect():
        run = current_run()
        runs = {v: run.run_id for t, v in run.registered.items() if t == task} if run and run.run_id else None
        store.sync(settings, [task], runs=runs)
