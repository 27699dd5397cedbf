"""Run the batch pipeline end to end: ingest -> clean -> features.

usage: python -m batch.pipeline [--force]        # or: shopflow pipeline
       spark-submit batch/pipeline.py

Each step is its own job with its own metrics JSON; rerunning is cheap because every
step skips work whose inputs did not change (`--force` rebuilds clean and features).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # spark-submit batch/pipeline.py runs this file as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.options import option, parse_options


@dataclass(frozen=True)
class PipelineOptions:
    force: bool = option(False, help="rebuild silver and gold even if their inputs did not change")


def steps(options: PipelineOptions) -> list[tuple[str, list[str]]]:
    """(job module, argv) of each step, in order."""
    force = ["--force"] if options.force else []
    return [("batch.ingest", ["--all"]), ("batch.clean", force), ("batch.features", force)]


def main(argv: list[str] | None = None) -> int:
    options = parse_options(PipelineOptions, argv, prog="shopflow pipeline", description=__doc__.split("\n\n")[0])
    import importlib

    for module, step_argv in steps(options):
        code = importlib.import_module(module).main(step_argv)
        if code:
            return int(code)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
