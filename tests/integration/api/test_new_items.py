"""Catalog items no event has ranked yet are served (cold start for new items and new
shops): every chain ends with the newest catalog items, which the worker's catalog writer
keeps (``stream.catalog_columns``), under the same serving rules as every other
candidate, on one Redis and on a Redis Cluster, through the fast path and the routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis

from core.redis_client import async_client
from core.redis_keys import RedisKeys
from core.settings import Settings
from schemas import CatalogRecord
from stream.redis_writer import RedisWriter
from tests.integration.api.app_client import running

pytestmark = pytest.mark.integration

K = RedisKeys()
#: The items with events, most popular first.
POPULAR = ["b2", "b9", "b0"]


@pytest.fixture
def settings(either_redis: Settings) -> Settings:
    """On one Redis, then on a Redis Cluster (same keys and scripts)."""
    return either_redis



def rec(item: str, t: float, **fields: Any) -> CatalogRecord:
    return CatalogRecord(item_id=item, updated_at=t, name=item.upper(), **fields)


async def catalog(settings: Settings, records: list[CatalogRecord]) -> None:
    """The records applied as the worker applies them."""
    client = async_client(settings, decode_responses=True)
    try:
        await RedisWriter(client, K, dedupe_ttl_s=60).apply_catalog(records)
    finally:
        await client.aclose()


async def shop(settings: Settings, r: redis.Redis) -> None:
    """30 items listed one a second (s0..s9 shoes, b0..b19 bags, newest last), events on 3
    bags; s3 sold out, b5 deleted."""
    records = [rec(f"s{i}", 1000.0 + i, category="shoes", price=float(10 + i))
               for i in range(10)]
    records += [rec(f"b{i}", 2000.0 + i, category="bags.small" if i % 2 else "bags",
                    price=float(i)) for i in range(20)]
    await catalog(settings, records)
    await catalog(settings, [rec("s3", 3000.0, category="shoes", in_stock=False),
                             CatalogRecord(item_id="b5", deleted=True, updated_at=3001.0)])
    r.zadd(K.popular, {item: 30 - n for n, item in enumerate(POPULAR)})


#: Bags, newest first, without the popular ones and the deleted one.
NEW_BAGS = [f"b{i}" for i in range(19, -1, -1) if f"b{i}" not in POPULAR and i != 5]
NEW_SHOES = [f"s{i}" for i in range(9, -1, -1) if i != 3]


@pytest.fixture(params=[True, False], ids=["fast path", "routes"])
async def client(settings: Settings, request: pytest.FixtureRequest
                 ) -> AsyncIterator[httpx.AsyncClient]:
    async with running(settings.model_copy(update={"api_fast_path": request.param}),
                       wait_ready=False) as c:
        yield c


async def get(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    resp = await client.get(url)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True), body
    assert len({i["item_id"] for i in body["items"]}) == len(body["items"])
    return body


def ids(body: dict[str, Any]) -> list[str]:
    return [i["item_id"] for i in body["items"]]


async def test_popular_is_n_long_with_the_newest_items_after_the_ranked_ones(
        settings: Settings, r: redis.Redis, client: httpx.AsyncClient) -> None:
    await shop(settings, r)
    body = await get(client, "/v1/popular?n=10")
    assert ids(body) == POPULAR + NEW_BAGS[:7]
    assert body["source"] == "popular"
    new = body["items"][3:]
    assert all(i["score"] == 0 and i["reason"] == "new" for i in new)
    assert {i["reason_text"] for i in new} == {"new in bags", "new in small"}
    assert all(i["score"] > 0 and i["reason"] == "popular" for i in body["items"][:3])
    assert new[0]["name"] == "B19" and new[0]["price"] == 19.0
    # a category without events: its items in stock, newest first
    body = await get(client, "/v1/popular?n=10&category=shoes")
    assert ids(body) == NEW_SHOES and body["source"] == "popular"
    body = await get(client, "/v1/trending?n=4&category=shoes&price_max=17")
    assert ids(body) == ["s7", "s6", "s5", "s4"] and body["source"] == "popular"
    body = await get(client, "/v1/popular?n=6&max_per_category=2")
    cats = [i["category"] for i in body["items"]]
    assert all(cats.count(c) <= 2 for c in cats) and len(body["items"]) == 6


async def test_a_new_shop_without_events_serves_its_catalog(
        settings: Settings, r: redis.Redis, client: httpx.AsyncClient) -> None:
    await catalog(settings, [rec(f"n{i}", 500.0 + i, category="tea") for i in range(12)])
    newest = [f"n{i}" for i in range(11, 1, -1)]
    for url in ("/v1/popular", "/v1/trending", "/v1/users/nobody/recommendations",
                "/v1/items/n0/similar", "/v1/users/nobody/recommendations?context=cart"):
        body = await get(client, url)
        assert body["source"] == "popular", url
        assert ids(body) == newest, url
        assert body["items"][0]["reason_text"] == "new in tea"
    # nothing anywhere: the empty answer keeps its endpoint's source
    r.delete(K.new_items)
    assert (await get(client, "/v1/trending"))["source"] == "trending"


async def test_the_newest_items_pass_the_serving_rules(
        settings: Settings, r: redis.Redis, client: httpx.AsyncClient) -> None:
    await shop(settings, r)
    r.zadd(K.user_bought("u1"), {"b19": 1.0})
    r.zadd(K.user_cart("u1"), {"b18": 1.0})
    body = await get(client, "/v1/users/u1/recommendations?n=40&exclude=b17")
    got = ids(body)
    assert got[:3] == POPULAR and body["source"] == "popular"
    assert set(got) == set(POPULAR + NEW_BAGS + NEW_SHOES) - {"b19", "b17"}
    # popular keeps the band it had before the newest items' link (0, 1]; theirs is (-1, 0]
    scores = [i["score"] for i in body["items"]]
    assert all(0 < x <= 1 for x in scores[:3]) and all(-1 < x <= 0 for x in scores[3:])
    assert "s3" not in got and "b5" not in got  # sold out, deleted
    body = await get(client, "/v1/users/u1/recommendations?n=40&context=cart")
    assert "b18" not in ids(body) and "b19" not in ids(body)
    # re-listed after its deletion: new again (the newest)
    await catalog(settings, [rec("b5", 4000.0, category="bags")])
    assert ids(await get(client, "/v1/popular?n=4"))[3] == "b5"


async def test_explain_names_the_link_and_the_common_path_never_reads_it(
        settings: Settings, r: redis.Redis, client: httpx.AsyncClient) -> None:
    await shop(settings, r)
    body = await get(client, "/v1/popular?n=5&explain=true")
    names = {s["name"]: s for s in body["trace"]["sources"]}
    assert names["new_items"]["size"] == 29  # 30 listed, one deleted
    # popular fills the list: the newest items are not consulted
    body = await get(client, "/v1/popular?n=3&explain=true")
    assert [s["name"] for s in body["trace"]["sources"]] == ["popular"]
    body = await get(client, "/v1/popular?n=10&category=shoes&explain=true")
    assert {"item_id": "s3", "why": "out_of_stock"} in body["trace"]["dropped"]


async def test_fast_path_and_routes_serve_the_newest_items_alike(
        settings: Settings, r: redis.Redis) -> None:
    await shop(settings, r)
    r.zadd(K.user_bought("u1"), {"b19": 1.0})
    urls = ["/v1/popular?n=12", "/v1/trending?n=5&category=bags.small",
            "/v1/users/u1/recommendations?n=20&explain=true",
            "/v1/items/b2/similar?n=8&price_min=3", "/v1/popular?n=9&category=shoes,bags"]
    answers: dict[bool, list[Any]] = {}
    for fast in (True, False):
        async with running(settings.model_copy(update={"api_fast_path": fast}),
                           wait_ready=False) as c:
            answers[fast] = []
            for url in urls:
                body = await get(c, url)
                body.pop("recommendation_id")
                for source in body.get("trace", {}).get("sources", []):
                    source.pop("age_s")
                answers[fast].append(body)
    assert answers[True] == answers[False]
