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
items). A third column holds each item's **serving row** (:func:`serve_row`: stock,
deletion, price, currency, category and name in one value): the serve script reads a
candidate's catalog fields with one ``HGET`` of one value and one pattern match instead
of a 7-field ``HMGET`` of its hash (callgrind, ``python -m streamrec.bench.script``:
1.17 M -> 1.08 M instructions per home request, 3.16 M -> 3.07 M with a category
filter). The price column is also kept as a sorted set (``items:by_price``, one entry per
priced item, deleted items out): a price filter whose band ranks below the scan's budget
(cheap items nobody views) reads the band from it. A ``items:columns`` key says they are
complete (:func:`ensure_columns` fills them from the item hashes once, e.g. for a Redis
that had a catalog before the columns existed). They are catalog state: a rebuild from
the log refills them with the rest of the catalog.

The same call keeps the **newest items** (``{s}:items:new``, the last link of every
fallback chain: items no event has ranked yet), item → the ``updated_at`` of the record
that listed it: an item enters when a record lists it for the first time (no item hash
yet) or again after its deletion, keeps that time through later updates, leaves when
deleted, and only the newest ``bound`` stay (so an old item trimmed out does not come
back as new when it is updated). The time comes from the record, not the clock: a replay
of the log gives the same set. (On a compacted catalog topic an item's first record may be
gone; the replay then takes its oldest remaining one.)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis

from core.limits import FLAG_FALSE, FLAG_TRUE
from core.merch_keys import COLUMNS_VERSION
from core.redis_client import Call, Lua
from core.redis_keys import RedisKeys
from core.scored_lists import finite_float
from schemas import CatalogRecord

log = logging.getLogger("streamrec.worker")

#: Item hashes read per round trip while filling the columns.
FILL_CHUNK = 1000


#: KEYS: category column, price column, newest items, unavailable items, price index
#: (the price column as a sorted set), serving rows; ARGV[1] = JSON
#: ``[prefix, suffix]`` of the category item sets, ARGV[2] = JSON ``[[item, category or
#: "", price or "", deleted "0"/"1", updated_at text, in stock "0"/"1", serving row],
#: ...]``, ARGV[3] =
#: JSON ``[prefix, suffix]`` of the item hashes, ARGV[4] = how many newest items are kept.
#: Moves each item from the sets of its old category's prefixes (read from the column) to
#: those of its new one, writes both columns, the price index ("" = no entry: a deleted
#: item leaves them) and the serving row (a deleted item's says so), and the newest
#: items (see the
#: module notes; the item hashes are written after this call, so ``gone`` notes deletions
#: earlier in the batch, and an item listed out of stock is marked unavailable here
#: already: serving reads the newest items at once).
_APPLY = """
local sets = cjson.decode(ARGV[1])
local meta = cjson.decode(ARGV[3])
local gone, added = {}, false
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
  if price == '' then
    redis.call('HDEL', KEYS[2], item)
    redis.call('ZREM', KEYS[5], item)
  else
    redis.call('HSET', KEYS[2], item, price)
    redis.call('ZADD', KEYS[5], price, item)
  end
  redis.call('HSET', KEYS[6], item, r[7])
  if r[4] == '1' then
    redis.call('ZREM', KEYS[3], item)
    gone[item] = true
  elseif not redis.call('ZSCORE', KEYS[3], item) then
    local listed = gone[item]
    if listed == nil then
      local was = redis.call('HGET', meta[1] .. item .. meta[2], 'deleted')
      listed = was == '1' or redis.call('EXISTS', meta[1] .. item .. meta[2]) == 0
    end
    if listed then
      if r[6] == '0' then redis.call('SADD', KEYS[4], item) end
      redis.call('ZADD', KEYS[3], r[5], item)
      gone[item], added = false, true
    end
  end
end
if added then redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -tonumber(ARGV[4]) - 1) end
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


#: Ends the price, currency and category in a serving row (a control character, which
#: catalog writes refuse in categories: ``schemas.catalog``).
ROW_SEP = "\x1f"


def serve_row(*, in_stock: bool, deleted: bool, price: str = "", currency: str = "",
              category: str = "", name: str = "") -> str:
    """An item's serving row (``items:row``): ``"1"``/``"0"`` for in stock, the same for
    deleted, then price, currency and category each ended by :data:`ROW_SEP`, then the
    name (the rest): one value per item, read with one ``HGET`` and one pattern match
    (``row_fields`` in ``api/lua/serve_request.lua``). ``""`` = the item's hash has no such
    field. ``"h"`` (read the item's hash instead) when one of those fields holds the separator (a
    record replayed from before categories were checked)."""
    fields = (price, currency, category)
    if any(ROW_SEP in text for text in fields):
        return "h"
    return (("1" if in_stock else "0") + ("1" if deleted else "0")
            + "".join(text + ROW_SEP for text in fields) + name)


def column_row(rec: CatalogRecord) -> list[str]:
    """``[item, category, price, deleted, updated_at, in_stock, serving row]`` of a
    catalog record for the script ("" = none)."""
    if rec.deleted:
        return [rec.item_id, "", "", "1", repr(rec.updated_at), "0",
                serve_row(in_stock=False, deleted=True)]
    price = repr(float(rec.price)) if rec.price is not None else ""
    return [rec.item_id, rec.category or "", price, "0", repr(rec.updated_at),
            "1" if rec.in_stock else "0",
            serve_row(in_stock=rec.in_stock, deleted=False, price=price,
                      currency=rec.currency or "", category=rec.category or "",
                      name=rec.name or "")]


class Columns:
    """The column, category-set and newest-item writes of catalog records (one script
    call in the shared slot, where they and the item hashes live: ``core.redis_keys``);
    ``newest_max`` newest items are kept."""

    def __init__(self, keys: RedisKeys, newest_max: int) -> None:
        self.keys = keys
        self._sets = orjson.dumps(list(keys.split("category_items")))
        self._meta = orjson.dumps(list(keys.split("item_meta")))
        self._max = str(max(1, newest_max))

    def calls(self, records: Sequence[CatalogRecord]) -> list[Call]:
        """The writes of ``records`` (the last record per item wins), for a batch."""
        if not records:
            return []
        rows = orjson.dumps([column_row(r) for r in records])
        return [_APPLY_LUA.call(
            [self.keys.item_categories, self.keys.item_prices, self.keys.new_items,
             self.keys.unavailable, self.keys.item_price_index, self.keys.item_rows],
            [self._sets, rows, self._meta, self._max])]



def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


#: The fields of an item hash that a serving row holds besides category, price, deleted.
_ROW_FIELDS = ("name", "currency", "in_stock")


def _flag(text: str) -> str:
    """A flag's text as the serve script's ``flag`` reads it: Lua's ``%s`` trims only
    ASCII white space (``str.strip`` also a no-break space or a control separator)."""
    return text.strip(" \t\n\v\f\r").lower()


def _hash_row(values: list[Any]) -> str | None:
    """The serving row of an item hash's ``category, price, deleted, updated_at, name,
    currency, in_stock`` as the serve script reads the hash (a flag's text trimmed and
    lowercased; only the listed words turn it), None for a hash without any of them."""
    if all(v is None for v in values):
        return None
    category, price, deleted, _, name, currency, stock = (
        "" if v is None else _text(v) for v in values)
    return serve_row(in_stock=_flag(stock) not in FLAG_FALSE,
                     deleted=_flag(deleted) in FLAG_TRUE,
                     price=price, currency=currency, category=category, name=name)


async def fill_columns(client: aioredis.Redis, keys: RedisKeys, newest_max: int) -> int:
    """Fill both columns, the price index and the newest items (by the hashes'
    ``updated_at``, the best a
    catalog written before them tells) from every item hash, then mark them complete;
    returns the items seen. Idempotent (a catalog write meanwhile writes the same values;
    an item already among the newest keeps its time).

    A serving row is written only where the item has none: a catalog write writes the
    row before the item's hash (:class:`Columns`), so one landing between this read of
    the hash and its write left the row with the older price or name until the item's
    next write. A row already there came from such a write or an earlier fill of the
    same hash. (A worker older than the rows, rolled back to, changes hashes without
    rows; rolled forward again, those rows stay as they were until the item's next
    write.)"""
    head, tail = keys.split("item_meta")
    seen = 0
    batch: list[Any] = []

    async def flush() -> None:
        pipe = client.pipeline(transaction=False)
        for key in batch:
            pipe.hmget(key, ["category", "price", "deleted", "updated_at", *_ROW_FIELDS])
        rows = await pipe.execute()
        pipe = client.pipeline(transaction=False)
        newest: dict[str, float] = {}
        for key, (category, price, deleted, updated, *rest) in zip(batch, rows, strict=True):
            raw = _text(key)
            item = raw[len(head):len(raw) - len(tail)]
            row = _hash_row([category, price, deleted, updated, *rest])
            if row is not None:  # a row there is as new as the hash or newer (see above)
                pipe.hsetnx(keys.item_rows, item, row)
            gone = deleted not in (None, b"0", "0")
            if category and not gone:
                text = _text(category)
                pipe.hset(keys.item_categories, item, text)
                for prefix in category_prefixes(text):
                    pipe.sadd(keys.category_items(prefix), item)
            if price is not None and not gone:
                pipe.hset(keys.item_prices, item, price)
                value = finite_float(_text(price))
                if value is not None:
                    pipe.zadd(keys.item_price_index, {item: value})
            when = finite_float(_text(updated)) if updated is not None else None
            if not gone and when is not None:
                newest[item] = when
        if newest:
            pipe.zadd(keys.new_items, newest, nx=True)
            pipe.zremrangebyrank(keys.new_items, 0, -max(1, newest_max) - 1)
        await pipe.execute()

    async for key in client.scan_iter(match=keys.pattern("item_meta"), count=FILL_CHUNK):
        batch.append(key)
        seen += 1
        if len(batch) >= FILL_CHUNK:
            await flush()
            batch = []
    if batch:
        await flush()
    await client.set(keys.columns_ready, COLUMNS_VERSION)
    return seen


async def ensure_columns(client: aioredis.Redis, keys: RedisKeys, newest_max: int) -> bool:
    """Fill the columns unless they are marked complete; True when it filled them."""
    ready = await client.get(keys.columns_ready)
    if ready is not None and _text(ready) == COLUMNS_VERSION:
        return False
    items = await fill_columns(client, keys, newest_max)
    log.info("catalog columns filled from %d item hashes", items)
    return True
