"""The demo's options and what follows from them: the cutoff as a time, and the SHOPFLOW_*
variables that give the demo its own lake, registry, broker and ports.

    options = parse_options(DemoOptions, ["--swap-minutes", "10"])
    cutoff = parse_utc(options.cutoff)           # ConfigError on a mistake, before any work
    env = demo_environment(options)              # set in os.environ for every job and the worker
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from shared.errors import ConfigError
from shared.options import option
from shared.schemas import NoTimeZoneError, parse_timestamp
from shared.settings import REPO_ROOT


@dataclass(frozen=True)
class DemoOptions:
    workdir: Path = option(
        REPO_ROOT / "var" / "demo", help="the demo's lake, registry, broker and report (wiped first)"
    )
    cutoff: str = option("2017-11-26T01:50:00Z", help="Taobao events before this are history, later ones the stream")
    swap_minutes: float = option(15.0, help="the stream's last minutes, replayed after the loop iteration")
    sentiment_seconds: float = option(90.0, help="time budget for fine-tuning sentiment (0 skips it)")
    bad_events: int = option(24, help="deliberately malformed records sent with the stream (the dead-letter path)")
    progress: bool = option(True, help="progress bars")


def parse_utc(text: str) -> datetime:
    """--cutoff as an aware UTC time, read as every time is (`shared.schemas.parse_timestamp`)."""
    try:
        return parse_timestamp(text)
    except NoTimeZoneError as exc:
        raise ConfigError(f"--cutoff {text!r} has no time zone: end it with Z") from exc
    except ValueError as exc:
        raise ConfigError(f"--cutoff {text!r} is not an ISO-8601 time like 2017-11-26T01:50:00Z") from exc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def demo_environment(options: DemoOptions) -> dict[str, str]:
    """SHOPFLOW_* variables for the demo's own lake, registry, tracking store, run dir and ports."""
    work = options.workdir.resolve()
    return {
        "SHOPFLOW_DATA_ROOT": str(work / "data"),
        "SHOPFLOW_LAKE__ROOT": str(work / "lake"),
        "SHOPFLOW_MODELS__REGISTRY_ROOT": str(work / "registry"),
        "SHOPFLOW_METRICS_DIR": str(work / "metrics"),
        "SHOPFLOW_STREAM__RUN_DIR": str(work / "run"),
        "SHOPFLOW_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "SHOPFLOW_STREAM__METRICS_PORT": str(free_port()),
        "SHOPFLOW_STREAM__MODEL_POLL_SECONDS": "2.0",
        # Its own MLflow store too; on a store of one's own (MLFLOW_TRACKING_URI) its own
        # experiment and models, apart from the default registry's mirror.
        "SHOPFLOW_TRACKING__ROOT": str(work / "tracking"),
        "SHOPFLOW_TRACKING__EXPERIMENT": "shopflow-demo",
        "SHOPFLOW_TRACKING__MODEL_PREFIX": "shopflow-demo-",
    }
