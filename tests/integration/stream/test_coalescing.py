"""Coalesced list refreshes against a real Redis: while the worker is behind, an entity's
counts, history and recent items are written batch by batch, its stored list waits and is
rebuilt once, from its latest history; a caught-up worker rebuilds at once, and the
waiting entities are mirrored in Redis for whoever owns their partition next. On one
Redis and on a Redis Cluster (the waiting set is in the shared slot)."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from core.redis_client import async_client
from core.redis_keys import RedisKeys
from core.settings import Settings
from schemas import TopicEvent
from stream.history_store import DictStore
from stream.processor import EventProcessor, ProcessorConfig
from stream.redis_writer import RedisWriter
from tests.integration.stream.test_processor import ITEMS, small_model

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(either_redis: Settings) -> Settings:
    return either_redis


def ev(i: int, user: str, item: str) -> TopicEvent:
    now = time.time()
    return TopicEvent(event_id=f"c{i}", type="view", user_id=user, item_id=item, ts=now,
                      received_at=now)


async def coalescing(settings: Any, *, max_delay_s: float = 60.0
                     ) -> tuple[EventProcessor, aioredis.Redis, RedisKeys]:
    client = async_client(settings)
    keys = RedisKeys()
    model = small_model("v1", seed=1)
    proc = EventProcessor(RedisWriter(client, keys, dedupe_ttl_s=3600), keys,
                          ProcessorConfig(coalesce_max_delay_s=max_delay_s), lambda: model)
    return proc, client, keys


async def test_behind_lists_wait_and_are_rebuilt_once_when_caught_up(settings: Any) -> None:
    proc, client, keys = await coalescing(settings)
    store = DictStore()
    first = await proc.process([(ev(1, "u1", ITEMS[0]), 0), (ev(2, "u2", ITEMS[1]), 0)],
                               store, behind=True)
    assert first.applied == 2 and first.entities_refreshed == 0 and not first.freshness_s
    # Counts and the session list now; the stored list waits, in Redis too.
    assert int(await client.hget(keys.item_stats(ITEMS[0]), "view")) == 1
    assert orjson.loads(await client.get(keys.user_recent("u1"))) == [ITEMS[0]]
    assert await client.get(keys.user_recs("u1")) is None
    assert await client.zrange(keys.relist_pending, 0, -1) == [b"u1", b"u2"]

    await proc.process([(ev(3, "u1", ITEMS[2]), 0)], store, behind=True)
    assert proc.pending == 2  # u1 waits once for both of its events

    caught_up = await proc.process([(ev(4, "u3", ITEMS[3]), 0)], store, behind=False)
    assert caught_up.entities_refreshed == 3  # u3's own, then the two that waited
    assert len(caught_up.freshness_s) == 4  # every event, its wait included
    assert await client.zcard(keys.relist_pending) == 0 and proc.pending == 0
    stored = orjson.loads(await client.get(keys.user_recs("u1")))
    assert stored["v"] == "v1" and stored["items"]
    assert {ITEMS[0], ITEMS[2]}.isdisjoint(i[0] for i in stored["items"])  # latest history
    await client.aclose()


async def test_a_list_never_waits_longer_than_the_maximum_delay(settings: Any) -> None:
    proc, client, keys = await coalescing(settings, max_delay_s=0.2)
    store = DictStore()
    await proc.process([(ev(1, "u1", ITEMS[0]), 0)], store, behind=True)
    time.sleep(0.25)
    still_behind = await proc.process([(ev(2, "u2", ITEMS[1]), 0)], store, behind=True)
    assert still_behind.entities_refreshed == 1  # u1 waited long enough; u2 waits
    assert await client.get(keys.user_recs("u1")) is not None
    assert await client.zrange(keys.relist_pending, 0, -1) == [b"u2"]
    await client.aclose()


async def test_the_idle_timer_rebuilds_what_still_waits(settings: Any) -> None:
    proc, client, keys = await coalescing(settings)
    store = DictStore()
    await proc.process([(ev(j, f"u{j}", ITEMS[j]), 0) for j in range(4)], store, behind=True)
    assert (await proc.relist_idle(store)).entities_refreshed == 0  # still behind: waits
    proc.behind = False  # the last batch found no backlog
    done = await proc.relist_idle(store)
    assert done.entities_refreshed == 4 and len(done.freshness_s) == 4
    assert await client.zcard(keys.relist_pending) == 0
    await client.aclose()


async def test_a_new_owner_takes_over_the_waiting_lists(settings: Any) -> None:
    proc, client, keys = await coalescing(settings)
    store = DictStore()
    await proc.process([(ev(1, "u1", ITEMS[0]), 0)], store, behind=True)
    # The worker stops; another one, with the same histories (the table's changelog),
    # finds u1 waiting in Redis.
    heir, _, _ = await coalescing(settings)
    heir.relister.coalescer.restore(await heir.writer.waiting_lists(), time.time())
    result = await heir.process([(ev(2, "u9", ITEMS[5]), 0)], store, behind=False)
    assert result.entities_refreshed == 2
    assert orjson.loads(await client.get(keys.user_recs("u1")))["items"]
    assert await client.zcard(keys.relist_pending) == 0
    await client.aclose()


async def test_pipelined_writes_complete_in_order_on_drain(settings: Any) -> None:
    proc, client, keys = await coalescing(settings)
    store = DictStore()
    first = await proc.process([(ev(1, "u1", ITEMS[0]), 0)], store, pipelined=True)
    assert first.applied == 0  # nothing drained yet: this write is in flight
    second = await proc.process([(ev(2, "u1", ITEMS[1]), 0)], store, pipelined=True)
    assert second.applied == 1 and len(second.freshness_s) == 1  # the first one's
    last = await proc.drain()
    assert last.applied == 1
    assert orjson.loads(await client.get(keys.user_recent("u1"))) == [ITEMS[1], ITEMS[0]]
    assert (await proc.drain()).applied == 0
    await client.aclose()


async def test_pipelined_steps_beyond_one_apply_chunk_count_each_event_once(
        settings: Any) -> None:
    # Two steps of 600 events each over many items (many item buckets): each is more than
    # one 250-event apply call per slot, and each step's write is in flight while the
    # next is computed; a redelivery of both counts nothing again.
    proc, client, keys = await coalescing(settings)
    store = DictStore()
    steps = [[(TopicEvent(event_id=f"p{s}-{i}", type="view", user_id=f"u{i % 50}",
                          item_id=f"it{i % 300}", ts=1_700_000_000 + i,
                          received_at=time.time()), 0) for i in range(600)]
             for s in range(2)]
    applied = 0
    for _ in range(2):
        for step in steps:
            applied += (await proc.process(step, store, behind=True, pipelined=True)).applied
        applied += (await proc.drain()).applied
    assert applied == 1200
    views = [await client.hget(keys.item_stats(f"it{j}"), "view") for j in range(300)]
    assert [int(v) for v in views] == [4] * 300
    await client.aclose()


async def test_forwarded_copies_are_no_freshness_samples(settings: Any) -> None:
    """Each event is sampled once, at its own id: the copies an identify forwards carry
    their original receive times (minutes before the login, say), and sampled again at
    the user they counted the time before the identify as delay."""
    proc, client, keys = await coalescing(settings)
    store = DictStore()
    now = time.time()
    handed = TopicEvent(event_id="h1", type="view", user_id="u9", anonymous_id="a9",
                        item_id=ITEMS[4], ts=now - 90, received_at=now - 90, forwarded=True)
    result = await proc.process([(handed, 0), (ev(9, "u9", ITEMS[5]), 0)], store,
                                behind=False)
    assert result.entities_refreshed == 1 and len(result.freshness_s) == 1
    assert result.freshness_s[0] < 60  # the user's own event only
    assert [e[1] for e in store.get("u9")["entries"]] == [ITEMS[4], ITEMS[5]]
    await client.aclose()
