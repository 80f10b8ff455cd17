"""The anonymous ids the API records per user for forgetting (``user_anons``): bounded,
whoever holds the public tracking key."""

from __future__ import annotations

import pytest

from core.redis_client import sync_client
from core.redis_keys import RedisKeys
from core.settings import Settings
from tests.integration.api.app_client import running

pytestmark = [pytest.mark.integration, pytest.mark.broker]


async def test_the_anonymous_ids_remembered_per_user_are_capped(topics: Settings) -> None:
    """The tracking key is public: identifies naming one user with ever new anonymous ids
    add none past ``FORGET_ANONS_MAX`` to the user's set (it stays bounded); an id
    already in it is still recorded (its lifetime renewed)."""
    from core.limits import FORGET_ANONS_MAX

    anons = RedisKeys().user_anons("u-capped")
    client_redis = sync_client(topics)
    try:
        client_redis.sadd(anons, *[f"anon-{n}" for n in range(FORGET_ANONS_MAX)])
        client_redis.expire(anons, 60)
        async with running(topics) as client:
            for anon in ("anon-new", "anon-7"):
                ok = await client.post("/v1/identify", json={"anonymous_id": anon,
                                                             "user_id": "u-capped"})
                assert ok.status_code == 202, ok.text
        assert client_redis.scard(anons) == FORGET_ANONS_MAX
        assert not client_redis.sismember(anons, "anon-new")
        assert client_redis.ttl(anons) > 60  # anon-7, known, renewed the set's lifetime
    finally:
        client_redis.delete(anons)
        client_redis.close()
