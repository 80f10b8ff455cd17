"""The counted effects split by hash slot (what a Redis Cluster needs) and applied whole
(one standalone Redis, ``stream.slot_apply._whole``) leave the same Redis, and a batch a
splitting writer left half-applied is completed by a whole writer."""

from __future__ import annotations

import random
from typing import Any

import pytest
import redis

from core.redis_client import async_client
from core.redis_keys import SHARED_TAG, RedisKeys
from core.settings import Settings
from schemas import TopicEvent
from stream import slot_apply
from stream.bounds import StateBounds
from stream.history_store import DictStore
from stream.processor import EventProcessor, ProcessorConfig
from stream.redis_writer import EventOps, RedisWriter
from tests.redis_state import snapshot

pytestmark = pytest.mark.integration

TYPES = ["view"] * 5 + ["add_to_cart", "remove_from_cart", "purchase", "impression", "click"]
ITEMS = [f"i{j}" for j in range(40)]
CATALOGUED = ITEMS[:30]


def traffic(n: int = 400, seed: int = 5) -> list[list[tuple[TopicEvent, int]]]:
    """Batches of mixed events of users and anonymous ids (newcomer budgets), some of
    items the catalog lacks."""
    rng = random.Random(seed)
    events = []
    for i in range(n):
        who = rng.randrange(30)
        entity = {"user_id": f"u{who}"} if who < 20 else {"anonymous_id": f"a{who}"}
        events.append((TopicEvent(event_id=f"e{i}", type=rng.choice(TYPES),
                                  item_id=rng.choice(ITEMS), ts=1_700_000_000 + i,
                                  received_at=1_700_000_000 + i, **entity), who % 2))
    return [events[k:k + 97] for k in range(0, n, 97)]


async def apply(settings: Settings, batches: list[list[tuple[TopicEvent, int]]], *,
                split: bool, gate: bool, store: DictStore | None = None) -> None:
    client = async_client(settings)
    keys = RedisKeys()
    bounds = StateBounds(require_catalog=gate)
    writer = RedisWriter(client, keys, dedupe_ttl_s=3600, bounds=bounds, split_slots=split)
    proc = EventProcessor(writer, keys, ProcessorConfig(bounds=bounds), lambda: None)
    store = store if store is not None else DictStore()
    try:
        for batch in batches:
            await proc.process(batch, store)
    finally:
        await client.aclose()


def fresh(settings: Settings) -> None:
    client = redis.Redis.from_url(settings.redis_url)
    client.flushdb()
    for item in CATALOGUED:
        client.hset(RedisKeys().item_meta(item), "name", item)
    client.close()


@pytest.mark.parametrize("gate", [False, True], ids=["open", "catalog-gated"])
async def test_split_and_whole_leave_the_same_redis(settings: Settings, gate: bool) -> None:
    batches = traffic()
    fresh(settings)
    await apply(settings, batches, split=True, gate=gate)
    split = snapshot(settings)
    fresh(settings)
    await apply(settings, batches, split=False, gate=gate)
    whole = snapshot(settings)
    assert split == whole
    assert any(b"cooc" in k for k in whole) and any(b"cart" in k for k in whole)


async def test_whole_writer_completes_what_a_split_writer_left(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    batches = traffic()
    fresh(settings)
    await apply(settings, batches, split=False, gate=True)
    expected = snapshot(settings)

    fresh(settings)
    store = DictStore()
    await apply(settings, batches[:-1], split=True, gate=True, store=store)

    def die(*_: Any, **__: Any) -> Any:
        raise ConnectionError("worker killed between its two round trips")

    with monkeypatch.context() as patch:  # the shared slot decided; other slots not yet
        patch.setattr(slot_apply, "other_calls", die)
        with pytest.raises(ConnectionError):
            await apply(settings, batches[-1:], split=True, gate=True, store=store)
    monkeypatch.setattr(slot_apply, "HANDOVER_S", 0.0)  # the dead writer's entries are old
    await apply(settings, batches[-1:], split=False, gate=True, store=store)
    assert snapshot(settings) == expected


async def test_a_call_that_fails_midway_still_gives_its_keys_their_lifetimes(
        settings: Settings) -> None:
    # The script sets each key's lifetime once, at the end of its call: an op that fails
    # after some events were applied must not leave their seen set without one.
    fresh(settings)
    keys = RedisKeys()
    client = async_client(settings)
    writer = RedisWriter(client, keys, dedupe_ttl_s=3600, split_slots=False)
    hour = 472_222
    good = EventOps(event_id="m1", hour=hour,
                    guarded=[["HINCRBY", keys.item_stats("i1"), "view", "1"]])
    bad = EventOps(event_id="m2", hour=hour,
                   guarded=[["ZINCRBY", keys.popular, "not-a-number", "i1"]])
    try:
        with pytest.raises(redis.exceptions.ResponseError):
            await writer.write_batch([good, bad], [], [])
    finally:
        await client.aclose()
    sync = redis.Redis.from_url(settings.redis_url)
    try:
        seen = keys.seen(SHARED_TAG, hour)
        assert sync.sismember(seen, "m1") and sync.hget(keys.item_stats("i1"), "view") == b"1"
        assert 0 < sync.ttl(seen) <= 3600
    finally:
        sync.close()
