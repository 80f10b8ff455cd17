"""The event processor against a real Redis: counted effects once, lists refreshed."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest
import redis.asyncio as aioredis

from core.redis_client import async_client
from core.redis_keys import RedisKeys
from core.settings import Settings
from recommender.blend_many import RowList
from schemas import TopicEvent
from stream.history_store import DictStore
from stream.processor import EventProcessor, ProcessorConfig
from stream.redis_writer import RedisWriter, dumps_list
from stream.row_lists import encode_rows
from tests.redis_state import snapshot

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(either_redis: Settings) -> Settings:
    """On one Redis and on a Redis Cluster: the worker's writes are the same calls."""
    return either_redis



def ev(i: int, etype: str, user: str | None, item: str | None, **kw: Any) -> TopicEvent:
    return TopicEvent(event_id=f"e{i}", type=etype, user_id=user, item_id=item,
                      ts=1_700_000_000 + i, received_at=1_700_000_000 + i, **kw)


async def make(settings: Any, prefix: str | None = None
               ) -> tuple[EventProcessor, aioredis.Redis, RedisKeys]:
    client = async_client(settings)
    keys = RedisKeys(prefix) if prefix is not None else RedisKeys()
    writer = RedisWriter(client, keys, dedupe_ttl_s=3600)
    proc = EventProcessor(writer, keys, ProcessorConfig(), lambda: None)
    return proc, client, keys


async def test_counts_once_and_replay_is_identical(settings: Any) -> None:
    proc, client, keys = await make(settings)
    store = DictStore()
    batch = [(ev(1, "view", "u1", "a"), 0), (ev(2, "view", "u1", "b"), 0),
             (ev(3, "purchase", "u1", "b"), 0), (ev(4, "view", "u2", "a"), 1)]
    result = await proc.process(batch, store)
    assert result.applied == 4
    once = snapshot(settings)
    again = await proc.process(batch, store)
    assert again.applied == 0
    assert snapshot(settings) == once
    assert int(await client.hget(keys.item_stats("a"), "view")) == 2
    assert await client.zscore(keys.user_bought("u1"), "b") is not None
    assert await client.zscore(keys.item_cooc("a"), "b") is not None
    assert orjson.loads(await client.get(keys.user_recent("u1")))[0] == "b"
    # When counted effects were last written: the age of popular/trending in traces.
    assert float(await client.hget(keys.stats, "counted_at")) > 1_700_000_000
    await client.aclose()


async def test_redelivery_writes_lists_a_crash_left_unwritten(settings: Any) -> None:
    # A worker killed after its table writes reached the changelog but before the lists
    # reached Redis: on redelivery the history already holds the events.
    proc, client, keys = await make(settings)
    store = DictStore()
    batch = [(ev(1, "view", "u1", "a"), 0), (ev(2, "view", "u1", "b"), 0)]
    await proc.process(batch, store)
    await client.delete(keys.user_recent("u1"))
    again = await proc.process(batch, store)
    assert again.applied == 0 and again.entities_refreshed == 1
    assert orjson.loads(await client.get(keys.user_recent("u1"))) == ["b", "a"]
    # Lists already in place: a redelivery rewrites nothing.
    assert (await proc.process(batch, store)).entities_refreshed == 0
    await client.aclose()


async def test_identify_forwards_history(settings: Any) -> None:
    proc, client, keys = await make(settings)
    store = DictStore()
    anon = [(ev(1, "view", None, "a", anonymous_id="anon1"), 0),
            (ev(2, "purchase", None, "b", anonymous_id="anon1"), 0)]
    await proc.process(anon, store)
    ident = TopicEvent(event_id="i1", type="identify", anonymous_id="anon1", user_id="u9",
                       ts=1_700_000_010)
    result = await proc.process([(ident, 0)], store)
    forwarded = result.forwards["u9"]
    assert {e.event_id for e in forwarded} == {"e1", "e2"}
    # The user's partition applies the forwarded copies: history grows, counts do not.
    before = int(await client.hget(keys.item_stats("a"), "view"))
    await proc.process([(e, 1) for e in forwarded], store)
    assert int(await client.hget(keys.item_stats("a"), "view")) == before
    assert await client.zscore(keys.user_bought("u9"), "b") is not None
    assert len(store.data["u9"]["entries"]) == 2
    # Later anonymous events are forwarded too.
    later = await proc.process([(ev(5, "view", None, "c", anonymous_id="anon1"), 0)], store)
    assert [e.user_id for e in later.forwards["u9"]] == ["u9"]
    await client.aclose()


async def counted_state(client: aioredis.Redis, keys: RedisKeys) -> dict[str, Any]:
    """The counted effects of items a and b (what a replay must rebuild as they were)."""
    return {item: (await client.hgetall(keys.item_stats(item)),
                   sorted(await client.smembers(keys.item_users(item))),
                   await client.zscore(keys.popular, item),
                   await client.zscore(keys.user_bought("u9"), item)) for item in ("a", "b")}


async def test_a_replay_reading_forwarded_copies_first_counts_as_the_live_run(
        settings: Any) -> None:
    # Live: anon1's events, identify, then the copies on u9's partition. A replay may
    # read u9's partition first: the copies must not claim the event ids (they did, and
    # the item's distinct users then named u9 instead of anon1).
    anon = [(ev(1, "view", None, "a", anonymous_id="anon1"), 0),
            (ev(2, "purchase", None, "b", anonymous_id="anon1"), 0)]
    ident = TopicEvent(event_id="i1", type="identify", anonymous_id="anon1", user_id="u9",
                       ts=1_700_000_010)
    proc, client, keys = await make(settings, "live:")
    store = DictStore()
    await proc.process(anon, store)
    copies = (await proc.process([(ident, 0)], store)).forwards["u9"]
    assert all(e.forwarded for e in copies)
    await proc.process([(e, 1) for e in copies], store)
    live = await counted_state(client, keys)
    assert live["a"][1] == [b"anon1"] and live["b"][3] is not None

    replay, replay_client, replay_keys = await make(settings, "replay:")
    store = DictStore()
    copied = [TopicEvent.model_validate_json(orjson.dumps(e.model_dump(exclude_none=True)))
              for e in copies]  # as read back from the topic
    assert (await replay.process([(e, 1) for e in copied], store)).applied == 0
    await replay.process(anon, store)
    await replay.process([(ident, 0)], store)
    assert await counted_state(replay_client, replay_keys) == live
    await client.aclose()
    await replay_client.aclose()


async def test_blend_inputs_binary_neighbour_lists_with_json_fallback(settings: Any) -> None:
    """The model version's binary lists are read as rows; items missing from the hash
    (older model, dropped version) come from the JSON lists."""
    _, client, keys = await make(settings)
    writer = RedisWriter(client, keys, dedupe_ttl_s=3600)
    await client.hset(keys.model_similar_rows("v9"),
                      mapping={"b": encode_rows(np.array([2, 0]), np.array([0.9, 0.25]))})
    await client.set(keys.item_similar("a"), dumps_list("v9", ["c", "b"], [0.8, 0.1]))
    got = (await writer.blend_inputs([], ["a", "b"], 10, version="v9")).similar
    assert isinstance(got["b"], RowList)
    assert got["b"].rows.tolist() == [2, 0] and got["b"].scores.tolist() == [0.9, 0.25]
    assert got["a"] == [("c", 0.8), ("b", 0.1)]
    plain = (await writer.blend_inputs([], ["a", "b"], 1)).similar  # no version: JSON only
    assert plain == {"a": [("c", 0.8)], "b": []}
    await client.aclose()


ITEMS = [f"i{j}" for j in range(12)]


def small_model(version: str, seed: int) -> Any:
    """A hand-built live model (random factors) over ``ITEMS``."""
    from recommender.idmap import IdMap
    from recommender.model import FoldInModel

    factors = np.random.default_rng(seed).normal(size=(len(ITEMS), 4)).astype(np.float32)
    return FoldInModel.build(version, IdMap(ITEMS), factors, regularization=0.1, alpha=10.0)


async def sweeping(settings: Any, per_batch: int
                   ) -> tuple[EventProcessor, aioredis.Redis, RedisKeys, dict[str, Any]]:
    """A processor with the refresh sweep on, serving ``live["model"]`` (v1 at first)."""
    client = async_client(settings)
    keys = RedisKeys()
    live = {"model": small_model("v1", seed=1)}
    proc = EventProcessor(RedisWriter(client, keys, dedupe_ttl_s=3600), keys,
                          ProcessorConfig(sweep_entities=100, sweep_per_batch=per_batch),
                          lambda: live["model"])
    return proc, client, keys, live


async def test_sweep_relists_active_users_on_the_new_model(settings: Any) -> None:
    """After a swap, a user without new events gets the new model's blended list back
    (the retrain had written a plain list over it), within the per-batch bound."""
    proc, client, keys, live = await sweeping(settings, per_batch=1)
    store = DictStore()
    first = [(ev(1, "view", "u1", "i0"), 0), (ev(2, "view", "u2", "i1"), 0),
             (ev(3, "view", "u1", "i2"), 0)]
    assert (await proc.process(first, store)).entities_swept == 0
    assert orjson.loads(await client.get(keys.user_recs("u1")))["v"] == "v1"

    live["model"] = small_model("v2", seed=2)  # the hot swap
    plain = dumps_list("v2", ["i5"], [1.0], ts=0.0)  # what the retrain wrote
    await client.set(keys.user_recs("u1"), plain)
    await client.set(keys.user_recs("u2"), plain)
    result = await proc.process([(ev(4, "view", "u3", "i3"), 0)], store)
    assert result.entities_swept == 1  # bounded per batch: the newest active user, u2
    stored = orjson.loads(await client.get(keys.user_recs("u2")))
    assert stored["v"] == "v2" and len(stored["items"]) > 1
    assert await client.get(keys.user_recs("u1")) == plain
    result = await proc.process([(ev(5, "view", "u3", "i4"), 0)], store)
    assert result.entities_swept == 1  # then u1; u3 is in the batch itself
    assert orjson.loads(await client.get(keys.user_recs("u1")))["v"] == "v2"
    assert (await proc.process([(ev(6, "view", "u3", "i6"), 0)], store)).entities_swept == 0
    await client.aclose()


async def test_idle_sweep_relists_without_traffic(settings: Any) -> None:
    """With no batch after the swap (``streamrec train`` on a quiet shop), the worker's
    idle timer re-lists every remembered user, in groups, on the new model."""
    proc, client, keys, live = await sweeping(settings, per_batch=2)
    store = DictStore()
    users = [f"u{j}" for j in range(5)]
    await proc.process([(ev(j, "view", u, ITEMS[j]), 0) for j, u in enumerate(users)], store)
    assert (await proc.relist_idle(store)).entities_swept == 0  # same model: nothing to do
    live["model"] = small_model("v2", seed=2)
    assert (await proc.relist_idle(store)).entities_swept == 5  # three groups of at most two
    for u in users:
        assert orjson.loads(await client.get(keys.user_recs(u)))["v"] == "v2"
    assert (await proc.relist_idle(store)).entities_swept == 0
    await client.aclose()


async def test_sweep_window_counts_receive_time_for_backfills(settings: Any) -> None:
    """Events posted now but dated days apart (a backfill in time order, as the held-out
    check through the API sends them): after ``streamrec train`` every one of those
    shoppers is re-listed on the new model, not only those of the newest hour of
    event time (they kept a list of the model live while they were posted)."""
    proc, client, keys, live = await sweeping(settings, per_batch=10)
    store = DictStore()
    users = [f"u{j}" for j in range(5)]
    now = 1_800_000_000.0
    events = [(TopicEvent(event_id=f"b{j}", type="view", user_id=u, item_id=ITEMS[j],
                          ts=now - 86400.0 * (5 - j), received_at=now + j), 0)
              for j, u in enumerate(users)]
    for event in events:  # one batch each, as a steady backfill arrives
        await proc.process([event], store)
    live["model"] = small_model("v2", seed=2)
    assert (await proc.relist_idle(store)).entities_swept == len(users)
    for u in users:
        assert orjson.loads(await client.get(keys.user_recs(u)))["v"] == "v2"
    await client.aclose()


async def test_a_rebase_drops_what_decayed_to_nothing(settings: Any) -> None:
    """A backfill of old history followed by live events: the rebase to the live time
    scaled the old scores to 0.0, and they stayed in the set, served as "trending now"
    in id order whenever fewer than n items had risen since."""
    proc, client, keys = await make(settings)
    store = DictStore()
    old = [(ev(i, "view", f"b{i}", f"old-{i % 3}"), 0) for i in range(6)]
    await proc.process(old, store)
    assert await client.zcard(keys.trending) == 3
    day = 86400
    live = [(TopicEvent(event_id=f"live{i}", type="view", user_id=f"l{i}", item_id="fresh",
                        ts=1_700_000_000 + 30 * day + i,
                        received_at=1_700_000_000 + 30 * day + i), 0) for i in range(2)]
    await proc.process(live, store)
    ranked = await client.zrevrange(keys.trending, 0, -1, withscores=True)
    assert [m for m, _ in ranked] == [b"fresh"], ranked
    assert ranked[0][1] > 0
    await client.aclose()


@pytest.mark.parametrize("b_first", ["ahead", "behind"])
async def test_a_rebase_by_another_worker_keeps_every_score(settings: Any, b_first: str) -> None:
    """Two workers (``streamrec up --workers 2``) share the trending set and its landmark
    but each cached the landmark. Worker A moves it; worker B, on a later batch, then
    scaled the set from its own stale landmark: A's rebased scores were shrunk 2^50 times
    too much and dropped, so trending lost every item but B's newest. A worker behind the
    others (events received before A's rebase) added weights 2^50 too large."""
    a, client, keys = await make(settings)
    b, _, _ = await make(settings)
    hl = a.config.trending_half_life_s
    t = 1_700_000_000.0

    def view(eid: str, user: str, item: str, at: float) -> tuple[TopicEvent, int]:
        return TopicEvent(event_id=eid, type="view", user_id=user, item_id=item,
                          ts=at, received_at=at), 0

    later = t + 51 * hl
    b_batches = [[view("b1", "ub", "lagging", t + 49 * hl)],
                 [view("b2", "wb", "warm", later + 2)]]
    if b_first == "ahead":
        b_batches.reverse()
    batches = [(a, [view("a0", "ua", "old-a", t)]), (b, [view("b0", "ub", "old-b", t + 1)]),
               (a, [view("a1", "ua", "hot", later), view("a2", "va", "hot", later + 1)]),
               *((b, batch) for batch in b_batches)]
    for proc, batch in batches:
        await proc.process(batch, DictStore())
    scores = dict(await client.zrevrange(keys.trending, 0, -1, withscores=True))
    # The same batches through one worker: the scores any number of workers must give.
    c, _, ckeys = await make(settings, prefix="solo")
    for _, batch in batches:
        await c.process(batch, DictStore())
    solo = dict(await client.zrevrange(ckeys.trending, 0, -1, withscores=True))
    assert set(scores) == set(solo), (scores, solo)
    t0, solo_t0 = float(await client.get(keys.trending_epoch)), float(
        await client.get(ckeys.trending_epoch))
    for item, value in solo.items():
        # Compared at one landmark: the decayed weights are equal.
        assert scores[item] * 2 ** ((t0 - solo_t0) / hl) == pytest.approx(value, rel=1e-6)
    await client.aclose()


async def test_a_lone_event_during_a_sweep_carries_few_swept_lists(settings: Any) -> None:
    """The live worker (sweep rate-limited): after a swap, a one-event batch re-lists at
    most ``SWEEP_BESIDE_FEW`` swept entities beside its own, not the whole allowance (its
    own list waited for 256 rebuilds, ~90 ms, while the sweep lasted); the idle timer
    re-lists the rest, in groups of at most ``IDLE_GROUP``."""
    from stream.relister import IDLE_GROUP, SWEEP_BESIDE_FEW

    client = async_client(settings)
    keys = RedisKeys()
    live = {"model": small_model("v1", seed=1)}
    proc = EventProcessor(RedisWriter(client, keys, dedupe_ttl_s=3600), keys,
                          ProcessorConfig(sweep_entities=200, sweep_per_batch=256,
                                          sweep_rate_limited=True), lambda: live["model"])
    store = DictStore()
    users = [f"u{j}" for j in range(100)]
    await proc.process([(ev(j, "view", u, ITEMS[j % len(ITEMS)]), 0)
                        for j, u in enumerate(users)], store)
    live["model"] = small_model("v2", seed=2)
    lone = await proc.process([(ev(500, "view", "u0", ITEMS[1]), 0)], store)
    assert lone.entities_swept == SWEEP_BESIDE_FEW
    rest = len(users) - SWEEP_BESIDE_FEW  # the oldest, u0, too: its own event came after
    assert proc.sweep.pending == rest > IDLE_GROUP
    assert (await proc.relist_idle(store)).entities_swept == rest
    for u in users:
        assert orjson.loads(await client.get(keys.user_recs(u)))["v"] == "v2"
    await client.aclose()
