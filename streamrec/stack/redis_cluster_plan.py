"""``streamrec up --redis cluster``: keep, restart or start the nodes of the embedded Redis
Cluster (:mod:`streamrec.stack.redis_cluster`) for one ``up`` run (:class:`Plan`).

Nodes are recorded as ``redis``, ``redis-2``, ...; a dead node is started again on its
port and directory, where it rejoins the cluster by itself (a master that was failed
over comes back as a replica of its successor). A cluster of another shape or kind
(memory only vs. append-only file) is stopped and a new one formed, and the worker and
the API restart against it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from streamrec.stack import infra, redis_cluster
from streamrec.stack.records import ProcessRecord, StackError, member_name, members
from streamrec.stack.servers import ServerProcess

if TYPE_CHECKING:
    from streamrec.stack.plan import Plan

#: ``ProcessRecord.kind`` prefix of a cluster node (``cluster-aof``, ``cluster-memory``).
CLUSTER_KIND = "cluster"


def _port(rec: ProcessRecord | None) -> int | None:
    return rec.port() if rec is not None else None


def bring_up_redis_cluster(plan: Plan) -> None:
    """Keep the running nodes, start the dead ones (or a whole new cluster), wait until
    the cluster is ok, and record every node; the Redis URL names them all."""
    settings, state, echo = plan.settings, plan.state, plan.echo
    shape = redis_cluster.ClusterShape(settings.redis_cluster_masters,
                                       settings.redis_cluster_replicas)
    aof = infra.redis_kind(plan.kind) == infra.REDIS_AOF
    kind = f"{CLUSTER_KIND}-{infra.redis_kind(plan.kind)}"
    recorded = members(plan.old.processes, "redis")
    running = [rec for rec in recorded if rec.name in plan.alive]
    if recorded and (recorded[0].kind != kind or len(recorded) != shape.nodes):
        if running:
            echo(f"replacing the embedded Redis ({len(recorded)} node(s)) by a Redis Cluster "
                 f"of {shape.nodes} nodes; the worker and the API restart against it")
            for rec in running:
                plan.drop(rec)
            plan.restart_dependents = True
        recorded, running = [], []
    by_index = {rec.index: rec for rec in recorded}
    dead = [i for i in range(1, shape.nodes + 1) if member_name("redis", i) not in plan.alive]
    known = redis_cluster.stored_ports(settings.state_dir, shape)
    # A cluster rejoins from its nodes' directories when they hold its state (and, for
    # one without files, while some node still runs); otherwise a new one is formed.
    fresh = known is None or (not aof and not running)
    if fresh:
        redis_cluster.clear(settings.state_dir, shape)
    for i in dead:
        if i in by_index and not fresh:
            echo(f"Redis Cluster node {i} (pid {by_index[i].pid}) is gone: starting it again")
    servers: dict[int, ServerProcess] = {}
    if dead:
        ports = {i: None if fresh or known is None else _port(by_index.get(i)) or known[i]
                 for i in dead}
        try:
            servers = redis_cluster.start_nodes(
                settings.state_dir, plan.log_dir, dead, ports=ports, aof=aof,
                maxmemory_mb=settings.redis_maxmemory_mb)
        except (RuntimeError, TimeoutError, OSError) as exc:
            raise StackError(f"a Redis Cluster node did not start ({exc}); see "
                             f"{plan.log_dir}") from None
        for i, server in servers.items():
            state.processes[member_name("redis", i)] = ProcessRecord.for_pid(
                member_name("redis", i), server.pid, server.log_path,
                ["redis-server", "--cluster-enabled"], server.address, kind=kind)
    every = {i: _server(state.processes[member_name("redis", i)])
             for i in range(1, shape.nodes + 1)}
    try:
        if fresh:
            echo(f"forming a Redis Cluster: {shape.masters} masters, "
                 f"{shape.replicas} replica(s) each")
            redis_cluster.form(every, shape)
        else:
            redis_cluster.wait_ok(every)
    except TimeoutError as exc:
        raise StackError(f"{exc}; see {plan.log_dir}/redis-*.log") from None
    state.redis_url = "redis://" + ",".join(s.address for s in every.values()) + "/0"


def _server(rec: ProcessRecord) -> ServerProcess:
    host, _, port = rec.address.rpartition(":")
    return ServerProcess(rec.name, host, int(port), rec.pid, Path(rec.log))
