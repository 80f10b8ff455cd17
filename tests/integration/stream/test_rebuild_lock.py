"""One lock for wipes and rebuilds (``stream.applied.take_rebuild_lock``), with one expiry:
while one worker wipes a stale Redis, no other wipes or rebuilds, on a real Redis."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from core.redis_client import async_client
from core.redis_keys import RedisKeys
from stream import applied
from stream.applied import REBUILD_LOCK_TTL_S, recover_stale, take_rebuild_lock
from stream.rebuild import rebuild_if_flushed

pytestmark = pytest.mark.integration


async def test_a_held_lock_stops_a_second_wipe_and_the_rebuild_hook(
        settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    client = async_client(settings)
    keys = RedisKeys()
    try:
        assert await take_rebuild_lock(client, keys)
        assert 0 < await client.ttl(keys.rebuild_lock) <= REBUILD_LOCK_TTL_S
        assert not await take_rebuild_lock(client, keys)
        monkeypatch.setattr(applied, "WAIT_FOR_WIPE_S", 0.3)
        assert not await recover_stale(client, keys, "a test", {})
        state = SimpleNamespace(redis=client, keys=keys, settings=settings)
        assert not await rebuild_if_flushed(state)  # type: ignore[arg-type]
        assert await client.exists(keys.rebuild_lock)  # still the first holder's
        await client.delete(keys.rebuild_lock)
        assert await recover_stale(client, keys, "a test", {})  # free: it wipes
        assert not await client.exists(keys.rebuild_lock)  # and releases
    finally:
        await client.delete(keys.rebuild_lock)
        await client.aclose()
