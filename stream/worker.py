"""Run the scoring worker: clicks -> validate, pseudonymize, enrich, score -> clicks.scored.

    shopflow worker                     # or: python -m stream.worker
    SHOPFLOW_STREAM__METRICS_PORT=9200 shopflow worker

Reads everything from shared.settings (SHOPFLOW_* variables). Exits nonzero when an agent
dies (status 70), so a supervisor restarts it; offsets of the batch in flight are not
committed, so the restart scores that batch again (at-least-once, same features).
"""

from __future__ import annotations

import argparse
import logging
import sys

from shared.settings import get_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shopflow worker", description=__doc__.split("\n\n")[0])
    parser.parse_args(argv)
    settings = get_settings()

    import faust

    from stream.app import create_app

    app = create_app(settings)
    # Snapshot and champion load before the consumer starts (see Pipeline.load).
    app.shopflow["pipeline"].load()  # type: ignore[attr-defined]
    worker = faust.Worker(app, loglevel=settings.log_level.lower(), quiet=True)
    # The per-connection chatter of the Kafka clients drowns the worker's own lines.
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    logging.getLogger("kafka").setLevel(logging.WARNING)
    worker.execute_from_commandline()  # runs until SIGTERM/SIGINT, then exits
    return 0


if __name__ == "__main__":
    sys.exit(main())
