"""The `shopflow` command: one entry point that dispatches to each job's `main(argv)`.

    shopflow ingest --all          # same as: python -m batch.ingest --all
    shopflow pipeline              # ingest -> clean -> features on the embedded default

Commands are looked up lazily so `shopflow --help` starts no Spark, Kafka or torch.
"""

from __future__ import annotations

import importlib
import sys

# command -> (module, one-line help). Each module exposes main(argv: list[str] | None).
COMMANDS: dict[str, tuple[str, str]] = {
    "pipeline": ("batch.pipeline", "run ingest -> clean -> features over the real data"),
    "ingest": ("batch.ingest", "files -> bronze Delta tables"),
    "clean": ("batch.clean", "bronze -> silver + quarantine"),
    "features": ("batch.features", "silver -> gold features and training sets"),
    "broker": ("stream.broker", "start|stop|status the embedded Kafka-protocol broker; create topics"),
    "replay": ("stream.replay", "Taobao/Diginetica files -> click events on the clicks topic"),
    "worker": ("stream.worker", "the Faust worker: clicks -> validate, enrich, score -> clicks.scored"),
    "train": ("batch.train", "fine-tune a task's model, evaluate vs baselines, register"),
    "models": ("batch.models_cli", "list | show | promote registered models"),
    "score": ("batch.score", "bulk-score a Delta table with a registered model"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: shopflow <command> [args...]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "`shopflow <command> --help` shows a command's arguments."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"shopflow: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    result = module.main(rest)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
