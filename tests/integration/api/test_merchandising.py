"""Filters, the category cap, explain and the shopper-readable reasons on every
recommendation endpoint, against lists written into a real Redis (API.md
"Merchandising"), through the fast path and the routes alike."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
import redis

from core.limits import EXPLAIN_DROPPED_MAX, FILTER_SCAN_MAX
from core.merch_keys import COLUMNS_VERSION
from core.redis_client import sync_client
from core.redis_keys import RedisKeys
from core.settings import Settings
from stream.catalog_columns import category_prefixes, serve_row
from tests.integration.api.app_client import assert_error, running

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(either_redis: Settings) -> Settings:
    """On one Redis, then on a Redis Cluster (same keys and scripts)."""
    return either_redis

K = RedisKeys()


@pytest.fixture(params=["columns", "item hashes"])
def r(settings: Settings, request: pytest.FixtureRequest) -> Iterator[redis.Redis]:
    """A client of the test's (empty) Redis, to write what the worker would: with the
    catalog columns marked complete (filters read pages of them, candidates' fields come
    from their serving rows), or without (each item's hash, as before the columns were
    filled)."""
    client = sync_client(settings, decode_responses=True)
    if request.param == "columns":
        client.set(K.columns_ready, COLUMNS_VERSION)
    yield client
    client.close()


def scored(*ids: str, version: str = "v7", ts: float | None = None) -> bytes:
    """A prepared list of ``ids`` best first, as the worker writes it."""
    return orjson.dumps({"v": version, "ts": ts or time.time(),
                         "items": [[i, round(1 - n / 1000, 6)] for n, i in enumerate(ids)]})


def item(r: redis.Redis, item_id: str, category: str | None = None, price: float | None = None,
         in_stock: bool = True, name: str | None = None) -> None:
    """A catalog entry as the worker mirrors it."""
    mapping = {"in_stock": "1" if in_stock else "0", "deleted": "0",
               "name": name or item_id.upper()}
    if category is not None:
        mapping["category"] = category
    if price is not None:
        mapping["price"] = repr(price)
    r.hset(K.item_meta(item_id), mapping=mapping)
    if category is not None:
        r.hset(K.item_categories, item_id, category)
        for prefix in category_prefixes(category):
            r.sadd(K.category_items(prefix), item_id)
    if price is not None:
        r.hset(K.item_prices, item_id, repr(price))
        r.zadd(K.item_price_index, {item_id: price})
    if not in_stock:
        r.sadd(K.unavailable, item_id)
    r.hset(K.item_rows, item_id, serve_row(
        in_stock=in_stock, deleted=False, price=mapping.get("price", ""),
        currency=mapping.get("currency", ""), category=mapping.get("category", ""),
        name=mapping["name"]))


async def items_of(client: httpx.AsyncClient, url: str) -> list[dict[str, Any]]:
    resp = await client.get(url)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)
    assert len({i["item_id"] for i in body["items"]}) == len(body["items"])
    return list(body["items"])


def shop(r: redis.Redis, count: int = 60) -> None:
    """``count`` popular items in three categories (every third is a sub-category)."""
    cats = ["electronics", "electronics.audio", "books"]
    r.zadd(K.popular, {f"p{i}": 1000 - i for i in range(count)})
    for i in range(count):
        item(r, f"p{i}", category=cats[i % 3], price=float(i))


async def test_category_filter_matches_sub_categories_only_at_a_dot(
        settings: Settings, r: redis.Redis) -> None:
    shop(r)
    r.zadd(K.popular, {"x1": 2000, "x2": 1999, "nocat": 1998})
    item(r, "x1", category="electronicsx", price=1.0)
    item(r, "x2", category="Electronics", price=1.0)
    item(r, "nocat", price=1.0)
    async with running(settings, wait_ready=False) as client:
        got = await items_of(client, "/v1/popular?n=10&category=electronics")
        assert len(got) == 10
        assert {i["category"] for i in got} == {"electronics", "electronics.audio"}
        got = await items_of(client, "/v1/popular?n=10&category=electronics.audio,books")
        assert len(got) == 10 and {i["category"] for i in got} == {"electronics.audio", "books"}
        got = await items_of(client, "/v1/popular?n=10&category=%20books%20&category=x")
        assert {i["category"] for i in got} == {"books"}


async def test_a_filtered_list_is_n_long_reading_deep_into_the_last_link(
        settings: Settings, r: redis.Redis) -> None:
    # 800 popular items; the 10 books are at the very end: the filter reads past them all.
    r.zadd(K.popular, {f"p{i}": 1000 - i for i in range(800)})
    for i in range(800):
        item(r, f"p{i}", category="books" if i >= 790 else "toys", price=5.0)
    async with running(settings, wait_ready=False) as client:
        got = await items_of(client, "/v1/popular?n=10&category=books")
        assert [i["item_id"] for i in got] == [f"p{i}" for i in range(790, 800)]
        got = await items_of(client, "/v1/trending?n=5&category=books")
        assert got == []  # nothing trends


async def test_filters_fall_back_through_the_chain_inside_the_filter(
        settings: Settings, r: redis.Redis) -> None:
    shop(r)
    r.set(K.user_recs("u1"), scored("a", "b", "c", "d"))
    item(r, "a", category="books", price=3.0)
    item(r, "b", category="toys", price=3.0)
    item(r, "c", category="books", price=30.0)
    async with running(settings, wait_ready=False) as client:
        got = await items_of(client, "/v1/users/u1/recommendations?n=6&category=books"
                                     "&price_max=20")
        ids = [i["item_id"] for i in got]
        assert ids[0] == "a" and got[0]["reason"] == "personalized"
        assert len(ids) == 6
        assert all(i["category"] == "books" and i["price"] <= 20 for i in got)
        assert all(i["reason"] == "popular" for i in got[1:])


async def test_price_bounds_are_inclusive_and_items_without_a_price_never_pass(
        settings: Settings, r: redis.Redis) -> None:
    r.zadd(K.popular, {"cheap": 5, "edge_lo": 4, "mid": 3, "edge_hi": 2, "dear": 1, "free": 0.5,
                       "unpriced": 6, "unknown": 7})
    for name, price in {"cheap": 1.0, "edge_lo": 10.0, "mid": 15.5, "edge_hi": 20.0,
                        "dear": 99.0, "free": 0.0}.items():
        item(r, name, category="c", price=price)
    item(r, "unpriced", category="c")
    async with running(settings, wait_ready=False) as client:
        ids = [i["item_id"] for i in await items_of(client, "/v1/popular?price_min=10&"
                                                             "price_max=20")]
        assert ids == ["edge_lo", "mid", "edge_hi"]
        ids = [i["item_id"] for i in await items_of(client, "/v1/popular?price_max=0")]
        assert ids == ["free"]
        ids = [i["item_id"] for i in await items_of(client, "/v1/popular?price_min=50")]
        assert ids == ["dear"]


async def test_a_price_bound_above_every_price_is_valid(settings: Settings,
                                                        r: redis.Redis) -> None:
    """API.md calls only a negative price invalid: a bound above any catalog price is a
    filter (everything priced passes price_max, nothing passes price_min)."""
    r.zadd(K.popular, {"cheap": 3, "dear": 2, "unpriced": 1})
    item(r, "cheap", category="c", price=1.0)
    item(r, "dear", category="c", price=1e12)  # the dearest price the catalog takes
    item(r, "unpriced", category="c")
    r.set(K.user_recs("u1"), scored("dear", "unpriced", "cheap"))
    for fast in (True, False):
        async with running(settings.model_copy(update={"api_fast_path": fast}),
                           wait_ready=False) as client:
            for path in ("/v1/popular?", "/v1/users/u1/recommendations?"):
                for bound in ("1e13", "10000000000000", "1e300"):
                    got = {i["item_id"] for i in await items_of(
                        client, f"{path}price_max={bound}")}
                    assert got == {"cheap", "dear"}, (fast, path, bound)
                    got = {i["item_id"] for i in await items_of(
                        client, f"{path}price_min=1&price_max={bound}&explain=true")}
                    assert got == {"cheap", "dear"}, (fast, path, bound)
                    assert await items_of(client, f"{path}price_min={bound}") == []


async def test_max_per_category_caps_every_endpoint(settings: Settings, r: redis.Redis) -> None:
    shop(r)
    r.zadd(K.trending, {f"p{i}": 100 - i for i in range(30)})
    r.set(K.user_recs("u1"), scored(*(f"p{i}" for i in range(0, 30, 3))))  # electronics
    r.set(K.item_similar("p0"), scored(*(f"p{i}" for i in range(1, 40))))
    urls = ["/v1/popular?n=6", "/v1/trending?n=6", "/v1/users/u1/recommendations?n=6",
            "/v1/items/p0/similar?n=6", "/v1/users/u1/recommendations?n=6&context=product"
                                        "&item_id=p0"]
    async with running(settings, wait_ready=False) as client:
        for url in urls:
            got = await items_of(client, url + "&max_per_category=2")
            cats = [i["category"] for i in got]
            assert len(got) == 6 and all(cats.count(c) == 2 for c in set(cats)), (url, cats)
            one = await items_of(client, url + "&max_per_category=1")
            assert len(one) == 3  # three categories
        personal = await items_of(client, "/v1/users/u1/recommendations?n=6&max_per_category=2")
        assert [i["reason"] for i in personal[:2]] == ["personalized"] * 2


async def test_the_deployment_default_cap_applies_unless_the_request_sets_one(
        settings: Settings, r: redis.Redis) -> None:
    shop(r)
    async with running(settings.model_copy(update={"max_per_category": 1}),
                       wait_ready=False) as client:
        assert len(await items_of(client, "/v1/popular?n=10")) == 3
        assert len(await items_of(client, "/v1/popular?n=10&max_per_category=4")) == 10
        assert len(await items_of(client, "/v1/popular?n=10&max_per_category=100")) == 10


async def test_a_cap_of_n_or_more_is_valid_and_caps_nothing(settings: Settings,
                                                              r: redis.Redis) -> None:
    """API.md calls only K < 1 invalid: a K above n (even above the largest n) is a cap
    that never binds, answered like no cap, on the fast path and the routes alike."""
    shop(r)
    r.zadd(K.trending, {f"p{i}": 100 - i for i in range(30)})
    r.set(K.user_recs("u1"), scored(*(f"p{i}" for i in range(0, 30, 3))))
    r.set(K.item_similar("p0"), scored(*(f"p{i}" for i in range(1, 40))))
    urls = ["/v1/popular?n=12", "/v1/trending?n=12", "/v1/users/u1/recommendations?n=12",
            "/v1/items/p0/similar?n=12"]
    for fast in (True, False):
        async with running(settings.model_copy(update={"api_fast_path": fast}),
                           wait_ready=False) as client:
            for url in urls:
                plain = [i["item_id"] for i in await items_of(client, url)]
                assert len(plain) == 12
                for k in ("12", "101", "1000", "99999999999999999999"):
                    got = [i["item_id"] for i in await items_of(
                        client, f"{url}&max_per_category={k}")]
                    assert got == plain, (fast, url, k)


@pytest.mark.parametrize("query", [
    "price_min=-1", "price_max=-0.01", "price_min=5&price_max=4", "price_min=nan",
    "price_max=inf", "price_min=abc", "price_max=1e400", "max_per_category=0",
    "max_per_category=-2", "max_per_category=two", "explain=maybe",
    "explain=", "category=", "category=%20,%20", "category=" + ",".join(f"c{i}" for i in range(21)),
    "category=" + "c" * 257,
])
@pytest.mark.parametrize("path", ["/v1/popular", "/v1/trending", "/v1/items/a/similar",
                                  "/v1/users/u1/recommendations"])
async def test_invalid_merchandising_values_are_422_on_every_endpoint(
        settings: Settings, path: str, query: str) -> None:
    for fast in (True, False):
        s = settings.model_copy(update={"api_fast_path": fast})
        async with running(s, wait_ready=False) as client:
            body = assert_error(await client.get(f"{path}?{query}"), 422, "validation_error")
            # the message names the parameter, not only "invalid"
            assert query.split("=")[0] in body["error"]["message"], body


async def test_fast_path_and_routes_answer_filtered_requests_alike(
        settings: Settings, r: redis.Redis) -> None:
    shop(r)
    r.set(K.user_recs("u1"), scored("p1", "p2", "p3", "p4", "p5"))
    urls = ["/v1/popular?category=books&n=4", "/v1/popular?price_min=3.5&price_max=12",
            "/v1/trending?category=books", "/v1/users/u1/recommendations?max_per_category=1",
            "/v1/users/u1/recommendations?category=electronics&explain=true&n=3",
            "/v1/items/p1/similar?price_min=0&max_per_category=1&explain=1",
            "/v1/popular?explain=false&price_min=1.5e1", "/v1/popular?explain=TRUE",
            "/v1/popular?category=a,b&category=books&price_max=+20"]
    answers: dict[bool, list[Any]] = {}
    for fast in (True, False):
        async with running(settings.model_copy(update={"api_fast_path": fast}),
                           wait_ready=False) as client:
            answers[fast] = []
            for url in urls:
                resp = await client.get(url)
                body = resp.json()
                body.pop("recommendation_id", None)
                for source in body.get("trace", {}).get("sources", []):
                    source.pop("age_s")
                answers[fast].append((resp.status_code, body))
    assert answers[True] == answers[False]
    assert all(status == 200 for status, _ in answers[True])


async def test_explain_traces_sources_and_every_kind_of_dropped_candidate(
        settings: Settings, r: redis.Redis) -> None:
    written = time.time() - 30
    r.set(K.user_recs("u1"), scored("gone", "sold_out", "bought", "carted", "skip", "cheap",
                                    "a1", "a2", "a3", "b1", version="v9", ts=written))
    r.zadd(K.popular, {"p": 1})
    for name in ("a1", "a2", "a3"):
        item(r, name, category="audio", price=50.0)
    item(r, "b1", category="books", price=50.0)
    item(r, "cheap", category="audio", price=1.0)
    item(r, "carted", category="audio", price=50.0)
    item(r, "sold_out", category="audio", price=50.0, in_stock=False)
    item(r, "p", category="books", price=50.0)
    r.hset(K.item_meta("gone"), mapping={"deleted": "1", "in_stock": "0"})
    r.sadd(K.unavailable, "gone")
    r.sadd(K.deleted, "gone")
    r.zadd(K.user_bought("u1"), {"bought": 1})
    r.zadd(K.user_cart("u1"), {"carted": time.time() - 20})  # scored by event time
    r.hset(K.stats, "counted_at", repr(time.time() - 5))  # the worker's last counted batch
    async with running(settings, wait_ready=False) as client:
        resp = await client.get("/v1/users/u1/recommendations?n=5&context=cart&exclude=skip&"
                                "price_min=10&max_per_category=2&explain=true")
        body = resp.json()
        assert [i["item_id"] for i in body["items"]] == ["a1", "a2", "b1", "p"]
        trace = body["trace"]
        why = {d["item_id"]: d["why"] for d in trace["dropped"]}
        assert why == {"gone": "deleted", "sold_out": "out_of_stock", "bought": "purchased",
                       "carted": "in_cart", "skip": "excluded", "cheap": "filtered",
                       "a3": "capped"}
        assert trace["dropped_total"] == 7
        names = [s["name"] for s in trace["sources"]]
        # the list is short: the newest catalog items were read too (none listed here)
        assert names == ["complements", "personalized", "session", "popular", "new_items"]
        assert trace["sources"][4]["size"] == 0
        complements = trace["sources"][0]  # as old as the newest cart item
        assert 19 <= complements["age_s"] < 120 and complements["model_version"] is None
        assert trace["sources"][2]["age_s"] is None  # the recent list carries no time
        personal = trace["sources"][1]
        assert personal["size"] == 10 and personal["model_version"] == "v9"
        assert 29 <= personal["age_s"] < 120
        popular = trace["sources"][3]
        assert popular["name"] == "popular" and popular["size"] == 1
        assert 5 <= popular["age_s"] < 60 and popular["model_version"] is None
        plain = (await client.get("/v1/users/u1/recommendations?n=5&context=cart")).json()
        assert "trace" not in plain
        assert [i["item_id"] for i in plain["items"]] == ["skip", "cheap", "a1", "a2", "a3"]


async def test_the_trace_lists_a_bounded_number_of_drops(settings: Settings,
                                                         r: redis.Redis) -> None:
    count = EXPLAIN_DROPPED_MAX + 30
    r.zadd(K.popular, {f"p{i}": count - i for i in range(count)})
    for i in range(count):
        item(r, f"p{i}", category="toys", price=1.0)
    async with running(settings, wait_ready=False) as client:
        body = (await client.get("/v1/popular?category=books&explain=true")).json()
        assert body["items"] == []
        assert len(body["trace"]["dropped"]) == EXPLAIN_DROPPED_MAX
        assert body["trace"]["dropped_total"] == count
        assert {d["why"] for d in body["trace"]["dropped"]} == {"filtered"}
    assert count < FILTER_SCAN_MAX


async def test_every_reason_has_a_text_a_shopper_can_read(settings: Settings,
                                                           r: redis.Redis) -> None:
    item(r, "espresso", category="coffee", name="Espresso beans")
    item(r, "frother", category="coffee", name="Milk frother")
    item(r, "mug", category="kitchen.cups", name="Mug")
    item(r, "grinder", category="coffee", name="Grinder")
    r.set(K.user_recent("u1"), orjson.dumps(["espresso"]))
    r.zadd(K.item_cooc("espresso"), {"grinder": 3})
    r.zadd(K.trending, {"mug": 5})
    r.zadd(K.popular, {"mug": 5, "frother": 4})
    r.zadd(K.user_cart("u2"), {"frother": 1})
    r.zadd(K.item_carters("frother"), {"other": 1})
    r.zadd(K.user_basket("other"), {"frother": 1, "mug": 2})
    r.set(K.item_similar("espresso"), scored("grinder"))
    async with running(settings, wait_ready=False) as client:
        home = await items_of(client, "/v1/users/u1/recommendations?n=3")
        assert home[0]["reason"] == "session"
        assert home[0]["reason_text"] == "because you viewed Espresso beans"
        assert home[1]["reason_text"] == "popular in cups"
        cart = await items_of(client, "/v1/users/u2/recommendations?context=cart&n=1")
        assert cart[0]["reason"] == "complement"
        assert cart[0]["reason_text"] == "bought together with Milk frother"
        similar = await items_of(client, "/v1/items/espresso/similar?n=1")
        assert similar[0]["reason_text"] == "similar to Espresso beans"
        product = await items_of(client, "/v1/users/u1/recommendations?context=product&"
                                         "item_id=espresso&n=1")
        assert product[0]["reason_text"] == "similar to Espresso beans"
        # an anchor without a name (not in the catalog, or deleted): no false "you viewed"
        r.set(K.item_similar("bare"), scored("grinder"))
        for url in ("/v1/items/bare/similar?n=1",
                    "/v1/users/u1/recommendations?context=product&item_id=bare&n=1"):
            unnamed = await items_of(client, url)
            assert unnamed[0]["reason"] == "similar"
            assert unnamed[0]["reason_text"] == "similar to this item", url
        trending = await items_of(client, "/v1/trending?n=1")
        assert trending[0]["reason_text"] == "trending in cups"
