"""python -m demo [--workdir var/demo] ...: the same as `shopflow demo`."""

import sys

from demo.cli import main

sys.exit(main())
