"""Run the batch pipeline end to end: ingest -> clean -> features.

    python -m batch.pipeline            # or: shopflow pipeline
    spark-submit batch/pipeline.py

Each step is its own job with its own metrics JSON; rerunning is cheap because every
step skips work whose inputs did not change.
"""

from __future__ import annotations

import sys

from batch import clean, features, ingest


def main(argv: list[str] | None = None) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    for step in (lambda: ingest.main(["--all"]), lambda: clean.main([]), lambda: features.main([])):
        code = step()
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
