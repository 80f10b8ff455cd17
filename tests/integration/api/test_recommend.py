"""Recommendation endpoints reading lists written into a real Redis (layout of
``core.redis_keys``), including the fallback when Redis goes away."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
from fastapi import FastAPI

from api.app import create_app
from core.net import free_port
from core.redis_keys import RedisKeys
from core.settings import Settings
from stream.redis_writer import dumps_list
from streamrec.stack.servers import start_redis
from tests.polling import wait_for_async

pytestmark = pytest.mark.integration

K = RedisKeys()


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    """The app inside its lifespan (Kafka is not needed for reads)."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield client, app


@pytest.fixture
def r(settings: Settings) -> Iterator[redis.Redis]:
    """A client of the test's (empty) Redis, to write what the worker would."""
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    yield client
    client.close()


def scored(*pairs: tuple[str, float], version: str = "v7") -> bytes:
    return orjson.dumps({"v": version, "ts": time.time(), "items": [list(p) for p in pairs]})


async def get(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    resp = await client.get(url)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    context, origin, rand = body["recommendation_id"].split(".")
    assert context == body["context"] and len(rand) == 24
    assert origin == (body["items"][0]["reason"] if body["items"] else origin)
    ids = [i["item_id"] for i in body["items"]]
    assert len(ids) == len(set(ids)), "duplicates"
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True), "not descending"
    return body


def ids_reasons(body: dict[str, Any]) -> list[tuple[str, str]]:
    return [(i["item_id"], i["reason"]) for i in body["items"]]


@pytest.fixture
def catalog(r: redis.Redis) -> None:
    """A small world: a personal list for u1, stock and purchases, popular items."""
    r.set(K.model_current, "v7")
    r.set(K.user_recs("u1"), scored(("a", 0.9), ("b", 0.8), ("c", 0.7), ("d", 0.6),
                                    ("e", 0.5), ("f", 0.4), ("a", 0.3), ("g", -0.2)))
    r.hset(K.item_meta("b"), mapping={"name": "B", "in_stock": "0", "deleted": "0"})
    r.hset(K.item_meta("c"), mapping={"name": "C", "in_stock": "1", "deleted": "1"})
    r.hset(K.item_meta("f"), mapping={"name": "Fancy", "price": "12.5", "currency": "EUR",
                                      "category": "mugs", "in_stock": "1", "deleted": "0",
                                      "properties": "{}"})
    r.sadd(K.unavailable, "e")
    r.zadd(K.user_bought("u1"), {"a": 1.0})
    r.zadd(K.popular, {"f": 100, "p1": 50, "p2": 40, "b": 30, "p3": 20, "e": 10})


async def test_personalized_list_is_filtered_and_topped_up(settings: Settings,
                                                           catalog: None) -> None:
    async with running(settings) as (client, _):
        body = await get(client, "/v1/users/u1/recommendations?n=3&exclude=d")
        assert body["source"] == "personalized" and body["model_version"] == "v7"
        assert ids_reasons(body) == [("f", "personalized"), ("g", "personalized"),
                                     ("p1", "popular")]
        fancy = body["items"][0]
        assert (fancy["name"], fancy["price"], fancy["currency"], fancy["in_stock"]) == (
            "Fancy", 12.5, "EUR", True)
        body = await get(client, "/v1/users/u1/recommendations?n=100&exclude=d,zz&exclude=g")
        assert ids_reasons(body) == [("f", "personalized"), ("p1", "popular"),
                                     ("p2", "popular"), ("p3", "popular")]
        # default n, no exclusions: d comes back
        body = await get(client, "/v1/users/u1/recommendations")
        assert [i["item_id"] for i in body["items"]] == ["d", "f", "g", "p1", "p2", "p3"]


async def test_unknown_user_gets_popular(settings: Settings, catalog: None) -> None:
    async with running(settings) as (client, _):
        body = await get(client, "/v1/users/nobody/recommendations?n=2")
        assert body["source"] == "popular"
        assert ids_reasons(body) == [("f", "popular"), ("p1", "popular")]
        body = await get(client, "/v1/users/anon-%C3%BC%20x/recommendations?context=home")
        assert body["source"] == "popular"


async def test_empty_redis_gives_empty_lists(settings: Settings) -> None:
    async with running(settings) as (client, _):
        for url in ("/v1/users/u/recommendations", "/v1/items/i/similar", "/v1/popular"):
            body = await get(client, url)
            assert body["items"] == [] and body["source"] == "popular"
            assert body["model_version"] == "none"
        body = await get(client, "/v1/trending")
        assert body["items"] == [] and body["source"] == "trending"


async def test_session_fallback_merges_cooccurrence(settings: Settings, r: redis.Redis,
                                                    catalog: None) -> None:
    r.set(K.user_recent("anon-2"), orjson.dumps(["x", "y", "x"]))
    r.zadd(K.item_cooc("x"), {"s1": 3, "s2": 1})
    r.zadd(K.item_cooc("y"), {"s2": 3, "s3": 1, "b": 9})
    async with running(settings) as (client, _):
        body = await get(client, "/v1/users/anon-2/recommendations?n=5")
        assert body["source"] == "session"
        assert ids_reasons(body) == [("s2", "session"), ("s1", "session"), ("s3", "session"),
                                     ("f", "popular"), ("p1", "popular")]


async def test_product_context_puts_similar_first(settings: Settings, r: redis.Redis,
                                                  catalog: None) -> None:
    r.set(K.item_similar("sku"), scored(("m1", 0.99), ("sku", 0.9), ("a", 0.8)))
    r.zadd(K.item_cooc("sku"), {"c1": 7, "m1": 3})
    async with running(settings) as (client, _):
        body = await get(client, "/v1/users/u1/recommendations?n=4&context=product&item_id=sku")
        assert body["source"] == "similar"
        assert ids_reasons(body) == [("m1", "similar"), ("c1", "similar"), ("d", "personalized"),
                                     ("f", "personalized")]
        body = await get(client, "/v1/users/u1/recommendations?n=1&context=home&item_id=sku")
        assert ids_reasons(body) == [("d", "personalized")]


async def test_similar_items(settings: Settings, r: redis.Redis, catalog: None) -> None:
    r.set(K.item_similar("sku"), scored(("m1", 0.99), ("sku", 0.9), ("b", 0.85), ("m2", 0.1)))
    r.zadd(K.item_cooc("sku"), {"c1": 7, "m1": 3, "c2": 1})
    r.zadd(K.user_bought("u3"), {"m2": 1.0})
    async with running(settings) as (client, _):
        body = await get(client, "/v1/items/sku/similar?n=5")
        assert body["source"] == "similar"
        assert ids_reasons(body) == [("m1", "similar"), ("m2", "similar"), ("c1", "similar"),
                                     ("c2", "similar"), ("f", "popular")]
        body = await get(client, "/v1/items/sku/similar?n=3&user_id=u3")
        assert [i["item_id"] for i in body["items"]] == ["m1", "c1", "c2"]
        body = await get(client, "/v1/items/unknown-item/similar?n=2")
        assert body["source"] == "popular"
        assert [i["item_id"] for i in body["items"]] == ["f", "p1"]
        body = await get(client, "/v1/items/f/similar?n=2")  # never the item itself
        assert [i["item_id"] for i in body["items"]] == ["p1", "p2"]


async def test_popular_and_trending(settings: Settings, r: redis.Redis, catalog: None) -> None:
    half_life = settings.trending_half_life_s
    r.zadd(K.trending, {"t1": 100.0, "t2": 50.0, "b": 80.0})
    r.set(K.trending_epoch, str(time.time() - half_life))
    async with running(settings) as (client, _):
        body = await get(client, "/v1/popular?n=3")
        assert body["source"] == "popular"
        assert [(i["item_id"], i["score"]) for i in body["items"]] == [
            ("f", 100.0), ("p1", 50.0), ("p2", 40.0)]
        body = await get(client, "/v1/popular?n=100&exclude=f")
        assert [i["item_id"] for i in body["items"]] == ["p1", "p2", "p3"]
        body = await get(client, "/v1/trending")
        assert body["source"] == "trending"
        got = [(i["item_id"], i["score"]) for i in body["items"]]
        assert [g[0] for g in got] == ["t1", "t2"]
        assert got[0][1] == pytest.approx(50.0, rel=1e-3)
        assert got[1][1] == pytest.approx(25.0, rel=1e-3)


async def test_require_catalog_drops_unknown_items(settings: Settings, catalog: None) -> None:
    strict = settings.model_copy(update={"require_catalog": True})
    async with running(strict) as (client, _):
        body = await get(client, "/v1/popular?n=10")
        assert [i["item_id"] for i in body["items"]] == ["f"]


async def test_refills_past_many_unavailable_items(settings: Settings, r: redis.Redis) -> None:
    r.zadd(K.popular, {f"i{k:03d}": 1000 - k for k in range(80)})
    r.sadd(K.unavailable, *[f"i{k:03d}" for k in range(50)])
    async with running(settings) as (client, _):
        body = await get(client, "/v1/popular?n=5")
        assert [i["item_id"] for i in body["items"]] == [f"i{k:03d}" for k in range(50, 55)]
        body = await get(client, "/v1/users/u/recommendations?n=5")
        assert [i["item_id"] for i in body["items"]] == [f"i{k:03d}" for k in range(50, 55)]


async def test_small_lists_refill_past_hundreds_of_sold_out_items(settings: Settings,
                                                                    r: redis.Redis) -> None:
    """``n`` items whenever enough are in stock, at every ``n``: the candidates a list
    may examine used to shrink with ``n`` (230 at ``n=1``), so with the 300 most popular
    items sold out ``/v1/popular?n=1`` was empty while ``n=5`` was full."""
    r.zadd(K.popular, {f"i{k:03d}": 1000 - k for k in range(400)})
    r.zadd(K.trending, {f"i{k:03d}": 1000 - k for k in range(400)})
    r.sadd(K.unavailable, *[f"i{k:03d}" for k in range(300)])
    r.set(K.user_recs("u1"), scored(*((f"i{k:03d}", 1 - k / 1000) for k in range(400))))
    async with running(settings) as (client, _):
        for n in (1, 2, 3):
            for url in (f"/v1/popular?n={n}", f"/v1/trending?n={n}",
                        f"/v1/users/u1/recommendations?n={n}",
                        f"/v1/users/new/recommendations?n={n}", f"/v1/items/x/similar?n={n}"):
                body = await get(client, url)
                assert [i["item_id"] for i in body["items"]] == [
                    f"i{k:03d}" for k in range(300, 300 + n)], url


async def test_prepared_lists_in_any_shape_are_served_alike(settings: Settings,
                                                           r: redis.Redis) -> None:
    """The serve script reads the worker's list text lazily; every other valid shape
    (escaped ids, whitespace, unsorted, bare lists, dict entries, a long list read past
    its first page) must give the same list as a full decode would."""
    odd = 'q"uote\\back'
    best = [(f"p{k:03d}", round(1.0 - k / 200, 4)) for k in range(120)]
    best[3] = (odd, best[3][1])
    r.sadd(K.unavailable, *[f"p{k:03d}" for k in range(0, 90, 2)])
    shuffled = best[::-1]
    shapes: dict[str, bytes] = {
        "worker": scored(*best),
        "spaced": orjson.dumps({"v": "v7", "items": [list(p) for p in best]},
                               option=orjson.OPT_INDENT_2),
        "unsorted": scored(*shuffled),
        "last-first": scored(*best[1:], best[0]),
        "bare": orjson.dumps([list(p) for p in best]),
        "dicts": orjson.dumps({"items": [{"item_id": i, "score": s} for i, s in best]}),
        "invalid-entries": orjson.dumps({"v": "v7", "items": [
            ["", 5.0], [best[0][0], None], *[list(p) for p in best], ["x" * 300, 0.9]]}),
    }
    expected: dict[int, list[tuple[str, float]]] = {}
    async with running(settings) as (client, _):
        for name, raw in shapes.items():
            r.set(K.user_recs(f"s-{name}"), raw)
            for n in (3, 40):
                body = await get(client, f"/v1/users/s-{name}/recommendations?n={n}")
                got = [(i["item_id"], i["score"]) for i in body["items"]]
                assert [i["reason"] for i in body["items"]] == ["personalized"] * n, name
                expected.setdefault(n, got)
                assert got == expected[n], name
    ids = [i for i, _ in expected[40]]
    assert ids[:2] == ["p001", odd] and ids[-1] == "p079"


async def test_blended_lists_show_their_stored_reasons(settings: Settings,
                                                       r: redis.Redis) -> None:
    """The worker's blended lists carry each item's source as a third element: the API
    shows it as the item's ``reason`` (unknown names fall back to the link's), scores the
    list exactly like the plain ``[id, score]`` form, whether read lazily or decoded
    whole (an escaped id), and names the list's origin after its first item."""
    ids = [f"b{k:02d}" for k in range(30)]
    scores = [1.0 - k / 50 for k in range(30)]
    why = ["similar", "personalized", "session", "no-such-reason"] + ["popular"] * 26
    r.set(K.user_recs("plain"), dumps_list("v7", ids, scores))
    r.set(K.user_recs("blend"), dumps_list("v7", ids, scores, reasons=why))
    r.set(K.user_recs("escaped"), dumps_list("v7", ['q"b'] + ids[1:], scores, reasons=why))
    async with running(settings) as (client, _):
        plain = await get(client, "/v1/users/plain/recommendations?n=5")
        blend = await get(client, "/v1/users/blend/recommendations?n=5")
        escaped = await get(client, "/v1/users/escaped/recommendations?n=5")
    assert ids_reasons(blend) == [("b00", "similar"), ("b01", "personalized"),
                                  ("b02", "session"), ("b03", "personalized"),
                                  ("b04", "popular")]
    assert [i["reason"] for i in escaped["items"]] == [i["reason"] for i in blend["items"]]
    assert ([i["score"] for i in plain["items"]] == [i["score"] for i in blend["items"]]
            == [i["score"] for i in escaped["items"]])
    assert {i["reason"] for i in plain["items"]} == {"personalized"}
    assert blend["recommendation_id"].split(".")[1] == "similar"


async def test_catalog_prices_in_any_notation(settings: Settings, r: redis.Redis) -> None:
    prices = {"p-plain": ("9.99", 9.99), "p-spaced": (" 12.5 ", 12.5), "p-hex": ("0x10", 16.0),
              "p-exp": ("1e2", 100.0), "p-negative": ("-1", None), "p-text": ("abc", None),
              "p-inf": ("inf", None)}
    r.zadd(K.popular, {item: 10 - k for k, item in enumerate(prices)})
    for item, (text, _) in prices.items():
        r.hset(K.item_meta(item), mapping={"name": item, "price": text})
    async with running(settings) as (client, _):
        body = await get(client, f"/v1/popular?n={len(prices)}")
    assert {i["item_id"]: i["price"] for i in body["items"]} == {
        item: value for item, (_, value) in prices.items()}


async def test_wrongly_typed_keys_do_not_break_serving(settings: Settings, r: redis.Redis,
                                                       catalog: None) -> None:
    r.set(K.user_recs("u9"), "not json")
    r.zadd(K.user_recent("u9"), {"x": 1})  # a zset where a JSON string belongs
    r.set(K.item_meta("p1"), "oops")  # a string where a hash belongs
    async with running(settings) as (client, _):
        body = await get(client, "/v1/users/u9/recommendations?n=2")
        assert [i["item_id"] for i in body["items"]] == ["f", "p1"]


async def test_redis_down_serves_the_fallback_snapshot(settings: Settings,
                                                       tmp_path: Path) -> None:
    own = start_redis(tmp_path)
    try:
        mine = settings.model_copy(update={"redis_url": f"redis://{own.address}/0"})
        client_r = redis.Redis.from_url(mine.redis_url)
        client_r.zadd(K.popular, {"p1": 5, "p2": 4, "p3": 3})
        client_r.sadd(K.unavailable, "p2")
        client_r.set(K.model_current, "v3")
        # a promotion of the popular context only: not at the head of the snapshot, which
        # every context serves (nor of the popular fallback: no "promoted" reason there)
        client_r.hset(K.promotions, "pop", orjson.dumps({
            "promotion_id": "pop", "updated_at": "2026-12-01T00:00:00Z",
            "item_ids": ["p3"], "share": 1.0, "contexts": ["popular"]}))
        client_r.close()
        async with running(mine) as (client, app):
            led = (await client.get("/v1/popular?n=1")).json()["items"]
            assert [(i["item_id"], i["reason"]) for i in led] == [("p3", "promoted")]
            snapshot = app.state.services.reader.snapshot
            await wait_for_async(lambda: snapshot.size, 2.5, "the fallback snapshot filled")
            assert snapshot.size == 2
            own.stop()
            for url in ("/v1/popular?n=5", "/v1/users/u1/recommendations?exclude=p1",
                        "/v1/items/p1/similar", "/v1/trending"):
                body = await get(client, url)
                assert body["source"] == "fallback"
                assert body["model_version"] == "v3"
                assert all(i["reason"] == "fallback" for i in body["items"])
            assert [i["item_id"] for i in (await get(client, "/v1/popular"))["items"]] == [
                "p1", "p3"]
            assert [i["item_id"] for i in
                    (await get(client, "/v1/items/p1/similar"))["items"]] == ["p3"]
            ready = await client.get("/readyz")
            assert ready.status_code == 503 and ready.json()["checks"]["redis"] is False
            text = (await client.get("/metrics")).text
            assert "streamrec_api_redis_fallbacks_total" in text
    finally:
        own.stop()


async def test_redis_never_reachable_serves_empty_fallback(settings: Settings) -> None:
    gone = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    async with running(gone) as (client, _):
        for url in ("/v1/popular", "/v1/users/u1/recommendations", "/v1/items/x/similar"):
            body = await get(client, url)
            assert body == {**body, "source": "fallback", "items": []}


async def test_ids_with_a_slash_are_served(settings: Settings, r: redis.Redis,
                                           catalog: None) -> None:
    """API.md allows any id of at most 256 characters: a percent-encoded ``/`` reaches the
    route as part of the id (the fast path leaves such paths to the routes)."""
    r.set(K.user_recs("shop/u1"), scored(("f", 0.9), ("p2", 0.8)))
    r.set(K.item_similar("sku/1"), scored(("m1", 0.99), ("p3", 0.5)))
    async with running(settings) as (client, _):
        body = await get(client, "/v1/users/shop%2Fu1/recommendations?n=2")
        assert body["source"] == "personalized"
        assert [i["item_id"] for i in body["items"]] == ["f", "p2"]
        body = await get(client, "/v1/items/sku%2F1/similar?n=2")
        assert body["source"] == "similar"
        assert [i["item_id"] for i in body["items"]] == ["m1", "p3"]
