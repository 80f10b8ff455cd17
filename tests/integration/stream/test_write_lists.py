"""Entities' lists written by one ``WRITE_LISTS`` call each (a Redis Cluster) and many
to a call (one standalone Redis) end the same: values, and lifetimes (a fresh recent
list's, the remaining one of the recent list a rewritten personal list follows, none
written when that recent list is gone). A batch's write says when Redis wrote its
lists, by Redis's clock (the worker's freshness samples end there)."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis

from core.redis_client import async_client
from core.redis_keys import RedisKeys
from core.settings import Settings
from stream import list_writes
from stream.bounds import StateBounds
from stream.redis_writer import RedisWriter

pytestmark = pytest.mark.integration
K = RedisKeys()


async def write(settings: Settings, *, split: bool,
                stamps: list[float | None] | None = None) -> dict[str, tuple[Any, int]]:
    sync = redis.Redis.from_url(settings.redis_url)
    sync.flushdb()
    sync.set(K.user_recent("kept"), b'["i1"]', px=50_000)  # a recent list 50 s from expiry
    client = async_client(settings)
    writer = RedisWriter(client, K, dedupe_ttl_s=3600, bounds=StateBounds(),
                         split_slots=split)
    try:
        entities = [f"u{n}" for n in range(7)]
        written = await writer.write_batch(
            [], recs=[(e, f'{{"e":"{e}"}}'.encode()) for e in [*entities, "kept", "gone"]],
            recents=[(e, b'["i2"]') for e in entities], anonymous={"u3"})
        if stamps is not None:
            stamps.append(written.listed_at)
            stamps.append((await writer.write_batch([], recs=[], recents=[])).listed_at)
    finally:
        await client.aclose()
    out: dict[str, tuple[Any, int]] = {}
    for e in [*entities, "kept", "gone"]:
        for key in (K.user_recent(e), K.user_recs(e)):
            out[key] = (sync.get(key), round(sync.pttl(key) / 10_000))  # 10 s steps
    sync.close()
    return out


async def test_many_entities_in_a_call_write_what_one_per_call_writes(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(list_writes, "WRITE_CHUNK_ENTITIES", 3)  # several calls, a tail
    each = await write(settings, split=True)
    many = await write(settings, split=False)
    assert many == each
    bounds = StateBounds()
    assert each[K.user_recs("u0")] == (b'{"e":"u0"}', round(bounds.ttl_s(False) / 10))
    assert each[K.user_recs("u3")][1] == round(bounds.ttl_s(True) / 10)
    assert each[K.user_recs("kept")] == (b'{"e":"kept"}', 5)  # follows its recent list
    assert each[K.user_recs("gone")] == (None, 0)  # no recent list: not written


async def test_a_write_says_when_redis_wrote_its_lists(settings: Settings) -> None:
    for split in (True, False):
        stamps: list[float | None] = []
        before = time.time()
        await write(settings, split=split, stamps=stamps)
        at, none = stamps
        # Redis's clock is this machine's: between the call and its return
        assert at is not None and before - 0.5 <= at <= time.time() + 0.5
        assert none is None  # no list written: nothing to say
