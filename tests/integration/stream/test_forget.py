"""Forgetting a user in the stream against real Redis and Kafka: the processor erases
the history, keys and item-set memberships of a forgotten id, its earlier events never
apply again, and neither a rebuild from the log nor a retrain brings it back."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from kafka import KafkaProducer

from core import kafka_tools
from core.redis_client import async_client, sync_client
from core.redis_keys import RedisKeys
from core.settings import Settings
from recommender.interactions import row_event
from schemas import EventEnvelope, TopicEvent
from schemas.merch import ForgetRecord
from stream.bounds import StateBounds
from stream.history_store import DictStore
from stream.processor import EventProcessor, ProcessorConfig
from stream.rebuild import replay_into_redis
from stream.redis_writer import RedisWriter
from stream.retrain_read import iter_topic_events

pytestmark = [pytest.mark.integration, pytest.mark.broker]


@pytest.fixture
def settings(either_redis: Settings) -> Settings:
    """On one Redis, then on a Redis Cluster (same keys and scripts)."""
    return either_redis

K = RedisKeys()
NOW = time.time()


def ev(i: int, etype: str, user: str | None = None, item: str | None = "a", *,
       anon: str | None = None, at: float = NOW - 1000) -> TopicEvent:
    return TopicEvent(event_id=f"e{i}", type=etype, user_id=user, anonymous_id=anon,
                      item_id=None if etype in ("identify", "forget") else item,
                      ts=at + i, received_at=at + i)


def shop_events() -> list[TopicEvent]:
    """u1 views, carts and buys; anonymous a1 (later identified as u1) and u2 view."""
    return [ev(1, "view", "u1", "a"), ev(2, "view", "u1", "b"), ev(3, "add_to_cart", "u1", "c"),
            ev(4, "purchase", "u1", "b"), ev(5, "view", None, "a", anon="a1"),
            ev(6, "view", "u2", "a"), ev(7, "identify", "u1", anon="a1"),
            ev(8, "add_to_cart", "u2", "c")]


async def make(settings: Settings, **config: Any
               ) -> tuple[EventProcessor, aioredis.Redis, DictStore]:
    client = async_client(settings, decode_responses=True)
    writer = RedisWriter(client, K, dedupe_ttl_s=3600)
    return (EventProcessor(writer, K, ProcessorConfig(**config), lambda: None), client,
            DictStore())


async def test_a_forget_event_erases_the_id_and_its_earlier_events_never_apply(
        settings: Settings) -> None:
    proc, client, store = await make(settings)
    await proc.process([(e, 0) for e in shop_events()], store)
    assert await client.smembers(K.user_anons("u1")) == {"a1"}
    # The link lasts as long as a1's state can (links_ttl_s after its last write), so
    # that forgetting u1 any time later still finds a1.
    lifetime = StateBounds().links_ttl_s
    assert lifetime - 5 < await client.ttl(K.user_anons("u1")) <= lifetime
    assert await client.smembers(K.item_users("a")) == {"u1", "a1", "u2"}
    assert await client.zscore(K.item_carters("c"), "u1") is not None
    forgotten_at = NOW
    forget = [(TopicEvent(event_id="f1", type="forget", user_id="u1", ts=forgotten_at,
                          received_at=forgotten_at), 0),
              (TopicEvent(event_id="f2", type="forget", anonymous_id="a1", ts=forgotten_at,
                          received_at=forgotten_at), 1)]
    # A redelivered earlier event in the same batch and one received after the forget.
    later = ev(20, "view", "u1", "d", at=forgotten_at)
    await proc.process([(shop_events()[0], 0), *forget, (later, 0)], store)
    assert store.get("a1") is None
    assert [e[1] for e in store.get("u1")["entries"]] == ["d"]  # starts over
    gone = [*K.entity_keys("a1"), K.user_bought("u1"), K.user_cart("u1"),
            K.user_basket("u1"), K.user_anons("u1")]
    assert not await client.exists(*gone)
    assert orjson.loads(await client.get(K.user_recent("u1"))) == ["d"]  # the later view
    assert await client.smembers(K.item_users("a")) == {"u2"}
    assert await client.smembers(K.item_buyers("b")) == set()
    assert await client.zrange(K.item_carters("c"), 0, -1) == ["u2"]
    assert await client.hgetall(K.forgotten) == {"u1": repr(forgotten_at),
                                                  "a1": repr(forgotten_at)}
    # Redelivered events of the forgotten ids are dropped from now on.
    await proc.process([(e, 0) for e in shop_events()], store)
    assert store.get("a1") is None and not await client.exists(K.user_bought("u1"))
    assert await client.smembers(K.item_users("a")) == {"u2"}
    await client.aclose()


async def test_an_anonymous_id_forgotten_alone_is_named_by_no_user(settings: Settings
                                                                     ) -> None:
    """Forgetting a1 (identified as u1), not u1: u1's set of anonymous ids no longer names
    it, at once from a1's links and, for a link the API recorded that the history lacks
    (u3's), by the sweep. u1 keeps its own history."""
    proc, client, store = await make(settings)
    await proc.process([(e, 0) for e in shop_events()], store)
    await client.sadd(K.user_anons("u3"), "a1", "a3")  # as api.ingest records an identify
    assert await client.smembers(K.user_anons("u1")) == {"a1"}
    await proc.process([(TopicEvent(event_id="f", type="forget", anonymous_id="a1", ts=NOW,
                                    received_at=NOW), 1)], store)
    assert not await client.exists(K.user_anons("u1"), *K.entity_keys("a1"))
    assert store.get("a1") is None and store.get("u1") is not None
    assert await client.exists(K.user_bought("u1"))
    assert proc.forgetting._sweeping is not None
    await asyncio.wait_for(proc.forgetting._sweeping, 30)
    assert await client.smembers(K.user_anons("u3")) == {"a3"}
    await client.aclose()


async def test_a_forget_waits_for_the_write_in_flight_of_the_step_before(
        settings: Settings) -> None:
    """The worker applies a large batch in pipelined steps: the step before's write (u1's
    cart, basket, recent list) was still in flight when the next step's forget erased
    u1, and landed after it, bringing the keys back for their TTL."""
    proc, client, store = await make(settings, count_stats=False)
    carts = [ev(i, "add_to_cart", "u1", f"i{i}") for i in range(50)]
    result = await proc.process([(e, 0) for e in carts], store, pipelined=True)
    assert result.applied == 0  # its write is in flight
    forget = TopicEvent(event_id="f", type="forget", user_id="u1", ts=NOW, received_at=NOW)
    result = await proc.process([(forget, 0)], store, pipelined=True)
    assert result.applied == 50  # the write before, waited for
    await proc.drain()
    assert not await client.exists(*K.entity_keys("u1"))
    assert store.get("u1") is None
    await client.aclose()


async def test_the_sweep_removes_memberships_older_than_the_history(
        settings: Settings) -> None:
    proc, client, store = await make(settings, history_max=2)
    await proc.process([(ev(i, "view", "u1", f"i{i}"), 0) for i in range(6)], store)
    assert await client.sismember(K.item_users("i0"), "u1")
    await proc.process([(TopicEvent(event_id="f", type="forget", user_id="u1", ts=NOW,
                                    received_at=NOW), 0)], store)
    assert proc.forgetting._sweeping is not None
    await asyncio.wait_for(proc.forgetting._sweeping, 30)
    for i in range(6):
        assert not await client.sismember(K.item_users(f"i{i}"), "u1")
    await client.aclose()


async def test_a_forget_erases_the_cart_removals_that_name_the_id(settings: Settings) -> None:
    """An item's removed carters (``carters_gone``, kept so a late add cannot undo a
    removal) named the forgotten id after the forget: by the erase for the items of its
    history, by the sweep for removals older than the history."""
    proc, client, store = await make(settings, history_max=2)
    moves = [ev(1, "add_to_cart", "u1", "old"), ev(2, "remove_from_cart", "u1", "old"),
             ev(3, "view", "u1", "x"), ev(4, "view", "u1", "y"),
             ev(5, "add_to_cart", "u1", "c"), ev(6, "remove_from_cart", "u1", "c"),
             ev(7, "add_to_cart", "u2", "c"), ev(8, "remove_from_cart", "u2", "c")]
    await proc.process([(e, 0) for e in moves], store)
    for item in ("old", "c"):
        assert await client.zscore(K.item_carters_gone(item), "u1") is not None
    await proc.process([(TopicEvent(event_id="f", type="forget", user_id="u1", ts=NOW,
                                    received_at=NOW), 0)], store)
    assert await client.zrange(K.item_carters_gone("c"), 0, -1) == ["u2"]
    assert proc.forgetting._sweeping is not None
    await asyncio.wait_for(proc.forgetting._sweeping, 30)
    assert await client.zscore(K.item_carters_gone("old"), "u1") is None
    await client.aclose()


async def test_the_sweep_keeps_what_events_after_the_forget_added(settings: Settings
                                                                  ) -> None:
    """The order of ``streamrec replay --rebuild``: u24's forget, then its later events
    (it came back), applied while the background sweep still scans every item set. The
    sweep used to remove the memberships those events had just added, so the item's
    distinct users (``GET /v1/admin/items/{id}/stats``) differed from the live state and
    from ``streamrec rebuild``. It still removes the older ones its history had lost."""
    proc, client, store = await make(settings, history_max=2)
    old = [ev(i, "purchase", "u24", f"old{i}") for i in range(4)]  # beyond the history
    await proc.process([(e, 0) for e in [*old, ev(5, "view", "u24", "sku-30"),
                                         ev(6, "view", "u9", "sku-30")]], store)
    # A shop with many items: the sweep scans every key, several times (one per kind).
    pipe = client.pipeline(transaction=False)
    for n in range(20000):
        pipe.sadd(K.item_users(f"other{n}"), "u9")
    await pipe.execute()
    forget = TopicEvent(event_id="f24", type="forget", user_id="u24", ts=NOW,
                        received_at=NOW)
    await proc.process([(forget, 0)], store)
    sweep = proc.forgetting._sweeping
    assert sweep is not None and not sweep.done()
    back = [ev(40, "view", "u24", "sku-30", at=NOW), ev(41, "purchase", "u24", "sku-30", at=NOW),
            ev(42, "add_to_cart", "u24", "sku-31", at=NOW),
            ev(43, "remove_from_cart", "u24", "sku-31", at=NOW)]
    await proc.process([(e, 0) for e in back], store)
    await asyncio.wait_for(sweep, 120)
    assert await client.smembers(K.item_users("sku-30")) == {"u9", "u24"}
    assert await client.scard(K.item_users("sku-30")) == 2  # the stats' distinct users
    assert await client.smembers(K.item_buyers("sku-30")) == {"u24"}
    assert await client.zrange(K.item_carters("sku-30"), 0, -1) == ["u24"]
    assert await client.zrange(K.item_carters_gone("sku-31"), 0, -1) == ["u24"]
    for i in range(4):  # the memberships from before the forget are gone all the same
        assert not await client.sismember(K.item_users(f"old{i}"), "u24")
        assert not await client.sismember(K.item_buyers(f"old{i}"), "u24")
        assert await client.zscore(K.item_carters(f"old{i}"), "u24") is None
    await client.aclose()


async def test_a_sweep_cut_short_by_a_restart_is_taken_up_by_the_next_worker(
        settings: Settings) -> None:
    """The ids pending for the sweep lived only in the worker's memory: a worker killed
    (SIGKILL, OOM, a deploy) after the forget and before its sweep was done never swept
    them, and the id stayed for ever in the sets its history had lost (the item stats'
    distinct users kept counting it). Now they are written down in Redis first and the
    next worker (a new processor here, as a restarted one makes) takes the sweep up."""
    proc, client, store = await make(settings, history_max=2)
    old = [ev(i, kind, "u7", f"old{i}") for i, kind in enumerate(
        ["view", "purchase", "add_to_cart", "add_to_cart", "remove_from_cart"] * 4)]
    await proc.process([(e, 0) for e in [*old, ev(30, "view", "u7", "x"),
                                         ev(31, "view", "u7", "y")]], store)
    await client.sadd(K.user_anons("u8"), "u7", "a8")  # as api.ingest records an identify
    pipe = client.pipeline(transaction=False)
    for n in range(20000):  # a shop with many items: the sweep takes a while
        pipe.sadd(K.item_users(f"other{n}"), "u9")
    await pipe.execute()
    assert await client.sismember(K.item_buyers("old1"), "u7")
    await proc.process([(TopicEvent(event_id="f7", type="forget", user_id="u7", ts=NOW,
                                    received_at=NOW), 0)], store)
    sweep = proc.forgetting._sweeping
    assert sweep is not None
    # Cut it early: the sweep's SCAN of 5 patterns over 20,000 keys is ~100 round trips,
    # and on a fast runner 0.2 s was enough for it to end (and strike the entry off).
    await asyncio.sleep(0.01)
    assert not sweep.done()
    while not sweep.done():  # the worker dies mid-sweep: nothing of it runs on
        # One cancel is not enough: redis-py sends each command under asyncio.wait_for
        # (its default 5 s socket timeout), which on Python 3.11 drops a cancel landing
        # as the send completes (as api.snapshot's stop knows); the sweep then ran to
        # its end and struck u7 off, in ~1 run of 6 on a loaded machine.
        sweep.cancel()
        await asyncio.sleep(0)
    assert await client.hget(K.forgotten_pending, "u7") == repr(NOW)
    assert await client.sismember(K.user_anons("u8"), "u7")  # still there: the cut sweep

    restarted, _, _ = await make(settings, history_max=2)  # what a new worker makes
    assert await restarted.forgetting.resume(lambda entity: entity != "u9") == 1
    assert restarted.forgetting._sweeping is not None
    await asyncio.wait_for(restarted.forgetting._sweeping, 120)
    for i, kind in enumerate(["view", "purchase", "add_to_cart", "add_to_cart",
                              "remove_from_cart"] * 4):
        assert not await client.sismember(K.item_users(f"old{i}"), "u7"), kind
        assert not await client.sismember(K.item_buyers(f"old{i}"), "u7"), kind
        assert await client.zscore(K.item_carters(f"old{i}"), "u7") is None, kind
        assert await client.zscore(K.item_carters_gone(f"old{i}"), "u7") is None, kind
    assert await client.smembers(K.user_anons("u8")) == {"a8"}
    assert not await client.exists(K.forgotten_pending)  # done: nothing left to resume
    assert await restarted.forgetting.resume() == 0
    await client.aclose()


async def test_a_sweep_struck_off_only_for_the_forget_it_swept(settings: Settings) -> None:
    """An id forgotten again (by another worker, its partition moved) while a sweep of
    its earlier forget runs stays pending: that sweep's end does not strike it off."""
    proc, client, store = await make(settings)
    await proc.process([(ev(1, "view", "u5", "i1"), 0)], store)
    await proc.process([(TopicEvent(event_id="f5", type="forget", user_id="u5", ts=NOW,
                                    received_at=NOW), 0)], store)
    await client.hset(K.forgotten_pending, "u5", repr(NOW + 1))  # the other worker's
    assert proc.forgetting._sweeping is not None
    await asyncio.wait_for(proc.forgetting._sweeping, 30)
    assert await client.hget(K.forgotten_pending, "u5") == repr(NOW + 1)
    assert await proc.forgetting.resume() == 1  # the new owner's, here this worker
    await asyncio.wait_for(proc.forgetting._sweeping, 30)
    assert not await client.exists(K.forgotten_pending)
    await client.aclose()


def produce(settings: Settings, events: list[TopicEvent], forgotten: dict[str, float]) -> None:
    kafka_tools.create_topics(settings)
    producer = KafkaProducer(**kafka_tools.client_options(settings), acks="all")
    for event in events:
        producer.send(settings.topic_events, key=event.entity.encode(), value=orjson.dumps(
            EventEnvelope(events=[event]).model_dump(exclude_none=True)))
    for entity, at in forgotten.items():
        producer.send(settings.topic_forgotten, key=entity.encode(),
                      value=ForgetRecord(entity=entity, at=at).model_dump_json().encode())
    producer.flush()
    producer.close()


def test_no_rebuild_or_retrain_brings_a_forgotten_id_back(settings: Settings) -> None:
    comeback = ev(30, "view", "u1", "z", at=NOW)  # after the forget: counts
    produce(settings, [*shop_events(), comeback], {"u1": NOW - 1, "a1": NOW - 1})
    client = async_client(settings, decode_responses=True)
    asyncio.run(replay_into_redis(settings, client))
    sync = sync_client(settings, decode_responses=True)
    assert sync.smembers(K.item_users("a")) == {"u2"}
    assert sync.smembers(K.item_users("z")) == {"u1"}
    assert not sync.exists(K.user_bought("u1"), K.user_cart("u1"), K.user_anons("u1"),
                           K.user_recent("a1"))
    assert float(sync.hget(K.forgotten, "u1")) == NOW - 1
    # The retrain reads the log without them too (what it trains on).
    read = [row_event(row) for row in iter_topic_events(settings)]
    assert {(e["user_id"], e["item_id"]) for e in read if e["user_id"] == "u1"} == {("u1", "z")}
    assert all(e.get("anonymous_id") != "a1" for e in read)
    sync.close()
