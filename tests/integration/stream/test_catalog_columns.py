"""The catalog columns (stream.catalog_columns) follow the item hashes through catalog
writes, and are filled once for a Redis that held a catalog before they existed."""

from __future__ import annotations

from typing import Any

import pytest

from core.redis_client import async_client
from core.redis_keys import RedisKeys
from core.settings import Settings
from schemas import CatalogRecord
from stream.catalog_columns import ensure_columns
from stream.redis_writer import RedisWriter

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(either_redis: Settings) -> Settings:
    """On one Redis, then on a Redis Cluster (same keys and scripts)."""
    return either_redis

K = RedisKeys()


def rec(item: str, **fields: Any) -> CatalogRecord:
    return CatalogRecord(item_id=item, updated_at=1.0, **fields)


async def test_catalog_writes_keep_the_columns_with_the_item_hashes(settings: Any) -> None:
    client = async_client(settings, decode_responses=True)
    writer = RedisWriter(client, K, dedupe_ttl_s=60)
    await writer.apply_catalog([rec("a", category="shoes", price=9.5),
                                rec("b", category="bags"), rec("c", price=3.0)])
    assert await client.hgetall(K.item_categories) == {"a": "shoes", "b": "bags"}
    assert await client.hgetall(K.item_prices) == {"a": "9.5", "c": "3.0"}
    await writer.apply_catalog([rec("a", category="shoes.kids"), rec("b", deleted=True),
                                rec("c", category="toys", price=4.0, in_stock=False)])
    assert await client.hgetall(K.item_categories) == {"a": "shoes.kids", "c": "toys"}
    assert await client.hgetall(K.item_prices) == {"c": "4.0"}
    # one set per category and every category above it
    assert await client.smembers(K.category_items("shoes")) == {"a"}
    assert await client.smembers(K.category_items("shoes.kids")) == {"a"}
    assert not await client.exists(K.category_items("bags"))
    await writer.apply_catalog([rec("a", category="bags.red")])
    assert not await client.exists(K.category_items("shoes"), K.category_items("shoes.kids"))
    assert await client.smembers(K.category_items("bags")) == {"a"}
    await client.aclose()


async def test_columns_are_filled_once_from_the_item_hashes(settings: Any) -> None:
    client = async_client(settings, decode_responses=True)
    await client.hset(K.item_meta("old"), mapping={"category": "c", "price": "2.5",
                                                   "deleted": "0"})
    await client.hset(K.item_meta("plain"), mapping={"in_stock": "1"})
    await client.hset(K.item_meta("gone"), mapping={"category": "c", "deleted": "1"})
    assert await ensure_columns(client, K)
    assert await client.hgetall(K.item_categories) == {"old": "c"}
    assert await client.smembers(K.category_items("c")) == {"old"}
    assert await client.hgetall(K.item_prices) == {"old": "2.5"}
    assert await client.exists(K.columns_ready)
    assert not await ensure_columns(client, K)  # marked complete: nothing to do
    await client.aclose()
