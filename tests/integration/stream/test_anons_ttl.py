"""Users' sets of identified anonymous ids written without an expiry (``0cb3bfc`` kept
them with ``PERSIST``) get one, once (stream.anons_ttl), on one Redis and on a cluster."""

from __future__ import annotations

from typing import Any

import pytest

from core.redis_client import async_client
from core.redis_keys import RedisKeys
from stream.anons_ttl import ensure_anons_ttl

pytestmark = pytest.mark.integration

TTL = 5000


@pytest.fixture
def settings(either_redis: Any) -> Any:
    """On one Redis and on a Redis Cluster (the scan spans every node)."""
    return either_redis


async def test_sets_an_older_version_kept_for_good_expire(settings: Any) -> None:
    client = async_client(settings)
    keys = RedisKeys()
    old = [f"u-old-{n}" for n in range(30)]
    for user in old:  # as the worker of 0cb3bfc wrote them
        await client.sadd(keys.user_anons(user), f"anon-{user}")
        await client.persist(keys.user_anons(user))
    await client.sadd(keys.user_anons("u-new"), "anon-new")
    await client.expire(keys.user_anons("u-new"), 77)
    await client.sadd(keys.user_recent("u-old-0"), "x")  # not a set of anonymous ids
    assert await ensure_anons_ttl(client, keys, TTL)
    for user in old:
        assert 0 < await client.ttl(keys.user_anons(user)) <= TTL
    assert 0 < await client.ttl(keys.user_anons("u-new")) <= 77  # had its own: kept
    assert await client.ttl(keys.user_recent("u-old-0")) == -1
    # Done once: a set written without an expiry later (none is) is not looked for again.
    await client.persist(keys.user_anons("u-old-1"))
    assert not await ensure_anons_ttl(client, keys, TTL)
    assert await client.ttl(keys.user_anons("u-old-1")) == -1
    await client.aclose()
