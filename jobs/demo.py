"""The whole loop on the real data, start to finish, ending in an offline HTML report.

usage: shopflow demo [--workdir var/demo] [--cutoff 2017-11-26T01:50:00Z]
                     [--swap-minutes 15] [--sentiment-seconds 90]
       (also: python -m jobs.demo ...)

1. batch over the history: the Taobao events before the cutoff, the orders, the reviews
   -> bronze -> silver -> gold; the propensity champion is trained on that early history;
   sentiment is fine-tuned within a time budget and the test reviews bulk-scored in Spark;
2. the embedded broker and a worker start; the Taobao events after the cutoff are replayed
   at full speed (all but the last `--swap-minutes`);
3. one loop iteration: fold -> features -> retrain -> evaluate -> promote (or not);
4. the last minutes are replayed: after a promotion the worker serves the new version,
   visible in the scored events; a second fold brings them into the lake too;
5. everything stops; the report (and its data as JSON) is written and its path printed.

Everything lives under --workdir (wiped at the start), on free loopback ports, so the demo
never touches the default lake, registry or broker.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from shared.errors import ConfigError
from shared.options import option, parse_options
from shared.settings import REPO_ROOT, get_settings

log = logging.getLogger("jobs.demo")

TAOBAO_DIR = "taobao_user_behavior"


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


@dataclass
class Stage:
    name: str
    started_at: float
    seconds: float = 0.0
    counts: dict[str, Any] = field(default_factory=dict)


class Progress:
    """Stage lines with counts and elapsed time: what a person watching the demo sees."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.stages: list[Stage] = []
        self.started = time.monotonic()

    def run(self, name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        number = len(self.stages) + 1
        print(f"[{number}/{self.total}] {name} ...", flush=True)
        stage = Stage(name, time.time())
        began = time.monotonic()
        stage.counts = fn() or {}
        stage.seconds = round(time.monotonic() - began, 2)
        self.stages.append(stage)
        shown = ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in stage.counts.items())
        print(
            f"[{number}/{self.total}] {name}: {shown} ({stage.seconds:.1f} s; "
            f"{time.monotonic() - self.started:.0f} s in)",
            flush=True,
        )
        return stage.counts


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_utc(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ConfigError(f"--cutoff {text!r} is not an ISO-8601 time like 2017-11-26T01:50:00Z") from exc
    if value.tzinfo is None:
        raise ConfigError(f"--cutoff {text!r} has no time zone: end it with Z")
    return value.astimezone(timezone.utc)


def demo_environment(options: DemoOptions) -> dict[str, str]:
    """SHOPFLOW_* variables for the demo's own lake, registry, run dir and ports."""
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
    }


def history_data(source_root: Path, target: Path, cutoff: datetime) -> dict[str, int]:
    """The demo's data folder: every source as is, except Taobao cut at `cutoff`.

    The other sources are linked, not copied; the Taobao file keeps its lines before the
    cutoff byte for byte, so batch ids equal the ids replay gives the same rows.
    """
    target.mkdir(parents=True, exist_ok=True)
    for entry in source_root.iterdir():
        if entry.is_dir() and entry.name != TAOBAO_DIR:
            (target / entry.name).symlink_to(entry.resolve())
    (target / TAOBAO_DIR).mkdir(exist_ok=True)
    limit = int(cutoff.timestamp())
    kept = later = 0
    for src in (source_root / TAOBAO_DIR).glob("*.csv"):
        with src.open("rb") as fin, (target / TAOBAO_DIR / src.name).open("wb") as fout:
            for line in fin:
                fields = line.rstrip(b"\r\n").split(b",")
                ts = int(fields[4]) if len(fields) == 5 and fields[4].isdigit() else None
                if ts is None or ts < limit:
                    fout.write(line)  # malformed lines stay with the history: batch quarantines them
                    kept += 1
                else:
                    later += 1
    return {"history_lines": kept, "stream_lines": later}


# What producers get wrong, one of each kind per round: the worker must dead-letter every
# one with its reason and score the valid events around them.
_BAD = (
    ("not JSON", 'view,4625350,"not json"'),
    ("timestamp -1", '{"event_id":"bad-ts-%d","user_id":"u1","item_id":"1","event_type":"view","ts":-1}'),
    (
        "year 2150",
        '{"event_id":"bad-yr-%d","user_id":"u1","item_id":"1","event_type":"view","ts":"2150-01-01T00:00:00Z"}',
    ),
    (
        "blank user",
        '{"event_id":"bad-user-%d","user_id":" ","item_id":"1","event_type":"view","ts":"2017-11-26T02:00:00Z"}',
    ),
    (
        "number for a string",
        '{"event_id":"bad-type-%d","user_id":"u1","item_id":4625350,"event_type":"view","ts":"2017-11-26T02:00:00Z"}',
    ),
    (
        "unknown event type",
        '{"event_id":"bad-kind-%d","user_id":"u1","item_id":"1","event_type":"wishlist","ts":"2017-11-26T02:00:00Z"}',
    ),
    (
        "lone surrogate",
        '{"event_id":"bad-sur-%d","user_id":"\\ud800","item_id":"1","event_type":"view","ts":"2017-11-26T02:00:00Z"}',
    ),
    ("missing item", '{"event_id":"bad-miss-%d","user_id":"u1","event_type":"view","ts":"2017-11-26T02:00:00Z"}'),
)


def bad_records(n: int) -> list[Any]:
    """`n` malformed records of the kinds above, as replay's MalformedRow (sent raw)."""
    from stream.replay import MalformedRow

    out = []
    for i in range(n):
        what, template = _BAD[i % len(_BAD)]
        raw = template % i if "%d" in template else template
        out.append(MalformedRow(raw=raw, where=f"demo bad record {i}", error=what))
    return out


def main(argv: list[str] | None = None) -> int:
    options = parse_options(DemoOptions, argv, prog="shopflow demo", description=__doc__.split("\n")[0])
    parse_utc(options.cutoff)  # a mistake shows before anything is wiped or started
    from jobs.demo_run import run_demo

    source_root = get_settings().data_root  # the real data, before the demo's own settings
    if options.workdir.exists():
        shutil.rmtree(options.workdir)
    env = demo_environment(options)
    os.environ.update(env)  # the worker process and every job read the same settings
    # The stage lines are the demo's output; the libraries' own progress bars are noise here.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_DISABLE", "0" if options.progress else "1")
    get_settings.cache_clear()
    settings = get_settings()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    report = run_demo(settings, options, env, source_root)
    print(f"report: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
