"""Redis clients for every process, one Redis or a Redis Cluster, made in one place.

``STREAMREC_REDIS_MODE=cluster`` makes ``STREAMREC_REDIS_URL`` the address of any node of
a Redis Cluster (the embedded one of ``streamrec up --redis cluster``, or ElastiCache in
cluster mode): the clients then learn the slot map from it, follow ``MOVED``/``ASK``
redirections and fail over with the cluster. Everything above uses the same calls either
way, with the same key names (``core.redis_keys`` puts hash tags in both modes):

* :func:`async_client` / :func:`sync_client` -- ``redis.asyncio.Redis`` or
  ``RedisCluster`` (sync: ``redis.Redis`` or ``redis.RedisCluster``), with the
  :func:`timeouts` of the settings;
* :class:`Lua` -- a script run by ``EVALSHA`` (``EVAL`` when the server lost it: a
  restarted or promoted node), whose keys must share one slot: :func:`one_slot` checks it
  on every call, in standalone mode too, so a test against one Redis catches a script
  that a cluster would refuse;
* :func:`run_batch` -- commands and script calls in one pipeline (one round trip per
  node), the replies in order;
* :func:`get_many` -- GET of many keys of any slots (``MGET`` needs one slot);
* :func:`topology` -- ``{"mode", "nodes", "masters"}`` for ``streamrec status``;
* :func:`memory_info` / :func:`memory_info_async` -- used memory against ``maxmemory``,
  summed over a cluster's masters, with the ratio of the fullest one (the first to refuse
  writes: ``maxmemory`` is per node).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import RedisError

from core.connections import redis_options
from core.redis_keys import RedisKeys, tag_of
from core.settings import Settings

STANDALONE, CLUSTER = "standalone", "cluster"


class CrossSlot(ValueError):
    """A script call whose keys do not share one hash slot (a cluster would refuse it)."""


def is_cluster(settings: Settings) -> bool:
    """True when ``settings`` name a Redis Cluster."""
    return settings.redis_mode == CLUSTER


def seeds(url: str) -> tuple[str, list[tuple[str, int]]]:
    """A cluster URL may name several nodes (``redis://h1:p1,h2:p2/0``), so a client finds
    the cluster while one of them is down: the URL of the first, and every ``(host,
    port)``."""
    scheme, sep, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    auth, at, hosts = netloc.rpartition("@")
    nodes = []
    for part in hosts.split(","):
        host, colon, port = part.strip().rpartition(":")
        if not colon or not port.isdigit():
            host, port = part.strip(), "6379"
        nodes.append((host.strip("[]") or "127.0.0.1", int(port)))
    first = f"{scheme}{sep}{auth}{at}{hosts.split(',')[0].strip()}{slash}{path}"
    return first, nodes


def timeouts(settings: Settings) -> dict[str, float]:
    """The read and connect timeouts every client gets unless its caller names its own
    (``STREAMREC_REDIS_TIMEOUT_S``, ``STREAMREC_REDIS_CONNECT_TIMEOUT_S``; why and how
    long: ``core.redis_timeouts``): a Redis that never answers is an outage, not a hang."""
    return {"socket_timeout": settings.redis_timeout_s,
            "socket_connect_timeout": settings.redis_connect_timeout_s}


def async_client(settings: Settings, **options: Any) -> Any:
    """An asyncio client of ``settings.redis_url``: ``Redis`` or ``RedisCluster``."""
    from redis.asyncio import Redis, RedisCluster
    from redis.asyncio.cluster import ClusterNode

    opts = {**redis_options(settings), **timeouts(settings), **options}
    if is_cluster(settings):
        opts.pop("health_check_interval", None)
        url, nodes = seeds(settings.redis_url)
        return RedisCluster.from_url(url, startup_nodes=[ClusterNode(h, p) for h, p in nodes],
                                     **opts)
    return Redis.from_url(settings.redis_url, **opts)


def sync_client(settings: Settings, **options: Any) -> Any:
    """A blocking client of ``settings.redis_url``: ``Redis`` or ``RedisCluster``."""
    import redis
    from redis.cluster import ClusterNode

    opts = {**redis_options(settings), **timeouts(settings), **options}
    if is_cluster(settings):
        opts.pop("health_check_interval", None)
        url, nodes = seeds(settings.redis_url)
        return redis.RedisCluster.from_url(
            url, startup_nodes=[ClusterNode(h, p) for h, p in nodes], **opts)
    return redis.Redis.from_url(settings.redis_url, **opts)


def unlink_matching(client: Any, pattern: str, chunk: int = 1000) -> int:
    """UNLINK every key matching ``pattern`` (SCAN, in chunks: never one huge command);
    how many went. Works on one Redis and on a Redis Cluster client alike."""
    deleted = 0
    batch: list[Any] = []
    for key in client.scan_iter(match=pattern, count=chunk):
        batch.append(key)
        if len(batch) >= chunk:
            deleted += int(client.unlink(*batch))
            batch = []
    if batch:
        deleted += int(client.unlink(*batch))
    return deleted


def key_slot(key: str | bytes) -> int:
    """The Redis Cluster slot of a key (CRC16 of its hash tag, modulo 16384)."""
    from redis.crc import key_slot as slot

    return int(slot(key.encode() if isinstance(key, str) else key))


def one_slot(keys: Sequence[str]) -> None:
    """Raise :class:`CrossSlot` unless every key has the tag of the first (so they share a
    slot in any cluster)."""
    if len(keys) < 2:
        return
    first = tag_of(keys[0])
    for key in keys[1:]:
        if tag_of(key) != first and key_slot(key) != key_slot(keys[0]):
            raise CrossSlot(f"keys of different slots in one script call: {keys[0]!r}, "
                            f"{key!r}")


@dataclass(frozen=True)
class Lua:
    """A Lua script: its source and the SHA-1 Redis knows it by."""

    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())

    def call(self, keys: Sequence[str], args: Sequence[Any] = (), *,
             any_slot: bool = False) -> Call:
        """One call of the script (checked: the keys share a slot, unless ``any_slot``:
        for one standalone Redis only, which runs a script over keys of any slot)."""
        if not any_slot:
            one_slot(keys)
        return Call(("EVALSHA", self.sha, len(keys), *keys, *args), self)

    async def run(self, client: Any, keys: Sequence[str], args: Sequence[Any] = ()) -> Any:
        """Run it now (``EVAL`` if the node does not know it yet)."""
        return (await run_batch(client, [self.call(keys, args)]))[0]


@dataclass(frozen=True)
class Call:
    """One command of a batch; ``script`` when it is an ``EVALSHA`` of that script."""

    args: tuple[Any, ...]
    script: Lua | None = None


def command(*args: Any) -> Call:
    """A plain command of a batch."""
    return Call(args)


async def run_batch(client: Any, calls: Sequence[Call]) -> list[Any]:
    """Run ``calls`` in one pipeline (a cluster sends each node its share at once) and
    return their replies in order; the first error is raised. A script a node does not
    know (``NOSCRIPT``: it restarted, or a replica was promoted) is sent again by ``EVAL``,
    only where it failed: nothing ran twice."""
    from redis.exceptions import NoScriptError

    if not calls:
        return []
    pipe = client.pipeline(transaction=False)
    for call in calls:
        pipe.execute_command(*call.args)
    replies = list(await pipe.execute(raise_on_error=False))
    again = [i for i, reply in enumerate(replies)
             if isinstance(reply, NoScriptError) and calls[i].script is not None]
    if again:
        pipe = client.pipeline(transaction=False)
        for i in again:
            script = calls[i].script
            assert script is not None
            pipe.execute_command("EVAL", script.source, *calls[i].args[2:])
        for i, reply in zip(again, await pipe.execute(raise_on_error=False), strict=True):
            replies[i] = reply
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


class NotReplicated(RedisError):
    """A master's replica did not confirm a batch's writes in time (retry the batch)."""


#: Milliseconds a master waits for its replica to confirm (WAIT) before the batch fails.
REPLICATION_WAIT_MS = 2000


def touched_keys(calls: Sequence[Call]) -> list[str]:
    """The keys a batch of calls named (a script's KEYS, a command's first argument)."""
    keys: list[str] = []
    for call in calls:
        if call.script is not None:
            keys.extend(str(k) for k in call.args[3:3 + int(call.args[2])])
        elif len(call.args) > 1:
            keys.append(str(call.args[1]))
    return keys


async def wait_replicated(client: Any, keys: Sequence[str], names: RedisKeys) -> None:
    """On a Redis Cluster, block until every master that holds one of ``keys`` has its
    writes on a replica (``WAIT 1``), so a failover right after loses none of them; a
    master without a replica is not waited for (nothing could take over its writes).
    ``WAIT`` counts the writes of its own connection: a small write to that master on the
    same connection first covers every earlier write the master took. Raises
    :class:`NotReplicated` when a replica does not confirm in time. No-op on one Redis."""
    from redis.asyncio import RedisCluster

    if not isinstance(client, RedisCluster) or not keys:
        return
    nodes: dict[str, tuple[Any, str]] = {}
    for key in keys:
        slot = key_slot(key)
        owners = client.nodes_manager.slots_cache.get(slot) or []
        if len(owners) > 1 and owners[0].name not in nodes:
            nodes[owners[0].name] = (owners[0], tag_of(key))
    if not nodes:
        return
    pipe = client.pipeline(transaction=False)
    for node, tag in nodes.values():
        pipe.execute_command("SET", names.sync(tag), "1", "PX", 60_000)
        pipe.execute_command("WAIT", 1, REPLICATION_WAIT_MS, target_nodes=node)
    replies = await pipe.execute()
    if any(int(acked) < 1 for acked in replies[1::2]):
        await client.nodes_manager.initialize()  # a replica may be gone: look again
        raise NotReplicated("a Redis master's replica did not confirm the batch's writes")


async def get_many(client: Any, keys: Sequence[str]) -> list[Any]:
    """GET of every key, in one round trip, whatever their slots."""
    return await run_batch(client, [command("GET", key) for key in keys])


def topology(client: Any) -> dict[str, Any]:
    """``{"mode": "standalone" | "cluster", "nodes": N, "masters": M}`` of a sync client:
    a cluster's live nodes as ``CLUSTER NODES`` lists them (replicas included; a node
    the cluster marked failed is not counted)."""
    import redis

    if not isinstance(client, redis.RedisCluster):
        return {"mode": STANDALONE, "nodes": 1, "masters": 1}
    nodes = client.cluster_nodes()
    live = [n for n in nodes.values() if "fail" not in str(n.get("flags", "")).split(",")]
    masters = [n for n in live if "master" in str(n.get("flags", ""))]
    return {"mode": CLUSTER, "nodes": len(live), "masters": len(masters)}


def text(raw: Any) -> str:
    """A Redis reply as text: bytes decoded, ``None`` (absent) as ``""``."""
    if raw is None:
        return ""
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def write_count(raw: Any) -> str:
    """A write count (``INCR``-ed key) as text; an absent one (``None``, or ``False`` as
    a script's nil) is ``"0"``. API processes compare them to know their copy is behind."""
    return text(raw) if isinstance(raw, bytes) or raw else "0"


def num(value: Any) -> int | float | None:
    """A Redis string as int (or float); None when absent or not a number."""
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if number.is_integer() else number


def memory_summary(per_node: Mapping[str, Any]) -> dict[str, Any]:
    """``INFO memory`` of one Redis (its reply) or of a cluster's masters (``{node:
    reply}``) as ``{"used_memory", "maxmemory", "maxmemory_policy", "ratio"}``: bytes
    summed over the nodes, and ``ratio`` = used / maxmemory of the fullest node that has a
    cap (None when none has one). A cluster refuses writes to a slot once *its* master is
    full, whatever the others hold, so the alert follows that node, not the sum."""
    infos = ([per_node] if "used_memory" in per_node
             else [info for info in per_node.values() if isinstance(info, Mapping)])
    used = maxmemory = 0.0
    ratios: list[float] = []
    for info in infos:
        node_used, node_max = num(info.get("used_memory")), num(info.get("maxmemory"))
        used += node_used or 0.0
        maxmemory += node_max or 0.0
        if node_used is not None and node_max:
            ratios.append(node_used / node_max)
    return {"used_memory": int(used), "maxmemory": int(maxmemory),
            "maxmemory_policy": infos[0].get("maxmemory_policy") if infos else None,
            "ratio": round(max(ratios), 4) if ratios else None}


def memory_info(client: Any) -> dict[str, Any]:
    """:func:`memory_summary` of a sync client (every master of a cluster)."""
    import redis

    if isinstance(client, redis.RedisCluster):
        return memory_summary(client.info("memory", target_nodes=redis.RedisCluster.PRIMARIES))
    return memory_summary(client.info("memory"))


async def memory_info_async(client: Any) -> dict[str, Any]:
    """:func:`memory_summary` of an asyncio client (every master of a cluster)."""
    from redis.asyncio import RedisCluster

    if isinstance(client, RedisCluster):
        return memory_summary(await client.info("memory", target_nodes=RedisCluster.PRIMARIES))
    return memory_summary(await client.info("memory"))
