"""Coalesced list refreshes against a real Redis: while the worker is behind, an entity's
counts, history and recent items are written batch by batch, its stored list gets the
first freshness level at once and its re-fold waits, done once from its latest history
(exactly the list an unhurried worker stores); a caught-up worker re-folds at once, and
the waiting entities are mirrored in Redis for whoever owns their partition next. On one
Redis and on a Redis Cluster (the waiting set is in the shared slot)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import orjson
import pytest
import redis.asyncio as aioredis

from core.redis_client import async_client
from core.redis_keys import RedisKeys
from core.settings import Settings
from schemas import TopicEvent
from stream.history_store import DictStore
from stream.processor import EventProcessor, ProcessorConfig
from stream.redis_writer import RedisWriter, dumps_list
from stream.row_lists import encode_rows
from tests.integration.stream.test_processor import ITEMS, small_model

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(either_redis: Settings) -> Settings:
    return either_redis


def ev(i: int, user: str, item: str, at: float | None = None) -> TopicEvent:
    now = time.time() if at is None else at
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
    assert first.applied == 2 and first.entities_refreshed == 0 and not first.refold_s
    assert len(first.freshness_s) == 2  # their recent lists changed: the first level
    assert first.quick_lists == 0  # no stored list to update yet
    # Counts and the session list now; the stored list waits, in Redis too.
    assert int(await client.hget(keys.item_stats(ITEMS[0]), "view")) == 1
    assert orjson.loads(await client.get(keys.user_recent("u1"))) == [ITEMS[0]]
    assert await client.get(keys.user_recs("u1")) is None
    assert await client.zrange(keys.relist_pending, 0, -1) == [b"u1", b"u2"]

    await proc.process([(ev(3, "u1", ITEMS[2]), 0)], store, behind=True)
    assert proc.pending == 2  # u1 waits once for both of its events

    caught_up = await proc.process([(ev(4, "u3", ITEMS[3]), 0)], store, behind=False)
    assert caught_up.entities_refreshed == 3  # u3's own, then the two that waited
    assert len(caught_up.freshness_s) == 1  # u3's; the others' lists changed before
    assert len(caught_up.refold_s) == 4  # every event's re-fold, its wait included
    assert await client.zcard(keys.relist_pending) == 0 and proc.pending == 0
    stored = orjson.loads(await client.get(keys.user_recs("u1")))
    assert stored["v"] == "v1" and stored["items"]
    assert {ITEMS[0], ITEMS[2]}.isdisjoint(i[0] for i in stored["items"])  # latest history
    await client.aclose()


async def test_a_waiting_list_gets_the_first_level_then_exactly_the_full_refold(
        settings: Any) -> None:
    """While its re-fold waits, a stored list takes in the newest item's model neighbours
    and drops the item; once the re-fold is done the list is the one a worker that
    never fell behind stores for the same events (u2)."""
    proc, client, keys = await coalescing(settings)
    model = proc.model()
    assert model is not None
    near = [ITEMS[j] for j in (6, 7, 3)]
    await client.hset(keys.model_similar_rows("v1"), mapping={ITEMS[3]: encode_rows(
        np.array([model.item_map.index_map[i] for i in near]), np.array([0.9, 0.8, 0.7]))})
    store = DictStore()
    t1, t2 = time.time() - 2, time.time() - 1  # the same event times for u1 and u2
    await proc.process([(ev(1, "u1", ITEMS[0], t1), 0), (ev(2, "u2", ITEMS[0], t1), 0)],
                       store)
    before = orjson.loads(await client.get(keys.user_recs("u1")))["items"]
    behind = await proc.process([(ev(3, "u1", ITEMS[3], t2), 0)], store, behind=True)
    assert behind.quick_lists == 1 and behind.entities_refreshed == 0
    assert len(behind.freshness_s) == 1 and not behind.refold_s
    quick = orjson.loads(await client.get(keys.user_recs("u1")))["items"]
    ids = [i[0] for i in quick]
    assert ITEMS[3] not in ids and {ITEMS[6], ITEMS[7]} <= set(ids)
    assert ids != [i[0] for i in before]
    assert all(a[1] >= b[1] for a, b in zip(quick, quick[1:], strict=False))
    settled = await proc.process([(ev(4, "u2", ITEMS[3], t2), 0)], store)
    assert settled.entities_refreshed == 2 and len(settled.refold_s) == 2  # u2, u1
    assert proc.pending == 0 and settled.quick_lists == 0
    u1, u2 = [orjson.loads(await client.get(keys.user_recs(u))) for u in ("u1", "u2")]
    assert u1["items"] == u2["items"]
    await client.aclose()


async def test_the_first_level_reads_json_neighbours_the_binary_rows_lack(
        settings: Any) -> None:
    """A model published without the binary copy of its neighbour lists (or a version
    just dropped): the first level reads the JSON lists, as the re-fold does."""
    proc, client, keys = await coalescing(settings)
    store = DictStore()
    await proc.process([(ev(1, "u1", ITEMS[0], time.time() - 2), 0)], store)
    await client.set(keys.item_similar(ITEMS[3]),
                     dumps_list("v1", [ITEMS[6], ITEMS[7]], [0.9, 0.8]))
    before = {i[0]: i[1] for i in orjson.loads(await client.get(keys.user_recs("u1")))["items"]}
    behind = await proc.process([(ev(2, "u1", ITEMS[3]), 0)], store, behind=True)
    assert behind.quick_lists == 1
    quick = {i[0]: i[1] for i in orjson.loads(await client.get(keys.user_recs("u1")))["items"]}
    assert ITEMS[3] not in quick
    for item in (ITEMS[6], ITEMS[7]):  # each joined, or gained the similar source's share
        assert quick[item] > before.get(item, 0.0)
    await client.aclose()


async def test_a_batch_refolds_a_bounded_number_and_queues_the_rest(settings: Any) -> None:
    """Caught up, a batch of more entities than one batch re-folds (every event another
    shopper's, at a held rate) re-folds the first ones and queues the rest, each with its
    list changed now; the next lone event queues behind them; the idle timer ends it."""
    proc, client, keys = await coalescing(settings)
    store = DictStore()
    most = proc.relister.coalescer.per_batch
    users = [f"m{j}" for j in range(most + 3)]
    wide = await proc.process([(ev(j, u, ITEMS[j % len(ITEMS)]), 0)
                               for j, u in enumerate(users)], store)
    assert wide.entities_refreshed == most and len(wide.refold_s) == most
    assert len(wide.freshness_s) == len(users) and proc.pending == 3
    lone = await proc.process([(ev(900, "m0", ITEMS[1]), 0)], store)
    assert lone.entities_refreshed == 4 and proc.pending == 0  # the three, then m0
    assert len(lone.refold_s) == 4 and len(lone.freshness_s) == 1
    await client.aclose()


async def test_a_list_that_waited_the_maximum_delay_is_refolded_even_behind(
        settings: Any) -> None:
    proc, client, keys = await coalescing(settings, max_delay_s=0.2)
    store = DictStore()
    await proc.process([(ev(1, "u1", ITEMS[0]), 0)], store, behind=True)
    time.sleep(0.25)
    still_behind = await proc.process([(ev(2, "u2", ITEMS[1]), 0)], store, behind=True)
    assert still_behind.entities_refreshed == 1  # u1 waited long enough; u2 waits
    assert await client.get(keys.user_recs("u1")) is not None
    assert await client.zrange(keys.relist_pending, 0, -1) == [b"u2"]
    await client.aclose()


async def test_a_wave_of_due_refolds_is_spread_over_batches(settings: Any) -> None:
    """Re-folds that come due together (a shift of traffic deferred them together) are
    done a bounded number per batch: each batch's own lists stay at the first level."""
    proc, client, keys = await coalescing(settings)
    store = DictStore()
    coalescer = proc.relister.coalescer
    most = coalescer.per_batch
    await proc.process([(ev(j, f"w{j}", ITEMS[j % len(ITEMS)]), 0) for j in range(most + 3)],
                       store, behind=True)
    # The wave comes due (as if it had waited the whole delay), in its order; x1 and x2,
    # deferred next for the 60 s delay, cannot come due however slow the batches are
    # (with a 0.2 s delay and a sleep, a loaded machine made x1 due before the second).
    coalescer.give_back(coalescer.take(now=time.time(), behind=False, most=most + 3),
                        time.time())
    first = await proc.process([(ev(800, "x1", ITEMS[1]), 0)], store, behind=True)
    assert first.entities_refreshed == most and len(first.freshness_s) == 1
    second = await proc.process([(ev(801, "x2", ITEMS[2]), 0)], store, behind=True)
    assert second.entities_refreshed == 3  # the rest of the wave; x1 and x2 wait
    assert proc.pending == 2
    await client.aclose()


async def test_the_idle_timer_rebuilds_what_still_waits(settings: Any) -> None:
    proc, client, keys = await coalescing(settings)
    store = DictStore()
    await proc.process([(ev(j, f"u{j}", ITEMS[j]), 0) for j in range(4)], store, behind=True)
    assert (await proc.relist_idle(store)).entities_refreshed == 0  # still behind: waits
    proc.behind = False  # the last batch found no backlog
    done = await proc.relist_idle(store)
    assert done.entities_refreshed == 4 and len(done.refold_s) == 4
    assert not done.freshness_s  # sampled at their batch, the first level
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


async def test_a_refold_taken_by_a_step_redis_failed_is_done_when_the_step_is_tried_again(
        settings: Any) -> None:
    """A step takes the waiting re-folds, then Redis fails it before its write (here a
    read of the blend's inputs: a real WRONGTYPE error) and the worker tries the step
    again (``stream.rebuild.retry_redis``): the re-folds it took are done then, not lost
    (they were out of the queue, their first-level list stayed for good)."""
    from redis.exceptions import ResponseError

    proc, client, keys = await coalescing(settings)
    store = DictStore()
    await proc.process([(ev(1, "u1", ITEMS[0]), 0)], store, behind=True)
    assert proc.pending == 1
    await client.set(keys.popular, "not a sorted set")  # the re-fold's read fails
    step = [(ev(2, "u2", ITEMS[1]), 0)]
    with pytest.raises(ResponseError):
        await proc.process(step, store)
    await client.delete(keys.popular)
    await proc.process(step, store)  # the same step again, as retry_redis does
    assert await client.get(keys.user_recs("u1")) is not None  # re-folded
    assert proc.pending == 0 and await client.zcard(keys.relist_pending) == 0
    await client.aclose()


def busy_worker(proc: EventProcessor) -> None:
    """Feed ``proc``'s spare-time meter 30 batches back to back, the last one beginning
    now (as ``stream.agents`` does)."""
    t = time.monotonic() - 30 * 0.13
    for _ in range(30):
        proc.spare.began(t)
        proc.spare.ended(t + 0.12)
        t += 0.13
    proc.spare.began(time.monotonic())


async def test_a_busy_worker_takes_only_due_refolds_and_no_idle_groups(settings: Any) -> None:
    proc, client, keys = await coalescing(settings)
    store = DictStore()
    await proc.process([(ev(j, f"u{j}", ITEMS[j]), 0) for j in range(4)], store, behind=True)
    busy_worker(proc)
    # Not behind, but batches back to back: the waiting re-folds (not due) stay queued.
    busy = await proc.process([(ev(9, "u9", ITEMS[5]), 0)], store, behind=False)
    assert busy.entities_refreshed == 0 and proc.pending == 5
    assert len(busy.freshness_s) == 1  # u9's list changed at the first level
    proc.spare.ended(time.monotonic())
    assert (await proc.relist_idle(store)).entities_refreshed == 0  # batches still come
    proc.spare.ended(time.monotonic() - 1.0)  # none since: idle
    done = await proc.relist_idle(store)
    assert done.entities_refreshed == 5 and proc.pending == 0
    await client.aclose()
