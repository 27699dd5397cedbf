"""`shopflow broker status` answers within 2 s whether the broker runs or not, and a
stopped broker is one plain line, not a page of Kafka client ERRORs."""

from __future__ import annotations

import logging
import time

import pytest

from stream import broker
from tests.integration import kit

pytestmark = pytest.mark.integration


def _status(env: dict[str, str], monkeypatch, capsys, caplog) -> tuple[int, float, str]:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    from shared.settings import get_settings

    get_settings.cache_clear()
    try:
        with caplog.at_level(logging.DEBUG):
            started = time.monotonic()
            rc = broker.main(["status"])
            elapsed = time.monotonic() - started
    finally:
        get_settings.cache_clear()
    out = capsys.readouterr()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    return rc, elapsed, out.out + out.err + "\n".join(errors)


def test_status_of_a_stopped_broker_is_quick_and_quiet(tmp_path, monkeypatch, capsys, caplog):
    env = {
        "SHOPFLOW_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{kit.free_port()}",  # nothing listens
        "SHOPFLOW_STREAM__RUN_DIR": str(tmp_path / "run"),
    }
    rc, elapsed, output = _status(env, monkeypatch, capsys, caplog)
    assert rc == 1
    assert "not answering" in output
    assert "ERROR" not in output and "Traceback" not in output, output
    assert elapsed <= 2.0, f"status took {elapsed:.1f} s"


def test_status_of_a_running_broker_is_quick(broker_env, monkeypatch, capsys, caplog):
    rc, elapsed, output = _status(broker_env, monkeypatch, capsys, caplog)
    assert rc == 0, output
    assert ": answering;" in output
    assert elapsed <= 2.0, f"status took {elapsed:.1f} s"
