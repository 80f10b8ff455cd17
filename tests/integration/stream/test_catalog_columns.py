"""The catalog columns and the newest items (stream.catalog_columns) follow the item
hashes through catalog writes, and are filled once for a Redis that held a catalog before
they existed."""

from __future__ import annotations

from typing import Any

import pytest

from core.redis_client import async_client, run_batch
from core.redis_keys import RedisKeys
from core.settings import Settings
from schemas import CatalogRecord
from stream.bounds import StateBounds
from stream.catalog_columns import COLUMNS_VERSION, Columns, ensure_columns, serve_row
from stream.redis_writer import RedisWriter

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(either_redis: Settings) -> Settings:
    """On one Redis, then on a Redis Cluster (same keys and scripts)."""
    return either_redis

K = RedisKeys()


def rec(item: str, t: float = 1.0, **fields: Any) -> CatalogRecord:
    return CatalogRecord(item_id=item, updated_at=t, **fields)


async def test_catalog_writes_keep_the_columns_with_the_item_hashes(settings: Any) -> None:
    client = async_client(settings, decode_responses=True)
    writer = RedisWriter(client, K, dedupe_ttl_s=60)
    await writer.apply_catalog([rec("a", category="shoes", price=9.5),
                                rec("b", category="bags"), rec("c", price=3.0)])
    assert await client.hgetall(K.item_categories) == {"a": "shoes", "b": "bags"}
    assert await client.hgetall(K.item_prices) == {"a": "9.5", "c": "3.0"}
    assert await client.zrange(K.item_price_index, 0, -1, withscores=True) == [
        ("c", 3.0), ("a", 9.5)]
    await writer.apply_catalog([rec("a", category="shoes.kids"), rec("b", deleted=True),
                                rec("c", category="toys", price=4.0, in_stock=False)])
    assert await client.hgetall(K.item_categories) == {"a": "shoes.kids", "c": "toys"}
    assert await client.hgetall(K.item_prices) == {"c": "4.0"}
    # the price index follows the price column: changed, dropped, deleted
    assert await client.zrange(K.item_price_index, 0, -1, withscores=True) == [("c", 4.0)]
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
    await client.hset(K.item_meta("gone"), mapping={"category": "c", "deleted": "1",
                                                    "updated_at": "7.0"})
    await client.hset(K.item_meta("dated"), mapping={"updated_at": "5.5", "deleted": "0"})
    assert await ensure_columns(client, K, 100)
    assert await client.hgetall(K.item_categories) == {"old": "c"}
    assert await client.smembers(K.category_items("c")) == {"old"}
    assert await client.hgetall(K.item_prices) == {"old": "2.5"}
    assert await client.zrange(K.item_price_index, 0, -1, withscores=True) == [("old", 2.5)]
    assert await newest(client) == [("dated", 5.5)]
    assert await client.get(K.columns_ready) == COLUMNS_VERSION
    assert not await ensure_columns(client, K, 100)  # marked complete: nothing to do
    # complete before the newest items existed ("1"): filled once more
    await client.set(K.columns_ready, "1")
    assert await ensure_columns(client, K, 100)
    # complete before the price index existed ("2"): filled once more, index included
    await client.delete(K.item_price_index)
    await client.set(K.columns_ready, "2")
    assert await ensure_columns(client, K, 100)
    assert await client.zrange(K.item_price_index, 0, -1, withscores=True) == [("old", 2.5)]
    await client.aclose()


async def test_serving_rows_follow_catalog_writes_and_are_filled_from_the_hashes(
        settings: Any) -> None:
    """Each item's serving row says what its hash says (the serve script reads one or
    the other), through writes, deletions and a fill from the hashes alone."""
    client = async_client(settings, decode_responses=True)
    writer = RedisWriter(client, K, dedupe_ttl_s=60)
    await writer.apply_catalog([
        rec("a", name="A\x1fz", category="shoes", price=9.5, currency="EUR"),
        rec("b", in_stock=False), rec("c", category="x"),
        rec("d", category="odd\x1f", price=1.0)])  # a replayed record from before checks
    assert await client.hgetall(K.item_rows) == {
        "a": "109.5\x1fEUR\x1fshoes\x1fA\x1fz", "b": "00\x1f\x1f\x1f",
        "c": "10\x1f\x1fx\x1f", "d": "h"}  # "h": read the item's hash
    await writer.apply_catalog([rec("a", 2.0, deleted=True), rec("b", 2.0, price=3.0)])
    rows = await client.hgetall(K.item_rows)
    assert rows["a"] == serve_row(in_stock=False, deleted=True) == "01\x1f\x1f\x1f"
    assert rows["b"] == "103.0\x1f\x1f\x1f"
    # columns complete before the rows existed ("3"): filled from the hashes, the same
    await client.delete(K.item_rows)
    await client.set(K.columns_ready, "3")
    assert await ensure_columns(client, K, 100)
    assert await client.hgetall(K.item_rows) == rows
    assert await client.get(K.columns_ready) == COLUMNS_VERSION
    await client.aclose()


async def newest(client: Any) -> list[tuple[str, float]]:
    return [(i, s) for i, s in await client.zrevrange(K.new_items, 0, -1, withscores=True)]


async def test_catalog_records_keep_the_newest_items_bounded(settings: Any) -> None:
    client = async_client(settings, decode_responses=True)
    writer = RedisWriter(client, K, dedupe_ttl_s=60, bounds=StateBounds(ranked_items_max=3))
    await writer.apply_catalog([rec("a", 10.0), rec("b", 11.0), rec("a", 12.0, price=2.0)])
    assert await newest(client) == [("b", 11.0), ("a", 10.0)]  # listed at its first record
    await writer.apply_catalog([rec("c", 13.0, in_stock=False), rec("d", 14.0)])
    assert await client.smembers(K.unavailable) == {"c"}
    # bounded: the oldest leaves; out of stock stays (serving skips it, as any candidate)
    assert await newest(client) == [("d", 14.0), ("c", 13.0), ("b", 11.0)]
    # an update of the item trimmed out does not make it new again
    await writer.apply_catalog([rec("a", 20.0, category="x")])
    assert await newest(client) == [("d", 14.0), ("c", 13.0), ("b", 11.0)]
    # deleted items leave; re-listed after a delete (even within one batch) they re-enter
    await writer.apply_catalog([rec("d", 21.0, deleted=True)])
    assert await newest(client) == [("c", 13.0), ("b", 11.0)]
    await writer.apply_catalog([rec("b", 22.0, deleted=True), rec("b", 23.0),
                                rec("d", 24.0), rec("d", 25.0)])
    assert await newest(client) == [("d", 24.0), ("b", 23.0), ("c", 13.0)]
    # a replay of the same records over the state changes nothing
    await writer.apply_catalog([rec("c", 13.0, in_stock=False), rec("d", 25.0)])
    assert await newest(client) == [("d", 24.0), ("b", 23.0), ("c", 13.0)]
    await client.aclose()


async def test_a_replay_of_the_records_into_an_empty_redis_gives_the_same_order(
        settings: Any) -> None:
    log = [rec("a", 3.0), rec("b", 1.0), rec("c", 2.0), rec("a", 9.0),
           rec("b", 4.0, deleted=True), rec("b", 5.0), rec("e", 2.0)]
    client = async_client(settings, decode_responses=True)
    writer = RedisWriter(client, K, dedupe_ttl_s=60)
    for record in log:
        await writer.apply_catalog([record])
    live = await newest(client)
    assert [i for i, _ in live] == ["b", "a", "e", "c"]
    await client.flushall()
    for start in range(0, len(log), 3):  # the rebuild's batches
        await writer.apply_catalog(log[start:start + 3])
    assert await newest(client) == live
    await client.aclose()


async def test_an_item_listed_out_of_stock_is_unavailable_when_it_becomes_new(
        settings: Any) -> None:
    """Serving reads the newest items as soon as the script added one: its stock is
    right by then, before the item hashes of the batch are written."""
    client = async_client(settings, decode_responses=True)
    await run_batch(client, Columns(K, 100).calls([rec("x", 5.0, in_stock=False),
                                                   rec("y", 6.0)]))
    assert await newest(client) == [("y", 6.0), ("x", 5.0)]
    assert await client.smembers(K.unavailable) == {"x"}
    await client.aclose()


class _WriteAfterRead:
    """A client whose first pipeline run (the fill's read of the item hashes) is followed
    by ``write``: a catalog write landing between the fill's read and its write."""

    def __init__(self, client: Any, write: Any) -> None:
        self.client, self.write = client, write

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def pipeline(self, **kwargs: Any) -> Any:
        pipe, outer = self.client.pipeline(**kwargs), self

        async def execute() -> Any:
            replies = await run(pipe)
            if outer.write is not None:
                write, outer.write = outer.write, None
                await write()
            return replies

        run = type(pipe).execute
        pipe.execute = execute
        return pipe


async def test_a_fill_keeps_the_serving_row_a_catalog_write_made_meanwhile(
        settings: Any) -> None:
    client = async_client(settings, decode_responses=True)
    writer = RedisWriter(client, K, dedupe_ttl_s=60)
    await client.hset(K.item_meta("a"), mapping={"price": "1.0", "name": "old"})
    racing = _WriteAfterRead(client, lambda: writer.apply_catalog(
        [rec("a", 2.0, price=2.0, name="new")]))
    assert await ensure_columns(racing, K, 100)
    assert racing.write is None  # the write landed between the fill's read and write
    assert await client.hget(K.item_rows, "a") == "102.0\x1f\x1f\x1fnew"
    await client.aclose()
