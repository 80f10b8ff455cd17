"""A Redis Cluster on loopback from the same ``redis-server`` binary (``streamrec up --redis
cluster``): masters that split the 16,384 slots, each with replicas to fail over to.

Every node runs with ``cluster-enabled yes`` on a free port, its cluster state
(``nodes.conf``) and, when the broker keeps its log, its append-only file in
``<state_dir>/redis-cluster/node-<n>``. A fresh cluster is formed by the nodes meeting
(``CLUSTER MEET``), the slots being split evenly over the masters (``CLUSTER ADDSLOTS``)
and each replica following its master (``CLUSTER REPLICATE``); a node started again on its
directory and port rejoins by itself. ``cluster-node-timeout`` is short (2 s): on loopback
a master that stops answering is failed over to its replica within a few seconds.

Nodes 1..M are the masters of a fresh cluster, then M+1.. the replicas (replica ``r`` of
master ``m`` is node ``M + (r - 1) * M + m``); after a failover the roles move, which the
cluster itself tracks.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.net import MAX_PORT, bindable, free_port
from streamrec.stack.servers import ServerProcess, start_redis, stop_pid

SLOTS = 16384
#: A node's cluster bus listens this much above its port.
BUS_OFFSET = 10000
#: Milliseconds without an answer before a master is failed over (Redis's default: 15 s).
NODE_TIMEOUT_MS = 2000
READY_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class ClusterShape:
    """How many masters, and replicas per master."""

    masters: int = 3
    replicas: int = 1

    @property
    def nodes(self) -> int:
        """Every node of the cluster."""
        return self.masters * (1 + self.replicas)

    def master_of(self, node: int) -> int | None:
        """The master (1-based) a fresh cluster makes node ``node`` a replica of."""
        if node <= self.masters:
            return None
        return (node - self.masters - 1) % self.masters + 1


def cluster_port(host: str = "127.0.0.1") -> int:
    """A free port whose cluster bus port (``port + 10000``, at most ``MAX_PORT``) is free
    too."""
    for _ in range(200):
        port = free_port(host)
        if port <= MAX_PORT - BUS_OFFSET and bindable(host, port + BUS_OFFSET):
            return port
    raise RuntimeError("no free port pair (port, port + 10000) for a Redis Cluster node")


def node_dir(state_dir: Path, node: int) -> Path:
    """Where node ``node`` keeps its cluster state (and append-only file)."""
    return state_dir / "redis-cluster" / f"node-{node}"


def _shape_file(state_dir: Path) -> Path:
    return state_dir / "redis-cluster" / "shape.json"


def stored_ports(state_dir: Path, shape: ClusterShape) -> dict[int, int] | None:
    """The port of every node of the cluster of ``shape`` formed in ``state_dir`` (from
    its ``nodes.conf``), or None when there is no such cluster to rejoin."""
    try:
        if json.loads(_shape_file(state_dir).read_text()) != [shape.masters, shape.replicas]:
            return None
    except (OSError, ValueError):
        return None
    ports = {}
    for node in range(1, shape.nodes + 1):
        try:
            lines = (node_dir(state_dir, node) / "nodes.conf").read_text().splitlines()
        except OSError:
            return None
        mine = next((parts for parts in (ln.split() for ln in lines)
                     if len(parts) > 2 and "myself" in parts[2].split(",")), None)
        if mine is None:
            return None
        ports[node] = int(mine[1].split("@")[0].rpartition(":")[2])
    return ports


def clear(state_dir: Path, shape: ClusterShape) -> None:
    """Forget an earlier cluster in ``state_dir`` (a new one of ``shape`` is formed)."""
    for node in range(1, max(shape.nodes, 16) + 1):
        directory = node_dir(state_dir, node)
        for name in ("nodes.conf", "appendonly.aof", "dump.rdb"):
            (directory / name).unlink(missing_ok=True)
    _shape_file(state_dir).parent.mkdir(parents=True, exist_ok=True)
    _shape_file(state_dir).write_text(json.dumps([shape.masters, shape.replicas]))


def slot_ranges(masters: int) -> list[tuple[int, int]]:
    """The slots of each master, as inclusive ranges splitting all 16,384 evenly."""
    bounds = [round(i * SLOTS / masters) for i in range(masters + 1)]
    return [(bounds[i], bounds[i + 1] - 1) for i in range(masters)]


def _client(server: ServerProcess, timeout: float = 2.0) -> Any:
    import redis

    return redis.Redis(host=server.host, port=server.port, socket_timeout=timeout,
                       socket_connect_timeout=timeout, decode_responses=True)


def start_nodes(state_dir: Path, log_dir: Path, which: Sequence[int], *,
                ports: Mapping[int, int | None], aof: bool, maxmemory_mb: int,
                timeout: float = 20.0) -> dict[int, ServerProcess]:
    """Start the cluster nodes ``which`` (1-based) on their ``ports`` (free ones where
    None). A node whose directory holds a ``nodes.conf`` rejoins its cluster."""
    started: dict[int, ServerProcess] = {}
    try:
        for node in which:
            directory = node_dir(state_dir, node)
            directory.mkdir(parents=True, exist_ok=True)
            extra = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                     "--cluster-node-timeout", str(NODE_TIMEOUT_MS)]
            started[node] = start_redis(
                log_dir, port=ports.get(node) or cluster_port(), timeout=timeout,
                data_dir=directory if aof else None, workdir=directory,
                maxmemory_mb=maxmemory_mb, extra_args=extra,
                log_name=f"redis-{node}.log")
    except BaseException:
        for server in started.values():
            stop_pid(server.pid, timeout=5)
        raise
    return started


def is_formed(server: ServerProcess) -> bool:
    """True when the node already belongs to a cluster with its slots assigned."""
    client = _client(server)
    try:
        return int(_info(client).get("cluster_slots_assigned", 0)) == SLOTS
    finally:
        client.close()


def _info(client: Any) -> dict[str, str]:
    """``CLUSTER INFO`` as a dict (redis-py may or may not parse it)."""
    raw = client.execute_command("CLUSTER", "INFO")
    if isinstance(raw, dict):
        return {k: str(v) for k, v in raw.items()}
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def form(servers: Mapping[int, ServerProcess], shape: ClusterShape) -> None:
    """Make a fresh cluster of ``servers``: meet, split the slots over the masters, make
    each replica follow its master, then wait until every node says the cluster is ok."""
    first = servers[1]
    ids: dict[int, str] = {}
    for node, server in servers.items():
        client = _client(server)
        try:
            ids[node] = str(client.execute_command("CLUSTER", "MYID"))
            if node != 1:
                client.execute_command("CLUSTER", "MEET", first.host, first.port)
        finally:
            client.close()
    for node, (low, high) in enumerate(slot_ranges(shape.masters), start=1):
        client = _client(servers[node], timeout=10.0)
        try:
            for start in range(low, high + 1, 2000):
                client.execute_command("CLUSTER", "ADDSLOTS",
                                       *range(start, min(start + 2000, high + 1)))
        finally:
            client.close()
    _wait(servers, lambda node, c: len(_known(c)) == len(servers), "all nodes to meet")
    for node, server in servers.items():
        master = shape.master_of(node)
        if master is not None:
            client = _client(server)
            try:
                client.execute_command("CLUSTER", "REPLICATE", ids[master])
            finally:
                client.close()
    replicas = shape.masters * shape.replicas
    _wait(servers, lambda node, c: sum("slave" in line.split()[2].split(",")
                                       and "connected" in line for line in _known(c))
          == replicas, "every replica to follow its master")
    wait_ok(servers)


def _known(client: Any) -> list[str]:
    raw = client.execute_command("CLUSTER", "NODES")
    text = raw if isinstance(raw, str) else (
        raw.decode() if isinstance(raw, bytes) else "\n".join(
            f"{k} {v}" for k, v in raw.items()) if isinstance(raw, dict) else str(raw))
    return [line for line in text.splitlines() if line.strip()]


def _wait(servers: Mapping[int, ServerProcess], ok: Any, what: str,
          timeout: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while True:
        done = True
        for node, server in servers.items():
            client = _client(server)
            try:
                done = done and bool(ok(node, client))
            except Exception:  # noqa: BLE001 - a node still starting
                done = False
            finally:
                client.close()
        if done:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"Redis Cluster: timed out waiting for {what}")
        time.sleep(0.1)


def wait_ok(servers: Mapping[int, ServerProcess], timeout: float = READY_TIMEOUT_S) -> None:
    """Block until every node reports ``cluster_state:ok`` with all slots assigned."""
    _wait(servers, lambda node, c: _info(c).get("cluster_state") == "ok"
          and int(_info(c).get("cluster_slots_assigned", 0)) == SLOTS,
          "cluster_state:ok on every node", timeout)
