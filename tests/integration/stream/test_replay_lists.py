"""A rebuild's replay runs beside live workers: it must never write a list over one a
live worker wrote meanwhile (the live one comes from the whole history, so it is never
older), while its own successive writes of a list still go through."""

from __future__ import annotations

import pytest

from core.redis_client import async_client
from core.redis_keys import RedisKeys
from core.settings import Settings
from stream.redis_writer import RedisWriter

pytestmark = pytest.mark.integration

K = RedisKeys()


@pytest.fixture
def settings(either_redis: Settings) -> Settings:
    """On one Redis, then on a Redis Cluster."""
    return either_redis


async def test_a_replay_never_writes_over_a_live_workers_list(settings: Settings) -> None:
    client = async_client(settings)
    try:
        replay = RedisWriter(client, K, dedupe_ttl_s=60, replay=True)
        live = RedisWriter(client, K, dedupe_ttl_s=60)
        # the replay lists two shoppers, then again as their histories grow
        await replay.write_batch([], [], [("u1", b'["a"]'), ("u2", b'["a"]')])
        await replay.write_batch([], [], [("u1", b'["b","a"]'), ("u2", b'["b","a"]')])
        assert await client.get(K.user_recent("u1")) == b'["b","a"]'
        # a live worker lists u1 from its whole history; the replay catches up later
        await live.write_batch([], [], [("u1", b'["z","y","b","a"]')])
        await replay.write_batch([], [], [("u1", b'["c","b","a"]'), ("u2", b'["c","b","a"]')])
        assert await client.get(K.user_recent("u1")) == b'["z","y","b","a"]'
        assert await client.get(K.user_recent("u2")) == b'["c","b","a"]'
        # a list the live worker wrote before the replay's first write is kept as well
        await live.write_batch([], [], [("u3", b'["q"]')])
        await replay.write_batch([], [], [("u3", b'["p"]')])
        assert await client.get(K.user_recent("u3")) == b'["q"]'
        # the live worker always writes
        await live.write_batch([], [], [("u2", b'["d","c","b","a"]')])
        assert await client.get(K.user_recent("u2")) == b'["d","c","b","a"]'
    finally:
        await client.aclose()
