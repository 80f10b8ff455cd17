"""Manipulation resistance on a real Redis, through the real EventProcessor and Lua script.

A flood of 10,000 views on one item from one id, and the same from 300 fresh anonymous
ids in a burst, must not put the item into the top 10 of popular or trending; a genuine
rise from many established shoppers must. The exact per-item counts still see every view.
"""

from __future__ import annotations

import random

import pytest
import redis.asyncio as aioredis

from core.redis_keys import RedisKeys
from core.settings import Settings
from schemas import TopicEvent
from stream.history_store import DictStore
from stream.processor import EventProcessor, ProcessorConfig
from stream.redis_writer import RedisWriter

pytestmark = pytest.mark.integration
K = RedisKeys()
NOW = 1_750_000_000.0



def view(eid: str, item: str, ts: float, *, user: str | None = None,
         anon: str | None = None) -> TopicEvent:
    return TopicEvent(event_id=eid, type="view", user_id=user, anonymous_id=anon,
                      item_id=item, ts=ts)


async def top10(client: aioredis.Redis, key: str) -> list[str]:
    return [m.decode() for m in await client.zrevrange(key, 0, 9)]


async def run(proc: EventProcessor, store: DictStore, events: list[TopicEvent]) -> None:
    for start in range(0, len(events), 500):
        await proc.process([(e, 0) for e in events[start:start + 500]], store)


async def test_floods_stay_out_of_the_top_10_a_genuine_rise_gets_in(
        settings: Settings) -> None:
    client = aioredis.Redis.from_url(settings.redis_url)
    writer = RedisWriter(client, K, dedupe_ttl_s=7 * 86400)
    proc = EventProcessor(writer, K, ProcessorConfig(cooc_window=5), lambda: None)
    store = DictStore()
    rng = random.Random(6)

    # Background: 200 established shoppers (first seen 3-5 h ago) browsing 40 items with a
    # skewed taste, all through the last three hours.
    background: list[TopicEvent] = []
    for u in range(200):
        first = NOW - rng.uniform(3, 5) * 3600
        background.append(view(f"bg-{u}-0", f"item-{rng.randrange(40)}", first, user=f"u{u}"))
        for k in range(1, 15):
            item = f"item-{min(int(rng.expovariate(0.12)), 39)}"
            background.append(view(f"bg-{u}-{k}", item, NOW - rng.uniform(0, 3 * 3600),
                                   user=f"u{u}"))
    background.sort(key=lambda e: e.ts)
    await run(proc, store, background)
    baseline = await top10(client, K.popular)

    # Attack 1: one id, 10,000 views of one item within ten minutes.
    flood = [view(f"f1-{i}", "evil-one", NOW + i * 0.06, anon="bot-1") for i in range(10_000)]
    # Attack 2: 300 fresh anonymous ids, 10,000 views of another item in a burst.
    burst = [view(f"f2-{i}", "evil-many", NOW + i * 0.06, anon=f"fresh-{i % 300}")
             for i in range(10_000)]
    # Genuine: 120 of the established shoppers discover a new item in the same ten minutes.
    genuine = [view(f"g-{u}", "rising", NOW + u * 5, user=f"u{u}") for u in range(120)]
    live = sorted(flood + burst + genuine, key=lambda e: e.ts)
    await run(proc, store, live)

    popular, trending = await top10(client, K.popular), await top10(client, K.trending)
    for attacked in ("evil-one", "evil-many"):
        assert attacked not in popular and attacked not in trending, (attacked, popular)
    assert "rising" in popular and "rising" in trending, (popular, trending)
    assert len(set(baseline) & set(popular)) >= 8  # the rest of the list is undisturbed

    # Exact counts still report every single view.
    assert int(await client.hget(K.item_stats("evil-one"), "view")) == 10_000
    assert int(await client.hget(K.item_stats("evil-many"), "view")) == 10_000
    assert await client.scard(K.item_users("evil-many")) == 300
    assert int(await client.hget(K.item_stats("rising"), "view")) == 120
    await client.aclose()
