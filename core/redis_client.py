"""Redis clients for every process, one Redis or a Redis Cluster, made in one place.

``STREAMREC_REDIS_MODE=cluster`` makes ``STREAMREC_REDIS_URL`` the address of any node of
a Redis Cluster (the embedded one of ``streamrec up --redis cluster``, or ElastiCache in
cluster mode): the clients then learn the slot map from it, follow ``MOVED``/``ASK``
redirections and fail over with the cluster. Everything above uses the same calls either
way, with the same key names (``core.redis_keys`` puts hash tags in both modes):

* :func:`async_client` / :func:`sync_client` -- ``redis.asyncio.Redis`` or
  ``RedisCluster`` (sync: ``redis.Redis`` or ``redis.RedisCluster``);
* :class:`Lua` -- a script run by ``EVALSHA`` (``EVAL`` when the server lost it: a
  restarted or promoted node), whose keys must share one slot: :func:`one_slot` checks it
  on every call, in standalone mode too, so a test against one Redis catches a script
  that a cluster would refuse;
* :func:`run_batch` -- commands and script calls in one pipeline (one round trip per
  node), the replies in order;
* :func:`get_many` -- GET of many keys of any slots (``MGET`` needs one slot);
* :func:`topology` -- ``{"mode", "nodes", "masters"}`` for ``streamrec status``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from core.connections import redis_options
from core.redis_keys import tag_of
from core.settings import Settings

STANDALONE, CLUSTER = "standalone", "cluster"


class CrossSlot(ValueError):
    """A script call whose keys do not share one hash slot (a cluster would refuse it)."""


def is_cluster(settings: Settings) -> bool:
    """True when ``settings`` name a Redis Cluster."""
    return settings.redis_mode == CLUSTER


def async_client(settings: Settings, **options: Any) -> Any:
    """An asyncio client of ``settings.redis_url``: ``Redis`` or ``RedisCluster``."""
    from redis.asyncio import Redis, RedisCluster

    opts = {**redis_options(settings), **options}
    if is_cluster(settings):
        opts.pop("health_check_interval", None)
        return RedisCluster.from_url(settings.redis_url, **opts)
    return Redis.from_url(settings.redis_url, **opts)


def sync_client(settings: Settings, **options: Any) -> Any:
    """A blocking client of ``settings.redis_url``: ``Redis`` or ``RedisCluster``."""
    import redis

    opts = {**redis_options(settings), **options}
    if is_cluster(settings):
        opts.pop("health_check_interval", None)
        return redis.RedisCluster.from_url(settings.redis_url, **opts)
    return redis.Redis.from_url(settings.redis_url, **opts)


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
    """A Lua script: its source and SHA-1."""

    source: str

    @property
    def sha(self) -> str:
        """The SHA-1 Redis knows it by."""
        return hashlib.sha1(self.source.encode()).hexdigest()

    def call(self, keys: Sequence[str], args: Sequence[Any] = ()) -> Call:
        """One call of the script (checked: the keys share a slot)."""
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


async def get_many(client: Any, keys: Sequence[str]) -> list[Any]:
    """GET of every key, in one round trip, whatever their slots."""
    return await run_batch(client, [command("GET", key) for key in keys])


def topology(client: Any) -> dict[str, Any]:
    """``{"mode": "standalone" | "cluster", "nodes": N, "masters": M}`` of a sync client
    (a cluster's nodes as its slot map names them, replicas included)."""
    import redis

    if isinstance(client, redis.RedisCluster):
        nodes = client.get_nodes()
        masters = [n for n in nodes if n.server_type == "primary"]
        return {"mode": CLUSTER, "nodes": len(nodes), "masters": len(masters)}
    return {"mode": STANDALONE, "nodes": 1, "masters": 1}
