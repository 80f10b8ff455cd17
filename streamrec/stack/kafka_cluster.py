"""A KRaft cluster of several Apache Kafka nodes on loopback (``streamrec up --brokers 3``).

Every node is broker and controller at once (a static quorum of all nodes: with three, one
may die and the other two keep a majority), listens on free loopback ports and keeps its
log in ``<state_dir>/kafka/node-<id>``; a single node keeps the layout of
:func:`streamrec.stack.kafka_broker.start_kafka` (``<state_dir>/kafka``), so a one-broker
stack's log is found where it always was.

The quorum's voters name every node's controller port, so a node that died is started
again on its recorded ports while the others run (:func:`start_nodes` with ``which``);
when the whole cluster restarts, free ports are taken again. Replication follows the
cluster size (:func:`replication_for`): three nodes give every topic, internal ones
included, 3 replicas and ``min.insync.replicas`` 2, so an ``acks=all`` write survives
the loss of any one node and still needs two copies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from core.net import free_port
from streamrec.stack.kafka_broker import (
    JAVA_OPTS,
    KafkaBroker,
    KafkaNodeSpec,
    new_cluster_id,
    quorum_voters,
    resolve_jars,
    start_node,
    stored_cluster_id,
    wait_ready,
)
from streamrec.stack.servers import stop_pid

#: A cluster fences a node that missed heartbeats this long and moves its partitions'
#: leadership to the others: while it is not fenced, writes to the partitions it led
#: wait (Kafka's default is 9 s; on loopback a shorter wait costs nothing).
CLUSTER_PROPERTIES = {"broker.session.timeout.ms": "4000",
                      "broker.heartbeat.interval.ms": "1000"}


def replication_for(nodes: int) -> tuple[int, int]:
    """``(replication factor, min.insync.replicas)`` for a cluster of ``nodes``: three
    copies where three nodes exist, and acks=all writes that need all but one of them."""
    replicas = max(1, min(nodes, 3))
    return replicas, max(1, replicas - 1)


def node_dir(state_dir: Path, node_id: int, nodes: int) -> Path:
    """Where node ``node_id`` of a ``nodes``-node cluster keeps config, log and data."""
    if nodes == 1:
        return state_dir / "kafka"
    return state_dir / "kafka" / f"node-{node_id}"


def plan_specs(known: Mapping[int, tuple[int, int] | None], nodes: int,
               host: str = "127.0.0.1") -> list[KafkaNodeSpec]:
    """Node specs 1..``nodes``: a node's recorded ``(port, controller port)`` when
    ``known`` has them, else free ports."""
    specs = []
    for node_id in range(1, nodes + 1):
        ports = known.get(node_id)
        port, controller = ports if ports else (free_port(host), free_port(host))
        specs.append(KafkaNodeSpec(node_id, port, controller, host))
    return specs


def cluster_id_of(state_dir: Path, nodes: int) -> str:
    """The cluster id an earlier start formatted any node with, else a new one (a node
    formatted with another id would never join the others)."""
    for node_id in range(1, nodes + 1):
        found = stored_cluster_id(node_dir(state_dir, node_id, nodes) / "data")
        if found:
            return found
    return new_cluster_id()


def start_nodes(state_dir: Path, specs: Sequence[KafkaNodeSpec], *,
                which: Sequence[int] | None = None, jars_dir: Path | None = None,
                partitions: int = 4, extra: Mapping[str, str] | None = None,
                java_opts: Sequence[str] = JAVA_OPTS, timeout: float = 90.0
                ) -> list[KafkaBroker]:
    """Start the nodes ``which`` (default: all of ``specs``) of the cluster ``specs``
    describes, and wait until each is registered and unfenced.

    All nodes start before any is waited for: a quorum forms only once a majority runs.
    On failure every node started here is stopped again.
    """
    jars = resolve_jars(jars_dir)
    nodes = len(specs)
    voters = quorum_voters(specs)
    cluster = cluster_id_of(state_dir, nodes)
    replicas, _ = replication_for(nodes)
    if nodes > 1:
        extra = {**CLUSTER_PROPERTIES, **(extra or {})}
    wanted = set(which if which is not None else (s.node_id for s in specs))
    started: list[KafkaBroker] = []
    try:
        for spec in specs:
            if spec.node_id in wanted:
                started.append(start_node(
                    node_dir(state_dir, spec.node_id, nodes), spec, voters=voters,
                    cluster_id=cluster, jars_dir=jars, replication=replicas,
                    partitions=partitions, extra=extra, java_opts=java_opts, wait=False))
        for broker in started:
            wait_ready(broker, timeout=timeout)
    except BaseException:
        for broker in started:
            stop_pid(broker.pid, timeout=5)
        raise
    return started


def bootstrap_of(brokers: Sequence[KafkaBroker] | Sequence[str]) -> str:
    """The ``host:port,...`` bootstrap list of a cluster (any live node answers for all)."""
    return ",".join(b if isinstance(b, str) else b.address for b in brokers)
