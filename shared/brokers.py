"""What every Kafka client of the project needs to know of the brokers, without a client:
the bootstrap servers' addresses, whether any of them accepts a connection, and which
end offset of a partition to believe.

    broker_accepts_connections("127.0.0.1:19092", timeout_s=2.0)         # promotion
    await broker_accepts_connections_async("127.0.0.1:19092", timeout_s=2.0)  # the worker
    end = confirmed_end(listed=ends[tp], fetched_highwater=probe.highwater(tp))

Reachability is a plain TCP connect: the Kafka clients retry a vanished broker for a
long time (half a minute or forever) before they say so, and callers want to know now.
"""

from __future__ import annotations

import asyncio
import socket


def bootstrap_addresses(bootstrap_servers: str) -> list[tuple[str, int]]:
    """ "host:port,[::1]:port" -> [(host, port), ...]; entries without a numeric port are skipped."""
    out: list[tuple[str, int]] = []
    for server in bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            out.append((host.strip("[]"), int(port)))
        except ValueError:
            continue
    return out


def broker_accepts_connections(bootstrap_servers: str, timeout_s: float = 2.0) -> bool:
    """Whether any bootstrap server accepts a TCP connection (blocks up to `timeout_s` per server)."""
    for host, port in bootstrap_addresses(bootstrap_servers):
        try:
            socket.create_connection((host, port), timeout=timeout_s).close()
        except OSError:
            continue
        return True
    return False


async def broker_accepts_connections_async(bootstrap_servers: str, timeout_s: float = 2.0) -> bool:
    """`broker_accepts_connections` without blocking the event loop."""
    for host, port in bootstrap_addresses(bootstrap_servers):
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
        except (TimeoutError, OSError):
            continue
        writer.close()
        return True
    return False


def confirmed_end(listed: int, fetched_highwater: int | None) -> int:
    """The end offset of a partition to believe: the listed one, raised to the high
    watermark a fetch from near it reported (None: no fetch answered).

    Tansu answers ListOffsets(latest) with the base offset of a partition's last record
    batch plus one, short of the real end when that batch holds several records, and a
    group consumer's fetch high watermark was seen short of the end mid-log. A fetch at
    (or just below) the listed end reports the right high watermark; on Kafka the two
    answers agree and this costs one fetch. Both consumers that need a partition's end
    (the worker's table recovery, `stream.transport`; the fold's drain, `jobs.fold_kafka`)
    apply this rule, each with its own client.
    """
    return max(listed, fetched_highwater or 0)
