"""Catalog columns: item → category and item → price, beside the per-item hashes.

Category and price filters (API.md "Merchandising") apply inside the serve script to
every candidate before it counts towards ``n``, so a filtered list may examine hundreds
of candidates. Reading each one's ``i:{item}:meta`` hash cost ~20 k instructions of
redis-server per candidate (the call and its reply, callgrind: 21 M per home request
with a 1-in-40 category filter); one ``HMGET`` of a whole page of candidates on a
column hash costs a fraction per candidate. The worker's catalog writer keeps the
columns with the hashes (:func:`queue_record`, same pipeline, same order); a
``items:columns`` key says they are complete (:func:`ensure_columns` fills them from the
item hashes once, e.g. for a Redis that had a catalog before the columns existed). They
are catalog state: a rebuild from the log refills them with the rest of the catalog.
"""

from __future__ import annotations

import logging
from typing import Any

import redis.asyncio as aioredis

from core.redis_keys import RedisKeys
from schemas import CatalogRecord

log = logging.getLogger("streamrec.worker")

#: Item hashes read per round trip while filling the columns.
FILL_CHUNK = 1000


def queue_record(pipe: Any, keys: RedisKeys, rec: CatalogRecord) -> None:
    """Queue the column writes of one catalog record on ``pipe`` (a deleted item, or one
    without a category or price, has no entry)."""
    if rec.deleted or not rec.category:
        pipe.hdel(keys.item_categories, rec.item_id)
    else:
        pipe.hset(keys.item_categories, rec.item_id, rec.category)
    if rec.deleted or rec.price is None:
        pipe.hdel(keys.item_prices, rec.item_id)
    else:
        pipe.hset(keys.item_prices, rec.item_id, repr(float(rec.price)))


async def fill_columns(client: aioredis.Redis, keys: RedisKeys) -> int:
    """Fill both columns from every item hash, then mark them complete; returns the
    items seen. Idempotent (a catalog write meanwhile writes the same values)."""
    head, tail = keys.split("item_meta")
    seen = 0
    batch: list[Any] = []

    async def flush() -> None:
        pipe = client.pipeline(transaction=False)
        for key in batch:
            pipe.hmget(key, ["category", "price", "deleted"])
        rows = await pipe.execute()
        pipe = client.pipeline(transaction=False)
        for key, (category, price, deleted) in zip(batch, rows, strict=True):
            raw = key.decode() if isinstance(key, bytes) else str(key)
            item = raw[len(head):len(raw) - len(tail)]
            gone = deleted not in (None, b"0", "0")
            if category and not gone:
                pipe.hset(keys.item_categories, item, category)
            if price is not None and not gone:
                pipe.hset(keys.item_prices, item, price)
        await pipe.execute()

    async for key in client.scan_iter(match=keys.pattern("item_meta"), count=FILL_CHUNK):
        batch.append(key)
        seen += 1
        if len(batch) >= FILL_CHUNK:
            await flush()
            batch = []
    if batch:
        await flush()
    await client.set(keys.columns_ready, "1")
    return seen


async def ensure_columns(client: aioredis.Redis, keys: RedisKeys) -> bool:
    """Fill the columns unless they are marked complete; True when it filled them."""
    if await client.exists(keys.columns_ready):
        return False
    items = await fill_columns(client, keys)
    log.info("catalog columns filled from %d item hashes", items)
    return True
