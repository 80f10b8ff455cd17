"""Promotions: stored in Redis by the admin routes, read by every list through a short
per-process cache, served as links at the head of the chain.

A promotion names items (``item_ids``, best first) or a category (its most popular
items, sub-categories included, wherever they rank: the serve script reads them from the
category's item set), a ``share`` of the slots, optional page contexts and a
time window (:class:`schemas.merch.PromotionBody`). While active, each one becomes a link
of its own in front of the list's fallback chain (:func:`promotion_links`): up to
``ceil(share × n)`` items of its own (slots a promotion cannot fill are not handed to
the next one; all of them together at most ``n``; as many promotions as fit in
``PROMOTION_SCAN_TOTAL`` candidates, in start order) that pass every rule of the request --
stock, deletion, purchases (one a checkout list buys again is left to that link, served
as ``buy_again``), cart, ``exclude``, filters, the category cap -- with ``reason:
"promoted"``. Links at the head rank above
every organic link (``api.ranking``), so promoted items lead the answer.

The promotions live in one Redis hash (``RedisKeys.promotions``; at most
``PROMOTIONS_MAX``), and every write counts up ``RedisKeys.promotions_rev`` in the same
script. Each API process keeps a copy with the count it was read at; every list reads
the count in its first round trip (:class:`Checked`, no round trip of its own) and, when
another process wrote since, re-reads the hash and serves the list again with the new
promotions (:meth:`Promotions.catch_up`): an admin change holds for every list any
process starts after the change's ``200``. The copy is also re-read every
``PROMOTIONS_CACHE_S`` seconds, and at once after this process's own writes.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from api.ranking import SourceSpec
from core.limits import (
    PROMOTION_SCAN_MAX,
    PROMOTION_SCAN_TOTAL,
    PROMOTIONS_CACHE_S,
    PROMOTIONS_MAX,
)
from core.redis_client import Call, command, write_count
from core.redis_keys import RedisKeys
from schemas.merch import Promotion, PromotionBody

log = logging.getLogger("streamrec.api")

#: The link of a promoted item (its ``source`` is never the list's: see api.reader).
PROMOTED = SourceSpec("promoted", "promoted", "popular")

#: KEYS = the promotions hash, its write count; ARGV = id, JSON, most promotions. Stores
#: unless that would exceed the most; returns 1 when stored.
_PUT = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0
   and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('INCR', KEYS[2])
return 1
"""
#: KEYS as ``_PUT``; ARGV = id. Deletes it (and counts the write).
_DELETE = """
redis.call('INCR', KEYS[2])
return redis.call('HDEL', KEYS[1], ARGV[1])
"""
#: KEYS as ``_PUT``: the write count and the hash, read together.
_READ = """
return {redis.call('GET', KEYS[2]), redis.call('HGETALL', KEYS[1])}
"""
#: One round trip: calls in, replies out (``api.gather.Batch``).
Batch = Callable[[list[Call]], Awaitable[list[Any]]]


class TooManyPromotions(Exception):
    """A new promotion would exceed ``PROMOTIONS_MAX``."""


@dataclass(frozen=True)
class PromotionLinks:
    """The links a list draws its promoted items from, in chain order."""

    specs: tuple[SourceSpec, ...]
    links: tuple[dict[str, Any], ...]
    ids: tuple[str, ...]


NO_LINKS = PromotionLinks((), (), ())


class Checked:
    """A list's round trips with write counts (the promotions', the experiments') read in
    the first one (``checks``; none: nothing read); the counts read are ``replies``, in
    the order of ``checks`` (None each until read)."""

    def __init__(self, batch: Batch, *checks: Call) -> None:
        self._batch = batch
        self._checks = list(checks)
        self.replies: list[Any] = [None] * len(checks)

    async def __call__(self, calls: list[Call]) -> list[Any]:
        checks, self._checks = self._checks, []
        if not checks:
            return await self._batch(calls)
        replies = await self._batch([*checks, *calls])
        self.replies = replies[:len(checks)]
        return replies[len(checks):]


def slots(share: float, n: int) -> int:
    """``ceil(share × n)``, robust to float residue (0.3 × 10 is 3, not 4): at least 1,
    as the ceiling of any share above 0 is (a share of 1e-12 still leads with one)."""
    return max(1, min(n, math.ceil(share * n - 1e-9)))


def promotion_links(active: list[Promotion], n: int, popular_key: str) -> PromotionLinks:
    """The serve script's links for the ``active`` promotions of one list of ``n``."""
    specs, links, ids = [], [], []
    budget = PROMOTION_SCAN_TOTAL
    for promo in active:
        link: dict[str, Any]
        if promo.item_ids is not None:
            link = {"k": "ids", "ids": promo.item_ids}
            scan = len(promo.item_ids)
        else:
            link = {"k": "zset", "key": popular_key, "lc": [promo.category]}
            scan = PROMOTION_SCAN_MAX
        if scan > budget:
            continue  # a smaller one after it may still fit
        budget -= scan
        # its own slots: what an earlier promotion could not fill stays organic (the
        # serve script skips the links after the list is full)
        links.append({**link, "quota": slots(promo.share, n), "scan": scan})
        specs.append(PROMOTED)
        ids.append(promo.promotion_id)
    return PromotionLinks(tuple(specs), tuple(links), tuple(ids))


class Promotions:
    """The promotions hash, and this process's cache of it."""

    def __init__(self, redis: Redis, keys: RedisKeys, ttl_s: float = PROMOTIONS_CACHE_S) -> None:
        self._redis = redis
        self._keys = keys
        self._ttl_s = ttl_s
        self._cached: list[Promotion] = []
        self._expires = 0.0
        self._refreshing: asyncio.Future[None] | None = None
        self._rev = ""  # the write count the copy was read at ("": never read)
        self._put = redis.register_script(_PUT)
        self._delete = redis.register_script(_DELETE)
        self._read = redis.register_script(_READ)
        self._both = [keys.promotions, keys.promotions_rev]

    # -- admin -------------------------------------------------------------------------
    async def all(self) -> list[Promotion]:
        """Every stored promotion, by id (raises ``RedisError``)."""
        raw = await self._redis.hgetall(self._keys.promotions)
        return self._parse(raw.values())

    @staticmethod
    def _parse(values: Any) -> list[Promotion]:
        """The stored promotions ``values`` (JSON), by id; malformed ones left out."""
        out = []
        for value in values:
            try:
                out.append(Promotion.model_validate_json(value))
            except ValidationError:
                log.warning("ignoring a malformed stored promotion: %.200s", value)
        return sorted(out, key=lambda p: p.promotion_id)

    async def get(self, promotion_id: str) -> Promotion | None:
        """One promotion, or None (raises ``RedisError``)."""
        raw = await self._redis.hget(self._keys.promotions, promotion_id)
        if raw is None:
            return None
        try:
            return Promotion.model_validate_json(raw)
        except ValidationError:
            return None

    async def put(self, promotion_id: str, body: PromotionBody) -> Promotion:
        """Store (create or replace) a promotion; raises :class:`TooManyPromotions`."""
        promo = Promotion(**body.model_dump(), promotion_id=promotion_id,
                          updated_at=datetime.now(UTC))
        stored = await self._put(keys=self._both,
                                 args=[promotion_id, promo.model_dump_json(), PROMOTIONS_MAX])
        if not int(stored):
            raise TooManyPromotions(f"at most {PROMOTIONS_MAX} promotions can be stored")
        self.invalidate()
        return promo

    async def delete(self, promotion_id: str) -> Promotion | None:
        """Delete a promotion; the deleted one, or None when there was none."""
        promo = await self.get(promotion_id)
        await self._delete(keys=self._both, args=[promotion_id])
        self.invalidate()
        return promo

    def invalidate(self) -> None:
        """Re-read on the next list (after this process's own writes)."""
        self._expires = 0.0

    # -- serving -----------------------------------------------------------------------
    def check(self) -> Call:
        """The read of the write count a list makes in its first round trip."""
        return command("GET", self._keys.promotions_rev)

    async def catch_up(self, count: Any) -> bool:
        """True when the copy was behind the write count ``count`` a list read (another
        process wrote): then it is re-read first (twice at most: a refresh already under
        way may have started before the write)."""
        seen = write_count(count)
        if seen == self._rev:
            return False
        for _ in range(2):
            await self._refresh()
            if self._rev == seen:
                break
        return True

    def cached(self, context: str) -> list[Promotion] | None:
        """:meth:`active` without waiting, or None when the cache must be refreshed first
        (the common case, no promotion at all, costs one clock read)."""
        if time.monotonic() >= self._expires:
            return None
        if not self._cached:
            return []
        moment = datetime.fromtimestamp(time.time(), UTC)
        return [p for p in self._cached if p.active(context, moment)]

    def cached_ids(self, context: str) -> list[str] | None:
        """The ids of :meth:`cached`'s promotions (what a near-cache key holds)."""
        active = self.cached(context)
        return None if active is None else [p.promotion_id for p in active]

    async def active(self, context: str) -> list[Promotion]:
        """The promotions that apply to a list of ``context`` now (in start order), from
        the cache; Redis errors keep the last copy."""
        found = self.cached(context)
        if found is None:
            await self._refresh()
            found = self.cached(context)
        return found or []

    async def _refresh(self) -> None:
        if self._refreshing is not None:  # one refresh at a time; the others wait for it
            await asyncio.shield(self._refreshing)
            return
        self._refreshing = asyncio.get_running_loop().create_future()
        try:
            count, raw = await self._read(keys=self._both)
            promos = self._parse(dict(zip(raw[::2], raw[1::2], strict=True)).values())
            self._rev = write_count(count)
            earliest = datetime.min.replace(tzinfo=UTC)
            self._cached = sorted(promos, key=lambda p: (p.starts_at or earliest,
                                                         p.promotion_id))
        except (RedisError, OSError) as exc:
            log.debug("promotions not refreshed: %r", exc)
        finally:
            self._expires = time.monotonic() + self._ttl_s
            done, self._refreshing = self._refreshing, None
            done.set_result(None)
