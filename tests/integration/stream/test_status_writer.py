"""The worker's own status records on one Redis and on a Redis Cluster: the heartbeat a
worker removes when it stops cleanly (``stream.timers``) names a key of its own slot and
the registry in the shared one, so no transaction may hold both."""

from __future__ import annotations

import pytest

from core.redis_client import async_client, sync_client
from core.redis_keys import RedisKeys
from core.settings import Settings
from stream.redis_writer import RedisWriter

pytestmark = pytest.mark.integration
K = RedisKeys()


@pytest.fixture
def settings(either_redis: Settings) -> Settings:
    """On one Redis and on a Redis Cluster: the worker's writes are the same calls."""
    return either_redis


async def test_a_stopping_worker_removes_its_heartbeat_and_registry_entry(
        settings: Settings) -> None:
    client = async_client(settings)
    writer = RedisWriter(client, K, dedupe_ttl_s=3600)
    try:
        await writer.heartbeat("host-1-aaaa", {"pid": 1, "ready": 1})
        await writer.heartbeat("host-2-bbbb", {"pid": 2, "ready": 1})
        await writer.heartbeat_gone("host-1-aaaa")
    finally:
        await client.aclose()
    check = sync_client(settings, decode_responses=True)
    try:
        assert not check.exists(K.worker("host-1-aaaa"))
        assert check.zscore(K.worker_registry, "host-1-aaaa") is None
        assert check.exists(K.worker("host-2-bbbb"))  # the other worker's stays
        assert check.zscore(K.worker_registry, "host-2-bbbb") is not None
    finally:
        check.close()
