"""The whole loop on the real data, start to finish, ending in an offline HTML report.

usage: shopflow demo [--workdir var/demo] [--cutoff 2017-11-26T01:50:00Z]
                     [--swap-minutes 15] [--sentiment-seconds 90]
       (also: python -m demo ...)

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
import sys

from demo.options import DemoOptions, demo_environment, parse_utc
from shared.options import parse_options
from shared.settings import get_settings


def main(argv: list[str] | None = None) -> int:
    options = parse_options(DemoOptions, argv, prog="shopflow demo", description=__doc__.split("\n")[0])
    parse_utc(options.cutoff)  # a mistake shows before anything is wiped or started
    # The stages load Spark, torch, plotly and the stream: only once the options are good.
    from demo.run import run_demo

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
