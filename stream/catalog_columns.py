"""Catalog columns: item → category and item → price, beside the per-item hashes.

Category and price filters (API.md "Merchandising") apply inside the serve script to
every candidate before it counts towards ``n``, so a filtered list may examine hundreds
of candidates. Reading each one's ``i:{item}:meta`` hash cost ~20 k instructions of
redis-server per candidate (the call and its reply, callgrind: 21 M per home request
with a 1-in-40 category filter); one ``HMGET`` of a whole page of candidates on a
column hash costs a fraction per candidate. The worker's catalog writer keeps the
columns with the hashes (:class:`Columns`, same pipeline), and one set per category of
the items in it or below it, so a category filter on a sorted set reads the intersection
instead of scanning (``ZINTER``, for categories of up to ``CATEGORY_INTERSECT_MAX``
items); a ``items:columns`` key says they are complete (:func:`ensure_columns` fills them from the
item hashes once, e.g. for a Redis that had a catalog before the columns existed). They
are catalog state: a rebuild from the log refills them with the rest of the catalog.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis

from core.redis_client import Call, Lua
from core.redis_keys import RedisKeys
from schemas import CatalogRecord

log = logging.getLogger("streamrec.worker")

#: Item hashes read per round trip while filling the columns.
FILL_CHUNK = 1000


#: KEYS: category column, price column; ARGV[1] = JSON ``[prefix, suffix]`` of the
#: category item sets, ARGV[2] = JSON ``[[item, category or "", price or ""], ...]``.
#: Moves each item from the sets of its old category's prefixes (read from the column)
#: to those of its new one, and writes both columns ("" = no entry).
_APPLY = """
local sets = cjson.decode(ARGV[1])
local function each_prefix(category, fn)
  if not category or category == '' then return end
  local at = 1
  while true do
    local dot = string.find(category, '.', at, true)
    if not dot then break end
    fn(string.sub(category, 1, dot - 1))
    at = dot + 1
  end
  fn(category)
end
for _, r in ipairs(cjson.decode(ARGV[2])) do
  local item, category, price = r[1], r[2], r[3]
  local old = redis.call('HGET', KEYS[1], item)
  if old ~= category then
    each_prefix(old, function(c) redis.call('SREM', sets[1] .. c .. sets[2], item) end)
    each_prefix(category, function(c) redis.call('SADD', sets[1] .. c .. sets[2], item) end)
    if category == '' then redis.call('HDEL', KEYS[1], item)
    else redis.call('HSET', KEYS[1], item, category) end
  end
  if price == '' then redis.call('HDEL', KEYS[2], item)
  else redis.call('HSET', KEYS[2], item, price) end
end
return 0
"""
_APPLY_LUA = Lua(_APPLY)


def category_prefixes(category: str | None) -> list[str]:
    """The category and every category above it: ``a.b.c`` → ``a``, ``a.b``, ``a.b.c``
    (the sets an item of ``a.b.c`` belongs to; the serve script's category rule)."""
    if not category:
        return []
    parts = category.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def column_row(rec: CatalogRecord) -> list[str]:
    """``[item, category, price]`` of a catalog record for the script ("" = none)."""
    if rec.deleted:
        return [rec.item_id, "", ""]
    return [rec.item_id, rec.category or "",
            repr(float(rec.price)) if rec.price is not None else ""]


class Columns:
    """The column and category-set writes of catalog records (one script call in the
    shared slot, where the columns and the category sets live: ``core.redis_keys``)."""

    def __init__(self, keys: RedisKeys) -> None:
        self.keys = keys
        self._sets = orjson.dumps(list(keys.split("category_items")))

    def calls(self, records: Sequence[CatalogRecord]) -> list[Call]:
        """The writes of ``records`` (the last record per item wins), for a batch."""
        if not records:
            return []
        rows = orjson.dumps([column_row(r) for r in records])
        return [_APPLY_LUA.call([self.keys.item_categories, self.keys.item_prices],
                                [self._sets, rows])]


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
                text = category.decode() if isinstance(category, bytes) else str(category)
                pipe.hset(keys.item_categories, item, text)
                for prefix in category_prefixes(text):
                    pipe.sadd(keys.category_items(prefix), item)
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
