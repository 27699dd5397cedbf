"""Helpers for the stream integration tests: ports, settings, a real model, subprocesses.

Everything here starts or reads the real thing (the embedded broker through
`stream.broker`, models through `shared.registry`, the worker as `python -m stream.worker`).
The helpers live in tests/integration/support/, one module per concern; this module
re-exports them so `from tests.integration import kit; kit.start_worker(...)` keeps working.
"""

from __future__ import annotations

import time  # noqa: F401  (tests use kit.time)

from tests.integration.support.env import REPO_ROOT, free_port, settings_from, wait_for  # noqa: F401
from tests.integration.support.lake import write_propensity_gold  # noqa: F401
from tests.integration.support.models import (  # noqa: F401
    register_propensity_from_task,
    scoring_records,
    train_propensity,
)
from tests.integration.support.topics import TopicWatcher, json_values, read_topic, send_raw, wait_all_scored  # noqa: F401
from tests.integration.support.workers import (  # noqa: F401
    metric_value,
    metrics_text,
    serving_version,
    start_worker,
    stop_worker,
    wait_serving,
)
