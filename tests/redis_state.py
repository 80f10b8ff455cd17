"""Comparable snapshots of Redis contents for replay/idempotence tests."""

from __future__ import annotations

from typing import Any

import redis

from core.redis_client import sync_client
from core.redis_keys import SHARED_TAG, RedisKeys, tag_of
from core.settings import Settings

_K = RedisKeys()
#: Operational keys that legitimately change on every pass (counters, heartbeats, the
#: offsets each pass applied), and the ones that live only while a batch is in flight
#: (outbox entries, and the markers of the slots that applied them: stream.slot_apply).
OPERATIONAL = (_K.stats.encode(), _K.split("worker")[0].encode(),
               _K.split("applied")[0].encode(), _K.outbox("").encode())
_SEEN = _K.pattern("seen", "*").split("{")[0].encode()


def transient(key: bytes) -> bool:
    """A per-slot marker set (a seen set outside the shared slot)."""
    return key.startswith(_SEEN) and tag_of(key.decode()) != SHARED_TAG


def snapshot(where: str | Settings, *, skip: tuple[bytes, ...] = OPERATIONAL
             ) -> dict[bytes, Any]:
    """Every derived key's value by type (sets sorted), independent of encoding order, of
    a Redis URL or of the Redis (or Redis Cluster) some settings name."""
    client = (sync_client(where) if isinstance(where, Settings)
              else redis.Redis.from_url(where))
    out: dict[bytes, Any] = {}
    try:
        for key in sorted(client.scan_iter("*")):
            if key.startswith(skip) or transient(key):
                continue
            kind = client.type(key)
            if kind == b"string":
                out[key] = client.get(key)
            elif kind == b"hash":
                out[key] = sorted(client.hgetall(key).items())
            elif kind == b"set":
                out[key] = sorted(client.smembers(key))
            elif kind == b"zset":
                out[key] = sorted(client.zrange(key, 0, -1, withscores=True))
            elif kind == b"list":
                out[key] = client.lrange(key, 0, -1)
    finally:
        client.close()
    return out


def dump_all(url: str) -> dict[bytes, tuple[bytes, int]]:
    """Every key's serialized value and remaining TTL (ms, 0 = none): a point-in-time copy
    of the database, like the snapshot or append-only file a restarted Redis loads."""
    client = redis.Redis.from_url(url)
    try:
        out = {}
        for key in client.scan_iter("*"):
            value = client.dump(key)
            if value is not None:
                out[key] = (value, max(0, int(client.pttl(key))))
        return out
    finally:
        client.close()


def restore_all(url: str, dumped: dict[bytes, tuple[bytes, int]]) -> None:
    """Replace the database with ``dumped`` (a Redis restarted from an older copy)."""
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
        for key, (value, ttl) in dumped.items():
            client.restore(key, ttl, value)
    finally:
        client.close()
