"""The broker and Redis of the embedded stack: which kind, where its data lives, starting it.

Two shapes, chosen by ``STREAMREC_BROKER`` / ``streamrec up --broker``:

``tansu`` (default, needs nothing but Python)
    Tansu keeps the log in memory and redis-server keeps no file: after ``streamrec down``
    every event, the consumer offsets, the model and every list are gone.
``kafka``
    Apache Kafka (KRaft, from the jars ``kafka-broker/pom.xml`` resolves through Maven)
    with its log in ``<state_dir>/kafka``, and redis-server with an append-only file in
    ``<state_dir>/redis``: ``down`` then ``up --broker kafka`` serves the same log, model
    and lists. A Redis that lost writes is caught by the worker, which compares the
    offsets it applied with the group's committed offsets and rebuilds from the log.

Either way Redis runs with ``maxmemory`` (``STREAMREC_REDIS_MAXMEMORY_MB``) and the
``noeviction`` policy: at the cap writes fail loudly, nothing is dropped silently.
"""

from __future__ import annotations

from pathlib import Path

from core.broker import APACHE_KAFKA, TANSU
from core.settings import Settings
from streamrec.stack import kafka_broker, kafka_cluster, servers
from streamrec.stack.probes import last_log_line, log_size, port_bindable
from streamrec.stack.records import (
    REDIS_AOF,
    REDIS_MEMORY,
    Echo,
    ProcessRecord,
    StackError,
    member_name,
)

#: Seconds Apache Kafka gets for its controlled shutdown before SIGKILL (it takes 1-3 s;
#: a killed broker recovers its log at the next start, which is slower).
KAFKA_STOP_TIMEOUT_S = 60.0
TANSU_WARNING = (
    "warning: the embedded Tansu broker keeps the log in memory: every event, the consumer "
    "offsets, the model and every list are gone after `streamrec down` (`streamrec up "
    "--broker kafka` keeps them)")


def broker_kind(choice: str) -> str:
    """The record kind (``tansu``/``apache-kafka``) of a ``STREAMREC_BROKER`` value."""
    return APACHE_KAFKA if choice == "kafka" else TANSU


def redis_kind(kind: str) -> str:
    """Redis keeps an append-only file exactly when the broker keeps its log."""
    return REDIS_AOF if kind == APACHE_KAFKA else REDIS_MEMORY


def stop_timeout(rec: ProcessRecord, timeout: float) -> float:
    """How long ``rec`` gets to exit before SIGKILL."""
    if rec.component == "kafka" and rec.broker_kind == APACHE_KAFKA:
        return max(timeout, KAFKA_STOP_TIMEOUT_S)
    return timeout


def _reusable_port(address: str) -> int | None:
    """The port of a previous ``host:port`` when it is free again (clients keep it)."""
    host, _, port = address.rpartition(":")
    if port.isdigit() and port_bindable(host or "127.0.0.1", int(port)):
        return int(port)
    return None


def _failed(label: str, exc: BaseException, log: Path, since: int) -> StackError:
    last = last_log_line(log, since)
    return StackError(f"the {label} did not start ({exc})" + (f": {last}" if last else "")
                      + f" (log: {log})")


def start_broker(kind: str, settings: Settings, log_dir: Path,
                 previous: ProcessRecord | None, echo: Echo) -> ProcessRecord:
    """Start the embedded broker of ``kind`` (Apache Kafka: a single node), on its
    previous ports when free."""
    if kind != TANSU:
        known = {1: previous} if previous is not None else {}
        return start_kafka_nodes(settings, 1, known, [1], echo)[0]
    port = _reusable_port(previous.address) if previous and previous.address else None
    log = log_dir / "tansu.log"
    since = log_size(log)
    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        srv = servers.start_tansu(log_dir, port=port)
    except (RuntimeError, TimeoutError, OSError) as exc:
        if isinstance(exc, servers.PrerequisiteMissing):
            raise
        raise _failed("Kafka broker (Tansu)", exc, log, since) from None
    return ProcessRecord.for_pid("kafka", srv.pid, srv.log_path, ["tansu", "broker"],
                                 srv.address, kind=TANSU, version=servers.tansu_version())


def _node_ports(rec: ProcessRecord | None, *, keep: bool) -> tuple[int, int] | None:
    """A recorded node's ``(port, controller port)``: as recorded when it runs (``keep``),
    else when both are free again; None = take new ones."""
    if rec is None or not rec.address or not rec.control_address:
        return None
    if keep:
        port, controller = rec.address, rec.control_address
        return int(port.rpartition(":")[2]), int(controller.rpartition(":")[2])
    port_, controller_ = _reusable_port(rec.address), _reusable_port(rec.control_address)
    return (port_, controller_) if port_ and controller_ else None


def start_kafka_nodes(settings: Settings, nodes: int, recorded: dict[int, ProcessRecord],
                      which: list[int], echo: Echo, *,
                      peers_alive: bool = False) -> list[ProcessRecord]:
    """Start the Apache Kafka nodes ``which`` (1-based) of a ``nodes``-node KRaft cluster
    under ``<state_dir>/kafka`` (the log survives ``down``), on the ports ``recorded``
    for them when free. With ``peers_alive`` the other nodes run and their quorum names
    every node's ports: a node whose ports are taken cannot rejoin it."""
    version = kafka_broker.pinned_version()
    if kafka_broker.jars_version(kafka_broker.KAFKA_DIR / "lib" / version) != version:
        echo(f"resolving Apache Kafka {version}'s jars with Maven (once per checkout) ...")
    known: dict[int, tuple[int, int] | None] = {}
    for index in range(1, nodes + 1):
        known[index] = _node_ports(recorded.get(index), keep=index not in which)
        if peers_alive and index in which and known[index] is None:
            raise StackError(
                f"Kafka node {index} cannot get its ports back (taken by another program) "
                "while the other nodes run: `streamrec down`, then `streamrec up`")
    specs = kafka_cluster.plan_specs(known, nodes)
    first = kafka_cluster.node_dir(settings.state_dir, which[0], nodes) / "kafka.log"
    since = log_size(first)
    try:
        started = kafka_cluster.start_nodes(settings.state_dir, specs, which=which,
                                            partitions=settings.topic_partitions)
    except (RuntimeError, TimeoutError, OSError) as exc:
        if isinstance(exc, servers.PrerequisiteMissing):
            raise
        raise _failed("Kafka broker (Apache Kafka)", exc, first, since) from None
    return [ProcessRecord.for_pid(
        member_name("kafka", broker.node_id), broker.pid, broker.log_path,
        ["java", "kafka.Kafka"], broker.address, kind=APACHE_KAFKA, version=broker.version,
        control_address=f"{broker.host}:{broker.controller_port}") for broker in started]


def start_redis(kind: str, settings: Settings, log_dir: Path,
                previous: ProcessRecord | None) -> ProcessRecord:
    """Start the embedded redis-server: with its append-only file in
    ``<state_dir>/redis`` when ``kind`` is ``aof``, else memory only."""
    port = _reusable_port(previous.address) if previous and previous.address else None
    log = log_dir / "redis.log"
    since = log_size(log)
    log_dir.mkdir(parents=True, exist_ok=True)
    data_dir = settings.state_dir / "redis" if kind == REDIS_AOF else None
    try:
        srv = servers.start_redis(log_dir, port=port, data_dir=data_dir,
                                  maxmemory_mb=settings.redis_maxmemory_mb, timeout=60.0)
    except (RuntimeError, TimeoutError, OSError) as exc:
        if isinstance(exc, servers.PrerequisiteMissing):
            raise
        raise _failed("redis-server", exc, log, since) from None
    return ProcessRecord.for_pid("redis", srv.pid, srv.log_path, ["redis-server"],
                                 srv.address, kind=kind)


def check_prerequisites(kind: str) -> None:
    """Fail before anything starts when the broker of ``kind`` cannot run here."""
    if kind == TANSU:
        servers.tansu_binary()
    else:
        kafka_broker.java_binary()
