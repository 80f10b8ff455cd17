"""State no client can grow without bound, on a real redis-server, through the real
EventProcessor and its Lua scripts (``stream.bounds``), and the cart read of the serve
script watched with MONITOR."""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import redis

from core.redis_client import async_client, sync_client
from core.redis_keys import RedisKeys
from core.settings import Settings
from recommender.abuse import AbusePolicy
from schemas import TopicEvent
from stream.bounds import StateBounds
from stream.history_store import DictStore
from stream.processor import EventProcessor, ProcessorConfig
from stream.redis_writer import RedisWriter
from tests.integration.api.app_client import running
from tests.polling import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(either_redis: Settings) -> Settings:
    """On one Redis and on a Redis Cluster: the worker's writes are the same calls."""
    return either_redis
K = RedisKeys()
NOW = 1_750_000_000.0
BOUNDS = StateBounds(entity_ttl_s=86_400, anonymous_ttl_s=3_600, cart_max=100, bought_max=5,
                     distinct_exact_max=10, ranked_items_max=20, cooc_max=8)


def ev(i: int, etype: str, item: str | None, *, user: str | None = None,
       anon: str | None = None, event_id: str | None = None, **kw: Any) -> TopicEvent:
    return TopicEvent(event_id=event_id or f"b{i}", type=etype, user_id=user,
                      anonymous_id=anon, item_id=item, ts=NOW + i, received_at=NOW + i, **kw)


async def apply(settings: Settings, events: list[TopicEvent], bounds: StateBounds = BOUNDS,
                store: DictStore | None = None, abuse: AbusePolicy | None = None) -> Any:
    client = async_client(settings)
    writer = RedisWriter(client, K, dedupe_ttl_s=3600, bounds=bounds)
    proc = EventProcessor(writer, K, ProcessorConfig(bounds=bounds, abuse=abuse or AbusePolicy()),
                          lambda: None)
    store = store if store is not None else DictStore()
    results = []
    for start in range(0, len(events), 500):
        results.append(await proc.process([(e, 0) for e in events[start:start + 500]], store))
    await client.aclose()
    return results


@pytest.fixture
def r(settings: Settings) -> Any:
    client = sync_client(settings, decode_responses=True)
    yield client
    client.close()


async def test_carts_and_purchases_keep_their_newest_and_entity_keys_expire(
        settings: Settings, r: redis.Redis) -> None:
    events = [ev(i, "add_to_cart", f"c{i}", user="hoarder") for i in range(10_000)]
    events += [ev(20_000 + i, "purchase", f"p{i}", anon="anon-buyer") for i in range(12)]
    await apply(settings, events)
    cart = r.zrevrange(K.user_cart("hoarder"), 0, -1)
    assert len(cart) == 100 and cart[0] == "c9999" and cart[-1] == "c9900"
    assert r.zrange(K.user_bought("anon-buyer"), 0, -1) == [f"p{i}" for i in range(7, 12)]
    for key in r.scan_iter(match=K.entity_pattern):
        limit = BOUNDS.anonymous_ttl_s if "anon-buyer" in key else BOUNDS.entity_ttl_s
        assert 0 < r.ttl(key) <= limit, key


async def test_a_10000_item_cart_is_read_as_its_newest_cart_max(settings: Settings,
                                                                r: redis.Redis) -> None:
    """Even a cart key holding 10,000 items (written before carts were trimmed, or before
    ``cart_max`` was lowered) costs serving one read of its newest ``cart_max`` entries:
    MONITOR shows every read of the cart key. Those newest ones are never recommended
    (the worker keeps no more than them)."""
    if settings.redis_mode == "cluster":
        pytest.skip("MONITOR watches one server; the read is the same on a cluster")
    cart = K.user_cart("big")
    r.zadd(cart, {f"c{i}": float(i) for i in range(10_000)})
    r.zadd(K.popular, {"c9999": 9, "c9950": 8, "other": 1})
    seen: list[list[str]] = []
    ready, stop = threading.Event(), threading.Event()

    def watch() -> None:
        watcher = redis.Redis.from_url(settings.redis_url, decode_responses=True)
        with watcher.monitor() as m:
            ready.set()
            while not stop.is_set():
                command = m.next_command()["command"]
                if "end-of-test" in command:
                    return
                if cart in command:
                    seen.append(command.split(" "))
        watcher.close()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    ready.wait(5)
    s = settings.model_copy(update={"cart_max": 100})
    async with running(s, wait_ready=False) as client:
        resp = await client.get("/v1/users/big/recommendations?context=cart&n=3")
    r.echo("end-of-test")
    thread.join(10)
    stop.set()
    assert resp.status_code == 200
    ids = [i["item_id"] for i in resp.json()["items"]]
    assert "other" in ids  # the newest cart_max cart items are blocked
    assert "c9999" not in ids and "c9950" not in ids
    reads = [c for c in seen if c[0] not in ("EVAL", "EVALSHA")]  # the script's own calls
    assert reads == [["ZREVRANGE", cart, "0", "99"]], reads


async def test_distinct_counts_stay_small_and_lists_are_trimmed(settings: Settings,
                                                                r: redis.Redis) -> None:
    events = [ev(i, "view", "star", user=f"fan{i}") for i in range(60)]
    events += [ev(100 + i, "view", f"item{i}", user="browser") for i in range(50)]
    # Established ids (first seen long ago) so the budget and trust do not mask the trims.
    old = [ev(-10_000 - i, "view", "old", user=f"fan{i}", event_id=f"o{i}")
           for i in range(60)] + [ev(-20_000, "view", "old", user="browser", event_id="ob")]
    r.set(K.item_users_hll("star"), "an older layout")  # replaced, as any other key
    await apply(settings, old + events)
    assert r.scard(K.item_users("star")) == 10  # exact set full: the HyperLogLog counts on
    assert abs(r.pfcount(K.item_users_hll("star")) - 60) <= 2
    # under the cap the exact set alone counts: no estimate is kept
    assert not r.exists(K.item_users_hll("item0"))
    assert r.zcard(K.popular) <= 20 and r.zcard(K.trending) <= 20
    assert r.zscore(K.popular, "star") is not None  # the strongest are the ones kept
    assert max(r.zcard(k) for k in r.scan_iter(match=K.pattern("item_cooc"))) <= 8
    s = settings.model_copy(update={"admin_keys": "adm-bounded-0123456789",
                                    "distinct_exact_max": 10})
    async with running(s, wait_ready=False) as client:
        stats = await client.get("/v1/admin/items/star/stats",
                                 headers={"X-API-Key": "adm-bounded-0123456789"})
    assert abs(stats.json()["distinct_users"] - 60) <= 2 and stats.json()["views"] == 60


async def test_unknown_items_create_no_item_keys_when_the_catalog_is_required(
        settings: Settings, r: redis.Redis) -> None:
    r.hset(K.item_meta("known"), mapping={"name": "Known", "in_stock": "1"})
    bounds = replace(BOUNDS, require_catalog=True)
    events = [ev(0, "view", "known", user="u1"), ev(1, "view", "ghost", user="u1"),
              ev(2, "add_to_cart", "ghost", user="u1"), ev(3, "purchase", "ghost", user="u1"),
              ev(4, "impression", None, user="u1",
                 item_ids=["ghost", "known", "ghost2", "known", "known"]),
              ev(5, "click", "known", user="u1")]
    await apply(settings, events, bounds)
    item_keys = sorted(r.scan_iter(match=K.item_pattern()))
    assert item_keys and all(":known:" in k for k in item_keys), item_keys
    assert r.zrange(K.popular, 0, -1) == ["known"]
    assert r.hget(K.item_stats("known"), "impression") == "1"  # once per event


async def test_ids_with_only_unknown_items_get_no_stored_list_when_the_catalog_is_required(
        settings: Settings, r: redis.Redis) -> None:
    """A list of nothing but the global heads is what serving falls back to anyway: with
    require_catalog it is not stored for a forged id naming unknown items (it was ~1.1 KB
    per id once a model was live), while a shopper of known items gets theirs."""
    from recommender.idmap import IdMap
    from recommender.model import FoldInModel

    items = [f"k{j}" for j in range(8)]
    for item in items:
        r.hset(K.item_meta(item), mapping={"name": item, "in_stock": "1"})
    r.zadd(K.popular, {item: 10.0 - j for j, item in enumerate(items)})
    factors = np.random.default_rng(3).normal(size=(len(items), 4)).astype(np.float32)
    model = FoldInModel.build("v1", IdMap(items), factors, regularization=0.1, alpha=10.0)
    for required, forged in ((True, "forged"), (False, "forged-open")):
        bounds = replace(BOUNDS, require_catalog=required)
        client = async_client(settings)
        proc = EventProcessor(RedisWriter(client, K, dedupe_ttl_s=3600, bounds=bounds), K,
                              ProcessorConfig(bounds=bounds), lambda: model)
        events = [ev(0, "view", f"ghost-{forged}", anon=forged, event_id=f"{forged}-0"),
                  ev(1, "purchase", f"ghost2-{forged}", anon=forged, event_id=f"{forged}-1"),
                  ev(2, "view", "k1", anon=f"shopper-{forged}", event_id=f"{forged}-2")]
        await proc.process([(e, 0) for e in events], DictStore())
        await client.aclose()
        assert r.exists(K.user_recs(forged)) == (0 if required else 1), forged
        assert r.exists(K.user_recent(forged))  # its session list is still kept
        assert r.exists(K.user_recs(f"shopper-{forged}"))


async def test_event_ids_are_deduplicated_per_shopper_not_globally(settings: Settings,
                                                                   r: redis.Redis) -> None:
    events = [ev(0, "view", "a", user="alice", event_id="evt-1"),
              ev(1, "view", "a", user="mallory", event_id="evt-1"),  # the same id
              ev(2, "view", "a", user="alice", event_id="evt-1")]    # a real retry
    await apply(settings, events)
    assert r.hget(K.item_stats("a"), "view") == "2"


async def test_an_anonymous_id_forwards_to_a_bounded_number_of_users(settings: Settings) -> None:
    store = DictStore()
    await apply(settings, [ev(0, "view", "a", anon="shared")], store=store)
    links = [TopicEvent(event_id=f"id{u}", type="identify", anonymous_id="shared",
                        user_id=f"user{u}", ts=NOW + 10 + u) for u in range(5)]
    results = await apply(settings, links, store=store)
    assert set(results[0].forwards) == {"user0", "user1", "user2"}
    assert results[0].identify_refused == 2


async def test_fresh_ids_share_one_budget_per_item(settings: Settings, r: redis.Redis) -> None:
    events = [ev(i, "purchase", "target", anon=f"sybil{i}", quantity=1_000_000)
              for i in range(300)]
    await apply(settings, events, abuse=AbusePolicy(newcomer_budget=3.0))
    assert float(r.zscore(K.popular, "target")) == pytest.approx(3.0)
    assert r.hget(K.item_stats("target"), "purchase") == "300"  # exact counts: all


async def test_keys_of_an_older_layout_are_replaced_not_fatal(settings: Settings,
                                                              r: redis.Redis) -> None:
    r.sadd(K.user_cart("legacy"), "old-item")  # carts were sets
    r.sadd(K.user_bought("legacy"), "old-buy")
    await apply(settings, [ev(0, "add_to_cart", "x", user="legacy"),
                           ev(1, "purchase", "y", user="legacy")])
    assert r.type(K.user_cart("legacy")) == "zset" and r.type(K.user_bought("legacy")) == "zset"
    assert r.zrange(K.user_cart("legacy"), 0, -1) == ["x"]
    wait_for(lambda: r.ttl(K.user_cart("legacy")) > 0, what="cart ttl")


async def test_the_writer_counts_what_the_bounds_cut(settings: Settings,
                                                     r: redis.Redis) -> None:
    r.hset(K.item_meta("known"), mapping={"name": "Known"})
    client = async_client(settings)
    bounds = replace(BOUNDS, require_catalog=True)
    writer = RedisWriter(client, K, dedupe_ttl_s=3600, bounds=bounds)
    proc = EventProcessor(writer, K, ProcessorConfig(bounds=bounds), lambda: None)
    events = [ev(i, "view", "known", anon=f"new{i}") for i in range(100)]
    events += [ev(200 + i, "view", f"ghost{i}", anon=f"new{i}") for i in range(5)]
    await proc.process([(e, 0) for e in events], DictStore())
    await proc.process([(e, 0) for e in events], DictStore())  # redelivered: no new counts
    counts = writer.take_counts()
    await client.aclose()
    assert counts["uncatalogued"] == 5
    assert counts["budget_cut"] == 100 - 60  # 60 fresh views of 0.05 fill a budget of 3
    assert not writer.take_counts()


async def test_carts_are_the_same_whatever_order_the_events_are_applied_in(
        settings: Settings, r: redis.Redis) -> None:
    """A rebalance redelivers a batch after newer ones were applied; a late event comes
    after newer ones: an addition older than a removal never brings the item back, a
    removal older than an addition never takes it out, and purchase times only move on."""
    add, drop = ev(1, "add_to_cart", "kettle", user="o"), ev(2, "remove_from_cart", "kettle",
                                                            user="o")
    add_cup, buy_cup = ev(3, "add_to_cart", "cup", user="o"), ev(4, "purchase", "cup", user="o")
    await apply(settings, [add, drop, add_cup, buy_cup])
    once = (r.zrange(K.user_cart("o"), 0, -1), r.zrange(K.user_basket("o"), 0, -1),
            r.zrange(K.item_carters("kettle"), 0, -1), r.zscore(K.user_bought("o"), "cup"))
    assert once[0] == [] and once[2] == [] and once[3] == NOW + 4
    await apply(settings, [add, add_cup])  # redelivered: older than what followed them
    assert (r.zrange(K.user_cart("o"), 0, -1), r.zrange(K.user_basket("o"), 0, -1),
            r.zrange(K.item_carters("kettle"), 0, -1), r.zscore(K.user_bought("o"), "cup")
            ) == once
    await apply(settings, [ev(5, "add_to_cart", "kettle", user="o"), drop])  # a late removal
    assert r.zrange(K.user_cart("o"), 0, -1) == ["kettle"]


async def test_a_retry_stamped_in_the_next_hour_is_counted_once(settings: Settings,
                                                                r: redis.Redis) -> None:
    # Found from outside: an event sent without a timestamp takes the API's receive time,
    # so a retry of it (same event_id) after the top of the hour fell in another hour's
    # seen set and counted twice. The seen set of the hour before is consulted too.
    end = (NOW // 3600 + 1) * 3600
    first = TopicEvent(event_id="evt-r", type="view", user_id="alice", item_id="a",
                       ts=end - 2, received_at=end - 2)
    retry = first.model_copy(update={"ts": end + 30, "received_at": end + 30})
    await apply(settings, [first])
    await apply(settings, [retry])
    await apply(settings, [retry.model_copy(update={"user_id": "bob"})])  # another shopper's
    assert r.hget(K.item_stats("a"), "view") == "2"


async def test_an_identified_anonymous_ids_keys_keep_the_anonymous_lifetime(
        settings: Settings, r: redis.Redis) -> None:
    """Found from outside: an ``identify`` is applied on the anonymous id's partition with
    a ``user_id`` set, so the anonymous id's lists were written with the users' 90-day
    lifetime, not the 14 days of an id anyone can mint: a flood of identify calls of
    fresh pairs left ~1 KB per call for 90 days."""
    store = DictStore()
    await apply(settings, [ev(0, "view", "a", anon="had-history")], store=store)
    links = [TopicEvent(event_id=f"link{u}", type="identify", anonymous_id=anon,
                        user_id=f"named{u}", ts=NOW + 10 + u, received_at=NOW + 10 + u)
             for u, anon in enumerate(["had-history", "fresh-anon"])]
    await apply(settings, links, store=store)
    for anon in ("had-history", "fresh-anon"):
        keys = [key for key in K.entity_keys(anon) if r.exists(key)]
        assert K.user_recent(anon) in keys, anon
        for key in keys:
            assert 0 < r.ttl(key) <= BOUNDS.anonymous_ttl_s, key
