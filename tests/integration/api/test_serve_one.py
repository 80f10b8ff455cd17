"""``SERVE_ONE`` (one round trip on one Redis) against ``SERVE`` after the reads of
``api.gather`` (the Redis Cluster's way), on a real redis-server: the same replies, the
same item keys, the same rate limit. ``test_serve_script.py`` compares the two on every
serving rule it tests; this file covers what only the one-trip script does itself."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import redis

from api.gather import ServeInputs, serve_list, serve_one
from api.serve_script import _PRELUDE, lua_source
from core.redis_client import async_client, run_batch, sync_client
from core.redis_keys import RedisKeys
from core.settings import Settings

pytestmark = pytest.mark.integration

K = RedisKeys()
SHARED = [K.model_current, K.unavailable, K.popular]


@pytest.fixture
def r(settings: Settings) -> Iterator[redis.Redis]:
    """A client of the test's (empty) standalone Redis."""
    client = sync_client(settings, decode_responses=True)
    yield client
    client.close()


def _inputs(settings: Settings, links: list[dict[str, Any]], **kw: Any) -> ServeInputs:
    request = {"n": 10, "page": 30, "scan": 500, "v": K.model_current,
               "un": K.unavailable, "meta": K.split("item_meta"), "catalog": False,
               "ex": [], "src": [dict(link) for link in links], **kw.pop("fields", {})}
    return ServeInputs(request, (), keys=K, settings=settings, **kw)


def _numbers(reply: list[Any]) -> list[Any]:
    """Numbers as values: redis-py hands the gather sorted-set scores as floats (which
    travel on as ``repr``), the script reads them as Redis wrote them."""
    out = []
    for value in reply:
        try:
            out.append(float(value) if isinstance(value, str) else value)
        except ValueError:
            out.append(value)
    return out


def _both(settings: Settings, links: list[dict[str, Any]], **kw: Any) -> list[Any]:
    async def run() -> list[Any]:
        client = async_client(settings, decode_responses=True)
        try:
            def batch(calls: Any) -> Any:
                return run_batch(client, calls)

            multi = await serve_list(batch, _inputs(settings, links, **kw), SHARED)
            one = await serve_one(batch, _inputs(settings, links, **kw), SHARED, rate=None)
            assert _numbers(one) == _numbers(multi)
            return one
        finally:
            await client.aclose()

    return asyncio.run(run())


@pytest.mark.parametrize("item", [
    "sku-1", "a", "x" * 128, "é", "日本語の商品", "😀-emoji", "with space", "0", "-1",
    "UPPER_lower.123", "ÿ" * 40,
])
def test_bucket_keys_built_in_lua_are_those_of_core_redis_keys(r: redis.Redis,
                                                              item: str) -> None:
    # the bucket rule (CRC-32 of the UTF-8 bytes) in Lua, against zlib's in Python
    script = r.register_script(_PRELUDE + lua_source("inline")
                               + "return INLINE.key(cjson.decode(ARGV[1]), ARGV[2])")
    assert script(keys=[], args=[orjson.dumps(K.bucketed("item_cooc")), item]) == \
        K.item_cooc(item)


def test_anchor_links_read_in_the_script_as_the_gather_reads_them(
        settings: Settings, r: redis.Redis) -> None:
    r.set(K.item_similar("anchor"), orjson.dumps(
        {"items": [["s1", 0.9], ["s2", 0.5], ["anchor", 0.4]]}))
    r.zadd(K.item_cooc("anchor"), {"c1": 5, "s2": 3, "c2": 1})
    r.zadd(K.popular, {"p1": 10, "p2": 5})
    for explain in (False, True):
        fields = {"ex": ["anchor"], "an": ["anchor"], **({"x": True} if explain else {})}
        reply = _both(settings, [{"k": "item_similar"}, {"k": "item_cooc"},
                                 {"k": "zset", "key": K.popular}],
                      entity=None, anchor="anchor", context="product", fields=fields)
        first = 7 + 2 * int(reply[5])
        assert [reply[at + 3] for at in range(first, first + 11 * int(reply[6]), 11)] == [
            "s1", "s2", "c1", "c2", "p1", "p2"]
    # a missing neighbour list and co-occurrence read as empty in both
    _both(settings, [{"k": "item_similar"}, {"k": "item_cooc"}], entity=None,
          anchor="gone", context="product", fields={"ex": ["gone"]})


def test_the_personal_list_and_the_session_are_read_in_the_script(
        settings: Settings, r: redis.Redis) -> None:
    r.set(K.user_recs("u"), orjson.dumps({"items": [["a", 0.9], ["b", 0.8]]}))
    r.set(K.user_recent("u"), orjson.dumps(["v1", "v1", "日本", "bad\n", 3]))
    r.zadd(K.item_cooc("v1"), {"x": 3, "a": 1})
    r.zadd(K.item_cooc("日本"), {"y": 2})
    r.zadd(K.user_bought("u"), {"x": 1.0})
    reply = _both(settings, [{"k": "user_recs"}, {"k": "session"}],
                  entity="u", anchor=None, context="home")
    first = 7 + 2 * int(reply[5])
    # x was bought: filtered; y comes from the second distinct valid recent item
    assert [reply[at + 3] for at in range(first, first + 11 * int(reply[6]), 11)] == [
        "a", "b", "y"]


def test_the_rate_limit_refuses_before_anything_is_read(settings: Settings) -> None:
    limited: list[float] = []

    async def run() -> list[Any]:
        client = async_client(settings, decode_responses=True)
        try:
            out = []
            for _ in range(3):
                out.append(await serve_one(
                    lambda calls: run_batch(client, calls),
                    _inputs(settings, [{"k": "zset", "key": K.popular}], entity=None,
                            anchor=None, context="popular"),
                    SHARED, rate=(K.rate_limit("read", "k"), 10.0, 2),
                    on_limit=lambda wait: limited.append(float(wait))))
            return out
        finally:
            await client.aclose()

    replies = asyncio.run(run())
    assert [reply[0] for reply in replies] == ["ok", "ok", "limited"]
    assert len(limited) == 1 and 0 < limited[0] <= 10.0


READ = "read-k-0123456789ab"
URLS = [
    "/v1/users/u1/recommendations", "/v1/users/u1/recommendations?n=3&exclude=a",
    "/v1/users/u1/recommendations?context=product&item_id=a",
    "/v1/users/u1/recommendations?context=cart", "/v1/users/anon/recommendations",
    "/v1/users/u1/recommendations?context=cart&explain=true",
    "/v1/users/u1/recommendations?category=c1&explain=true",
    "/v1/items/a/similar?user_id=u1&n=4", "/v1/popular?n=3", "/v1/trending?n=2",
]


async def _answers(settings: Settings, r: redis.Redis) -> list[Any]:
    import httpx

    from api.app import create_app

    app = create_app(settings.model_copy(update={"read_keys": READ}))
    out = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
            for url in URLS:
                resp = await c.get(url, headers={"X-API-Key": READ})
                body = resp.json()
                body.pop("recommendation_id", None)
                for source in body.get("trace", {}).get("sources", []):
                    # an age is the time since its input: whether there is one
                    source["age_s"] = source["age_s"] is not None
                out.append((resp.status_code, body))
            # on one Redis a home list is one script call
            r.config_resetstat()
            assert (await c.get(URLS[0], headers={"X-API-Key": READ})).status_code == 200
            stats = r.info("commandstats")
    return [out, stats]


async def test_the_app_serves_alike_both_ways_and_in_one_call_on_one_redis(
        settings: Settings, r: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    r.zadd(K.popular, {"p1": 5, "p2": 4, "p3": 3, "a": 2, "b": 1})
    r.zadd(K.trending, {"p2": 5, "p3": 1})
    r.set(K.user_recs("u1"), orjson.dumps({"v": "v1", "items": [["a", 1], ["b", 0.5],
                                                                  ["c", 0.2]]}))
    r.set(K.user_recent("anon"), orjson.dumps(["a"]))
    r.zadd(K.item_cooc("a"), {"c": 2, "p3": 1})
    r.set(K.item_similar("a"), orjson.dumps({"v": "v1", "items": [["c", 1], ["b", 0.5]]}))
    for item, cat in (("a", "c1"), ("b", "c1.x"), ("c", "c2"), ("p1", "c1")):
        r.hset(K.item_meta(item), mapping={"name": item.upper(), "price": "2.5",
                                           "category": cat, "in_stock": "1"})
    r.zadd(K.user_cart("u1"), {"b": 1.0})
    # complements of the cart: another shopper who carted b, and their basket
    r.zadd(K.item_carters("b"), {"shopper-é": 2.0})
    r.zadd(K.user_basket("shopper-é"), {"b": 1.0, "p2": 2.0, "c": 3.0})
    # a consumable u1 bought before, bought again by others (buy-again's counts)
    r.zadd(K.user_bought("u1"), {"p3": 1.0})
    r.hset(K.item_stats("p3"), "purchase", 10)
    r.sadd(K.item_buyers("p3"), "x1", "x2")
    r.pfadd(K.item_buyers_hll("p3"), "x1", "x2")
    one, stats = await _answers(settings, r)
    # (commandstats also count the commands the script runs)
    assert stats["cmdstat_evalsha"]["calls"] == 1
    import api.reader

    async def gathered_way(batch: Any, inputs: ServeInputs, shared: list[str], *,
                           rate: Any, on_limit: Any) -> list[Any]:
        return await serve_list(batch, inputs, shared, on_limit=on_limit)

    monkeypatch.setattr(api.reader, "serve_one", gathered_way)
    gathered, stats = await _answers(settings, r)
    assert stats["cmdstat_evalsha"]["calls"] >= 2  # the entity's read, then SERVE
    for url, a, b in zip(URLS, one, gathered, strict=True):
        assert a == b, url
    assert [status for status, _ in one] == [200] * len(URLS)
