"""What the benches need to run against their own local services.

port = free_port()                       # for a broker or a metrics endpoint
settings = settings_with({"SHOPFLOW_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{port}"})
"""

from __future__ import annotations

import os
import socket
from typing import Any


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def settings_with(env: dict[str, str]) -> Any:
    """Settings read with `env` on top of this process's environment (left unchanged)."""
    from shared.settings import Settings

    saved = dict(os.environ)
    os.environ.update(env)
    try:
        return Settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)
