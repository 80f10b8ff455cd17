"""``explain=true`` adds a trace and changes nothing else (API.md "Merchandising"): the
same items with the same scores, even for a category deep in a long sorted set, which a
filter without a trace reads from the catalog columns' category item sets."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from core.limits import EXPLAIN_DROPPED_MAX, FILTER_SCAN_MAX
from core.redis_client import sync_client
from core.settings import Settings
from tests.integration.api.app_client import running
from tests.integration.api.test_merchandising import K, item

pytestmark = pytest.mark.integration

DEEP = FILTER_SCAN_MAX + 500  # toys ahead of the books: past any scan's budget


@pytest.fixture
def r(settings: Settings) -> Iterator[redis.Redis]:
    """The test's Redis with the catalog columns marked complete, as the worker leaves it."""
    client = sync_client(settings, decode_responses=True)
    client.set(K.columns_ready, "1")
    yield client
    client.close()


def deep_shop(r: redis.Redis) -> None:
    """``DEEP`` popular toys, then six books and six games (books.rare: a sub-category)."""
    tail = [("books", 5.0), ("games", 50.0), ("books.rare", 15.0)] * 4
    r.zadd(K.popular, {f"p{i}": 10_000 - i for i in range(DEEP + len(tail))})
    pipe = r.pipeline(transaction=False)
    for i in range(DEEP):
        item(pipe, f"p{i}", category="toys", price=1.0)
    for j, (category, price) in enumerate(tail):
        item(pipe, f"p{DEEP + j}", category=category, price=price)
    pipe.execute()


@pytest.mark.parametrize("query", [
    "category=books", "category=books,games", "category=books&price_max=10",
    "category=games&max_per_category=9",
])
@pytest.mark.parametrize("path", ["/v1/popular", "/v1/users/u1/recommendations"])
async def test_explain_changes_no_item_and_no_score(settings: Settings, r: redis.Redis,
                                                    path: str, query: str) -> None:
    deep_shop(r)
    async with running(settings, wait_ready=False) as client:
        plain = (await client.get(f"{path}?n=3&{query}")).json()
        traced = (await client.get(f"{path}?n=3&{query}&explain=true")).json()
    assert len(plain["items"]) == 3, plain  # enough items pass: n of them
    assert traced["items"] == plain["items"]
    assert {k: v for k, v in traced.items() if k not in ("trace", "recommendation_id")} == \
        {k: v for k, v in plain.items() if k != "recommendation_id"}
    # the toys a scan would have read are still reported as filtered, within the budget
    dropped = traced["trace"]["dropped"]
    assert len(dropped) == EXPLAIN_DROPPED_MAX
    assert {d["why"] for d in dropped} == {"filtered"}
    assert EXPLAIN_DROPPED_MAX < traced["trace"]["dropped_total"] <= FILTER_SCAN_MAX + 12
