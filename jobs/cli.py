"""The `shopflow` command: one entry point that dispatches to each job's `main(argv)`.

    shopflow ingest --all          # same as: python -m batch.ingest --all
    shopflow pipeline              # ingest -> clean -> features on the embedded default
    python -m jobs.cli models list

It lives on the top layer because it names modules of every layer below. Verbs are
imported lazily, so `shopflow --help` starts no Spark, Kafka or torch. A user's mistake
(a `UserError`: missing file or table, unknown task, broker down, model not found) is
printed as one line, `shopflow <verb>: <message>`, with exit status 2; anything else is
a bug and keeps its traceback.
"""

from __future__ import annotations

import importlib
import sys

# verb -> (module, one-line help). Each module exposes main(argv: list[str] | None) -> int.
COMMANDS: dict[str, tuple[str, str]] = {
    "pipeline": ("batch.pipeline", "run ingest -> clean -> features over the real data"),
    "ingest": ("batch.ingest", "files -> bronze Delta tables"),
    "clean": ("batch.clean", "bronze -> silver + quarantine"),
    "features": ("batch.features", "silver -> gold features and training sets"),
    "train": ("batch.train", "fine-tune a task's model, evaluate vs baselines and champion, register"),
    "models": ("batch.models_cli", "list | show | promote registered models"),
    "score": ("batch.score", "bulk-score a Delta table with a registered model"),
    "broker": ("stream.broker", "start|stop|status the embedded Kafka-protocol broker; create topics"),
    "replay": ("stream.replay", "Taobao/Diginetica files -> click events on the clicks topic"),
    "worker": ("stream.worker", "the Faust worker: clicks -> validate, enrich, score -> clicks.scored"),
    "fold": ("jobs.fold", "clicks.scored + clicks.dlq -> Delta, exactly once, incrementally"),
    "retrain": (
        "jobs.retrain",
        "fine-tune from the last trained version; promote only a challenger proven better, past the baseline gate",
    ),
    "loop": ("jobs.loop", "fold -> features -> retrain -> evaluate -> promote, --once or every 15m"),
    "runs": ("jobs.runs", "the latest tracked runs (MLflow) as a table"),
    "maintain": ("jobs.maintain", "compact + vacuum the lake, reclaim old models' weights, rotate run files"),
    "privacy": ("jobs.privacy", "migrate: rewrite tables written with raw identifiers, drop their old versions"),
    "demo": ("demo.cli", "the whole closed loop on the real data, ending in an HTML report"),
}

USER_ERROR_EXIT = 2


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: shopflow <command> [args...]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "`shopflow <command> --help` shows a command's arguments."]
    return "\n".join(lines)


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    verb, rest = argv[0], argv[1:]
    if verb not in COMMANDS:
        print(f"shopflow: unknown command {verb!r}; run `shopflow --help` for the list", file=sys.stderr)
        return USER_ERROR_EXIT
    # Imported here, after the verb is known, so an error import-time is still caught below.
    from shared.errors import is_user_error

    try:
        module = importlib.import_module(COMMANDS[verb][0])
        return int(module.main(rest) or 0)
    except Exception as exc:  # noqa: BLE001 - re-raised unless it is the user's to fix
        if not is_user_error(exc):
            raise
        print(f"shopflow {verb}: {_one_line(str(exc))}", file=sys.stderr)
        return USER_ERROR_EXIT


if __name__ == "__main__":
    sys.exit(main())
