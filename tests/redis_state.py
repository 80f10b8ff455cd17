"""Comparable snapshots of Redis contents for replay/idempotence tests."""

from __future__ import annotations

from typing import Any

import redis

from core.redis_keys import RedisKeys

_K = RedisKeys()
#: Operational keys that legitimately change on every pass (counters, heartbeats).
OPERATIONAL = (_K.stats.encode(), _K.split("worker")[0].encode())


def snapshot(url: str, *, skip: tuple[bytes, ...] = OPERATIONAL) -> dict[bytes, Any]:
    """Every derived key's value by type (sets sorted), independent of encoding order."""
    client = redis.Redis.from_url(url)
    out: dict[bytes, Any] = {}
    try:
        for key in sorted(client.scan_iter("*")):
            if key.startswith(skip):
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
