"""Small checks the embedded stack makes: ports, reachability, heartbeats, log tails."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from core import net
from core.redis_keys import RedisKeys

#: The line ``up`` writes into a child's log before each start (not a reason to show).
LOG_MARK = "---- streamrec up:"


def port_bindable(host: str, port: int) -> bool:
    """True when a server could listen on host:port now (:func:`core.net.listen_error`:
    SO_REUSEADDR, like servers do)."""
    return net.listen_error(host, port) is None


def log_size(path: Path) -> int:
    """Current size of a log file (0 if absent): where this run's lines start."""
    try:
        return path.stat().st_size
    except OSError:
        return 0


def last_log_line(path: Path, since: int = 0, limit: int = 200) -> str:
    """The last non-empty line written to a log after byte ``since``, shortened (for
    one-line error messages; earlier runs' lines are not this run's reason)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(since, fh.tell() - 8192))
            lines = [ln.strip() for ln in fh.read().decode("utf-8", "replace").splitlines()]
    except OSError:
        return ""
    lines = [ln for ln in lines if ln and not ln.startswith(LOG_MARK)]
    if not lines:
        return ""
    line = lines[-1]
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _listening_inodes(port: int) -> set[str] | None:
    """Inodes of the TCP sockets listening on ``port`` (any address), None without /proc."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as fh:
                rows = fh.read().splitlines()[1:]
        except OSError:
            if table.endswith("tcp"):
                return None
            continue
        for row in rows:
            cols = row.split()
            # local address "IP:PORT" in hex, state 0A = LISTEN, inode in column 10
            if len(cols) > 9 and cols[3] == "0A" and int(cols[1].rpartition(":")[2], 16) == port:
                found.add(cols[9])
    return found


def listens_on(pid: int, port: int) -> bool | None:
    """True when process ``pid`` holds a socket listening on ``port``; None when this
    system cannot tell (no /proc). Several API processes share one port (SO_REUSEPORT),
    so the port answering says nothing about one of them."""
    inodes = _listening_inodes(port)
    if inodes is None:
        return None
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:[") and link[8:-1] in inodes:
            return True
    return False


def bootstrap_reachable(bootstrap: str) -> bool:
    """True when at least one bootstrap server accepts TCP connections."""
    return net.bootstrap_reachable(bootstrap)


def redis_client(url: str) -> Any:
    """A Redis client with short timeouts (startup checks must not hang); a cluster
    client when the server at ``url`` is a node of a Redis Cluster. A ``rediss://`` URL
    is verified with this process's ``STREAMREC_REDIS_TLS_*`` files, as every other
    client (``core.connections.redis_options``)."""
    import redis

    from core.connections import redis_options
    from core.redis_client import seeds, sync_client
    from core.settings import get_settings

    base = get_settings().model_copy(update={"redis_url": url})
    cluster = base.model_copy(update={"redis_mode": "cluster"})
    opts: dict[str, Any] = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0,
                            "decode_responses": True}
    first, nodes = seeds(url)
    if len(nodes) > 1:  # only a cluster is named by several nodes
        return sync_client(cluster, **opts)
    client = redis.Redis.from_url(first, **redis_options(base), **opts)
    try:
        clustered = str(client.info("cluster").get("cluster_enabled")) == "1"
    except Exception:  # noqa: BLE001 - unreachable: the caller finds out
        return client
    if not clustered:
        return client
    client.close()
    return sync_client(cluster, **opts)


def redis_reachable(url: str) -> bool:
    """True when Redis at ``url`` answers PING."""
    client = redis_client(url)
    try:
        return bool(client.ping())
    except Exception:  # noqa: BLE001 - any failure means unreachable
        return False
    finally:
        client.close()


def worker_heartbeats(redis_url: str) -> dict[str, dict[str, str]]:
    """Every worker heartbeat hash in Redis, by worker id."""
    keys = RedisKeys()
    prefix = keys.worker("")
    client = redis_client(redis_url)
    try:
        result: dict[str, dict[str, str]] = {}
        for key in client.scan_iter(match=keys.worker_pattern, count=100):
            data = client.hgetall(key)
            if data:
                result[key[len(prefix):]] = data
        return result
    finally:
        client.close()


def drop_heartbeat(redis_url: str, pid: int) -> list[str]:
    """Remove the heartbeats of the stopped worker process ``pid`` (and its registry
    entries), which a worker removes itself when it stops cleanly, but a worker of an
    older version or one stopped with SIGKILL leaves to expire (~15 s), so that
    ``status`` listed it, stale, beside its successor. The ids removed."""
    keys = RedisKeys()
    gone = [worker_id for worker_id, beat in worker_heartbeats(redis_url).items()
            if beat.get("pid") == str(pid)]
    if not gone:
        return []
    client = redis_client(redis_url)
    try:
        for worker_id in gone:  # a key and the registry's slot each (one on a cluster too)
            client.delete(keys.worker(worker_id))
            client.zrem(keys.worker_registry, worker_id)
    finally:
        client.close()
    return gone
