"""A price filter finds its band wherever it ranks (API.md "Merchandising": a filtered
list is ``n`` long whenever enough items pass). A scan of popular or trending stops after
``FILTER_SCAN_MAX`` candidates; cheap items ranked below them are then read from the
worker's price index (``{s}items:by_price``), on every endpoint, on the fast path and the
routes, with and without a trace, on one Redis and on a Redis Cluster."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

from core.limits import FILTER_SCAN_MAX
from core.merch_keys import COLUMNS_VERSION
from core.redis_client import sync_client
from core.settings import Settings
from stream.catalog_columns import serve_row
from tests.integration.api.app_client import running
from tests.integration.api.test_merchandising import K, item, items_of

pytestmark = pytest.mark.integration

DEEP = FILTER_SCAN_MAX + 1000  # dear items ahead of the cheap ones: past the budget
CHEAP = [f"c{j}" for j in range(10)]
PATHS = ["/v1/popular", "/v1/trending", "/v1/users/u1/recommendations",
         "/v1/items/p0/similar"]


@pytest.fixture
def settings(either_redis: Settings) -> Settings:
    """On one Redis, then on a Redis Cluster (the index lives in the shared slot)."""
    return either_redis


@pytest.fixture
def r(settings: Settings) -> Iterator[redis.Redis]:
    """The test's Redis with ``DEEP`` dear items and the 10 cheap ones ranked last in
    popular and trending (c1 out of stock, c2 deleted), the columns complete as the
    worker leaves them."""
    client = sync_client(settings, decode_responses=True)
    ranked = {i: 100_000.0 - at for at, i in enumerate([*(f"p{i}" for i in range(DEEP)),
                                                         *CHEAP])}
    client.zadd(K.popular, ranked)
    client.zadd(K.trending, ranked)
    pipe = client.pipeline(transaction=False)
    for i in range(DEEP):
        item(pipe, f"p{i}", category="toys", price=50.0 + i % 7)
    for j, cheap in enumerate(CHEAP):
        item(pipe, cheap, category="books" if j % 2 else "games", price=1.0 + j / 10,
             in_stock=j != 1)
    pipe.execute()
    # c2 deleted, as the worker leaves it: out of the columns, unavailable
    client.hset(K.item_meta("c2"), "deleted", "1")
    client.hset(K.item_rows, "c2", serve_row(in_stock=False, deleted=True))
    client.sadd(K.deleted, "c2")
    client.sadd(K.unavailable, "c2")
    client.hdel(K.item_prices, "c2")
    client.zrem(K.item_price_index, "c2")
    client.set(K.columns_ready, COLUMNS_VERSION)
    yield client
    client.close()


def ids(items: list[dict[str, Any]]) -> list[str]:
    return [i["item_id"] for i in items]


@pytest.mark.parametrize("query, want", [
    ("n=5&price_max=2", ["c0", "c3", "c4", "c5", "c6"]),
    ("n=5&price_min=1.3&price_max=1.5", ["c3", "c4", "c5"]),  # only three qualify
    ("n=5&price_max=2&category=books", ["c3", "c5", "c7", "c9"]),
    ("n=3&price_max=1.95&max_per_category=1", ["c0", "c3"]),
    ("n=10&price_max=1.1&exclude=c0", []),  # c1 out of stock, c2 deleted
])
async def test_a_cheap_band_below_the_scan_budget_fills_the_list(
        settings: Settings, r: redis.Redis, query: str, want: list[str]) -> None:
    answers = []
    for fast in (True, False):
        async with running(settings.model_copy(update={"api_fast_path": fast}),
                           wait_ready=False) as client:
            for path in PATHS:
                plain = await items_of(client, f"{path}?{query}")
                assert ids(plain) == want, (fast, path)
                traced = (await client.get(f"{path}?{query}&explain=true")).json()
                assert traced["items"] == plain, (fast, path)  # explain changes nothing
                answers.append(plain)
    assert all(a == answers[0] for a in answers[::len(PATHS)])
    # a cheap item's score still says where it ranks: below every dear one
    assert all(i["reason"] == "popular" for i in answers[0])


async def test_an_item_whose_price_changed_leaves_its_old_band(
        settings: Settings, r: redis.Redis) -> None:
    item(r, "c0", category="games", price=60.0)  # the worker moves it in the index
    async with running(settings, wait_ready=False) as client:
        got = await items_of(client, "/v1/popular?n=3&price_max=2")
    assert ids(got) == ["c3", "c4", "c5"]


async def test_the_band_waits_for_a_complete_index(settings: Settings, r: redis.Redis) -> None:
    """Columns marked complete by an older worker (no price index yet): the filter
    answers what its scan found rather than a band read from a half-filled index."""
    r.set(K.columns_ready, "2")
    r.delete(K.item_price_index)
    r.zadd(K.item_price_index, {"c9": 1.9})  # a fill under way
    async with running(settings, wait_ready=False) as client:
        got = await items_of(client, "/v1/popular?n=5&price_max=2")
    assert got == []
