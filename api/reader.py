"""Recommendation lists read from Redis: a few pipelined round trips, never a 5xx.

Every list ends in one ``EVALSHA`` of :data:`api.serve_script.SERVE` in the shared slot:
every list of the fallback chain, the purchase / cart / stock / deletion filters and the
catalog fields of the chosen items, all inside Redis, with what lives in other slots
(the entity's lists, purchases and cart, an item's neighbours, co-occurrence, carters)
read just before (:mod:`api.gather`, at most three round trips; none for popular and
trending) and the rate limit checked alongside the first; on one Redis the script makes
those reads itself and checks the rate limit, one round trip (``SERVE_ONE``). The rate
limit is leased (:mod:`api.rate_lease`): a request admitted by a token the process holds
makes no rate-limit call; the others take a lease in that same round trip. The chain
tops the list up until ``n`` items or until every source is exhausted (or ``scan`` candidates were
examined). Python turns the raw result into scores (:mod:`api.reply_items`) and a response
body. On one Redis every round trip goes over one pipelined connection
(:mod:`api.script_conn`); on a Redis Cluster through the cluster client, one request per
node and round trip.

When Redis fails, the answer comes from :class:`api.snapshot.FallbackSnapshot`
instead; after a failure Redis is not tried again for ``BREAKER_S``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from functools import partial
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from api.errors import RateLimited
from api.explain import link_name, names_of, trace_of
from api.filters import UNCAPPED, script_fields
from api.gather import BUY_AGAIN_MAX, ServeInputs, serve_list, serve_one
from api.list_query import ListBody, ListQuery, RateCheck
from api.metrics import Metrics
from api.near_cache import NearCache, serve
from api.promotions import NO_LINKS, PROMOTED, Checked, PromotionLinks, Promotions, promotion_links
from api.ranking import CART_CONTEXTS, NEW_ITEMS, POPULAR_CHAIN
from api.rate_lease import RateLeases
from api.reply_items import ANCHORED, scored_items
from api.script_conn import ScriptConnection, supports
from api.snapshot import FallbackSnapshot
from core.attribution import new_recommendation_id
from core.connections import redis_refusal
from core.limits import FILTER_SCAN_MAX
from core.merch_keys import COLUMNS_VERSION
from core.redis_client import Call, is_cluster, run_batch
from core.redis_keys import RedisKeys
from core.settings import Settings

log = logging.getLogger("streamrec.api")

#: Candidates read per page of a sorted set, per missing item, in lists of several
#: sources (chain-scored): the first page's score range is the link's normaliser.
#: Single-source lists (popular, trending, the fallback snapshot) use no normaliser and
#: read ``n + n // 10`` (+ 20) per page, further pages only when filters removed more: the
#: 200-item snapshot read 620 entries for ~210 looked at (callgrind: 18.1 M -> 12.8 M
#: instructions per refresh).
OVERFETCH = 3
#: Candidates examined at most per request: ``SCAN_PER_ITEM * n + SCAN_BASE``, at least
#: ``FILTER_SCAN_MAX`` (+ excluded ids; a smaller budget left small lists empty behind
#: a few hundred sold-out popular items).
SCAN_PER_ITEM = 30
SCAN_BASE = 200
#: Whole-request budget for Redis before serving the fallback snapshot.
READ_TIMEOUT_S = 2.0
#: After a Redis failure, serve the snapshot without trying Redis for this long.
BREAKER_S = 1.0
#: Items kept in the fallback snapshot.
SNAPSHOT_SIZE = 200


class Reader:
    """Serves recommendation lists from the prepared data the worker keeps in Redis."""

    def __init__(self, redis: Redis, settings: Settings, metrics: Metrics) -> None:
        self._redis = redis
        self._settings = settings
        self._metrics = metrics
        self._keys = k = RedisKeys()
        self._down_until = 0.0
        #: When reads began to fail (monotonic), until one succeeds: the end is logged.
        self._lost_at: float | None = None
        #: Why the last :meth:`ping` failed when Redis refused us (login, certificate).
        self.refusal: str | None = None
        # The hot path's own pipelined connection on one Redis (redis-py's pool for TLS,
        # unix sockets and clusters).
        self._serve_conn = (ScriptConnection(settings.redis_url)
                            if not is_cluster(settings) and supports(settings.redis_url)
                            else None)
        self._meta = k.split("item_meta")
        self._again = {
            "k": "again", "exact_max": settings.distinct_exact_max,
            "min_buyers": settings.buy_again_min_buyers,
            "min_rate": settings.buy_again_min_repeat_rate, "max": BUY_AGAIN_MAX, "rebuy": True,
        }
        self._buy_again_on = settings.buy_again
        self._default_cap = settings.max_per_category
        self._columns = (k.item_categories, k.item_prices, k.columns_ready,
                         k.split("category_items"), k.item_price_index, COLUMNS_VERSION)
        # the serving rows, read while the columns are whole at their version
        self._rows = (k.item_rows, k.columns_ready, COLUMNS_VERSION)
        self.promotions = Promotions(redis, k)
        #: Leased rate-limit tokens: most requests need no Redis call for the limit.
        self.leases = RateLeases(self._batch, timeout_s=READ_TIMEOUT_S)
        self._served: dict[str, Any] = {}
        self.snapshot = FallbackSnapshot(self._snapshot_list, unavailable=self._unavailable,
                                         on_refresh=metrics.snapshot_refreshes.inc)
        #: Variant decisions (``api.experiments.Experiments``), set by the app.
        self.experiments: Any = None
        #: Served lists kept while Redis reports writes (``api.tracking_conn``), or None.
        self.near: NearCache | None = None

    async def _snapshot_list(self) -> ListBody:
        # the popular list itself, without promotions: the snapshot serves every context,
        # and a promotion runs only in its own contexts and window
        return await self.read(
            ListQuery(POPULAR_CHAIN, n=SNAPSHOT_SIZE, raw_scores=True, context="popular",
                      merch=UNCAPPED), promote=False,
        )

    async def _unavailable(self, items: list[str]) -> list[bool]:
        # the set the worker's catalog writer keeps: out of stock or deleted
        flags = await self._redis.smismember(self._keys.unavailable, items)
        return [bool(f) for f in flags]

    def _count(self, source: str) -> None:
        counter = self._served.get(source)
        if counter is None:
            counter = self._served[source] = self._metrics.lists_served.labels(source)
        counter.inc()

    async def recommend(self, query: ListQuery) -> ListBody:
        """The list for ``query`` (inside experiments: its variant's, see
        ``api.experiments``); the fallback snapshot when Redis fails.

        Raises ``RateLimited`` when the query's key is over its limit.
        """
        if self.experiments is not None and not query.probe:
            # Counted once, for the answer given: a definitions change mid-request makes
            # the experiments answer twice (the first answer is dropped).
            body: ListBody = await self.experiments.recommend(
                query, partial(self.serve_list, count=False))
            self._count(body["source"])
            return body
        return await self.serve_list(query)

    async def serve_list(self, query: ListQuery, *, count: bool = True) -> ListBody:
        """:meth:`recommend` outside experiments; ``count=False``: an operator's look at
        the list (``GET /v1/admin/preview``), not a list served to a shopper, so not in
        ``streamrec_api_lists_served_total`` (whose sum is the recommendation GETs)."""
        if time.monotonic() >= self._down_until:
            try:
                result = await (self._bounded_read(query) if self.near is None else serve(
                    self.near, query, promotion_ids=self.promotions.cached_ids,
                    read=self._bounded_read, admit=self._admit))
            except RateLimited:
                raise
            except (RedisError, OSError, TimeoutError) as exc:
                log.warning("Redis unavailable, serving the fallback snapshot: %r", exc)
                self._down_until = time.monotonic() + BREAKER_S
                if self._lost_at is None:
                    self._lost_at = time.monotonic()
            except Exception:
                # Serving never answers 5xx: data no reader expected still gets a list.
                log.exception("reading %s failed; serving the fallback snapshot", query)
            else:
                if self._lost_at is not None:  # the outage's end: api.log said nothing
                    log.info("Redis answers reads again after %.0fs: lists are served "
                             "from it, not the fallback snapshot",
                             time.monotonic() - self._lost_at)
                    self._lost_at = None
                if count:
                    self._count(result["source"])
                return result
        self._metrics.redis_fallbacks.inc()
        if count:
            self._count("fallback")
        blocked = query.exclude | ({query.anchor} if query.anchor else set())
        return self.snapshot.serve(query.n, blocked=frozenset(blocked), context=query.context,
                                   merch=query.merch, default_cap=self._default_cap)

    async def _bounded_read(self, query: ListQuery,
                            note: dict[str, Any] | None = None) -> ListBody:
        """:meth:`read` within the whole-request budget ``READ_TIMEOUT_S``. A near-cache
        hit skips the budget's timer (~6 µs of its ~100): its only I/O, a rate lease now
        and then, is one round trip bounded by the connection's own timeouts."""
        async with asyncio.timeout(READ_TIMEOUT_S):
            return await self.read(query, note=note)

    @property
    def serve_conn(self) -> ScriptConnection | None:
        """The pipelined serve connection (None: redis-py's pool or a cluster client)."""
        return self._serve_conn

    def close(self) -> None:
        """Close the serve connection (the redis-py pool is the app's to close)."""
        if self._serve_conn is not None:
            self._serve_conn.close()

    async def ping(self) -> bool:
        """True when Redis answers PING now; when it refuses the login or its certificate
        is not trusted, :attr:`refusal` says so (``/readyz`` shows it)."""
        self.refusal = None
        try:
            async with asyncio.timeout(1.0):
                return bool(await self._redis.ping())
        except (RedisError, OSError, TimeoutError) as exc:
            self.refusal = redis_refusal(exc)
            return False

    async def check_rate(self, rate: RateCheck) -> None:
        """Raise ``RateLimited`` when over the limit; allow when Redis cannot tell (the
        routes that serve no list through :meth:`read`, and experiments)."""
        await self._admit(rate)

    async def _admit(self, rate: RateCheck) -> None:
        """Admit one request of ``rate``'s key from the process's leased tokens, or a
        lease taken now (:class:`api.rate_lease.RateLeases`); a near-cache hit's check
        (``api.near_cache.serve``, which then lets the loop read Redis's reports)."""
        await self.leases.admit(rate)

    # -- reading ------------------------------------------------------------------------
    async def _batch(self, calls: list[Call]) -> list[Any]:
        """One round trip: the pipelined connection, or the (cluster) client."""
        if self._serve_conn is not None:
            return await self._serve_conn.batch(calls)
        return await run_batch(self._redis, calls)

    def _request(self, query: ListQuery, promo: PromotionLinks = NO_LINKS) -> dict[str, Any]:
        """The JSON request of the serve script, with placeholders (``user_recs``,
        ``item_similar``, ``item_cooc``, the purchases and cart) that
        :class:`api.gather.ServeInputs` fills from the other slots (``promo``: the links
        of the active promotions, ahead of the chain's)."""
        k = self._keys
        n = query.n
        entity, anchor = query.entity, query.anchor
        cart_context = query.context in CART_CONTEXTS
        boost = bool(entity) and any(spec.rerank for spec in query.chain)
        src: list[dict[str, Any]] = []
        for spec in query.chain:
            kind = spec.kind
            link: dict[str, Any]
            if kind == "popular":
                link = {"k": "zset", "key": k.popular}
            elif kind == "trending":
                link = {"k": "zset", "key": k.trending}
            elif kind == "new_items":  # read only when the links before it run short
                link = {"k": "zset", "key": k.new_items}
            elif kind == "user_recs" and entity:
                link = {"k": "user_recs"}
            elif kind == "session" and entity:
                link = {"k": "session"}
            elif kind in ("item_similar", "item_cooc") and anchor and not cart_context:
                link = {"k": kind}
            elif kind == "complements":
                link = {"k": "comp"}
            elif kind == "buy_again" and entity and self._buy_again_on:
                link = dict(self._again)
            else:
                link = {"k": "none"}
            if spec.rerank and boost:
                link = {**link, "take": 2 * n}
            src.append(link)
        excluded = list(query.exclude)
        if anchor and not cart_context:
            excluded.append(anchor)
        if promo.links:
            src = [*promo.links, *src]
        req: dict[str, Any] = {
            "n": n,
            "page": (n + n // 10 if query.raw_scores else OVERFETCH * n) + len(query.exclude) + 20,
            "scan": max(SCAN_PER_ITEM * n + SCAN_BASE, FILTER_SCAN_MAX) + len(query.exclude),
            "v": k.model_current,
            "un": k.unavailable,
            "meta": self._meta,
            "catalog": self._settings.require_catalog,
            "ex": excluded,
            "src": src,
            "rows": self._rows,
        }
        if boost:
            req["boost"] = None
        if cart_context:
            req["block_anchors"] = True
            if anchor:
                req["anchors"] = [anchor]
        if any(spec.kind == "trending" for spec in query.chain):
            req["t0"] = k.trending_epoch
        if anchor and not cart_context and any(s.kind in ANCHORED for s in query.chain):
            req["an"] = [anchor]  # its name, for the reasons of the similar links
        if query.merch is not None or self._default_cap:
            req.update(script_fields(query.merch, self._default_cap, req["scan"],
                                     len(query.exclude), self._columns))
            if query.merch is not None and query.merch.explain:
                req["del"] = k.deleted  # and the age of popular/trending (api.explain):
                req["at"] = [k.stats, "counted_at", k.popular, k.trending]
        if promo.links:
            req["scan"] += sum(link["scan"] for link in promo.links)
            if any("lc" in link for link in promo.links):
                # a category promotion reads its category's item set (serve_category.lua)
                req["csets"] = [*self._columns[3], self._columns[2]]
        return req

    async def _gather(self, query: ListQuery, promo: PromotionLinks, batch: Checked
                      ) -> list[Any]:
        """The reads before ``SERVE`` (the rate limit with the first), then its reply."""
        k = self._keys
        inputs = ServeInputs(self._request(query, promo), query.chain, entity=query.entity,
                             anchor=query.anchor, context=query.context, keys=k,
                             settings=self._settings)
        # the shared slot's keys the script reads (the routing key first)
        shared = [k.model_current, k.unavailable, *(
            link["key"] for link in inputs.request["src"] if link["k"] == "zset")]
        # None: no limit, or a token the process holds admitted it (api.rate_lease)
        ask = self.leases.ask(query.rate) if query.rate is not None else None
        try:
            if ask is None:
                if self._serve_conn is not None:
                    return await serve_one(batch, inputs, shared, rate=None)
                return await serve_list(batch, inputs, shared)
            if self._serve_conn is not None:
                rate = ask.check
                reply = await serve_one(batch, inputs, shared, on_limit=self._limited,
                                        rate=(rate.key, rate.interval_s, rate.burst, ask.size))
                # the head: the count charged ("ok" from a script without leases: one)
                ask.granted = reply[0] if isinstance(reply[0], int) else 1
                return reply
            return await serve_list(batch, inputs, shared, on_limit=ask.answer,
                                    limit=ask.call)
        finally:
            if ask is not None:
                self.leases.settle(ask)

    @staticmethod
    def _limited(wait: Any) -> None:
        if float(wait) > 0:
            raise RateLimited(float(wait))

    async def read(self, query: ListQuery, *, promote: bool = True,
                   note: dict[str, Any] | None = None) -> ListBody:
        """Build the list from Redis (raises ``RedisError`` when Redis fails); with
        ``promote``, the active promotions of its context lead it; ``note`` gets what
        the near cache keeps beside the body (``api.near_cache.serve``)."""
        promo = NO_LINKS
        active = self.promotions.cached(query.context) if promote else []
        if active is None:
            active = await self.promotions.active(query.context)
        if active:
            promo = promotion_links(active, query.n, self._keys.popular)
        watch = self.experiments if promote and self.experiments is not None else None
        batch = Checked(self._batch, *([self.promotions.check()] if promote else []),
                        *([watch.check()] if watch is not None else []))  # write counts
        reply = await self._gather(query, promo, batch)
        if watch is not None:
            watch.saw(batch.replies[-1])
        if promote and await self.promotions.catch_up(batch.replies[0]):
            # another process changed them: this list's changed? serve it again (rate checked)
            fresh = await self.promotions.active(query.context)
            if note is not None:
                note["promotions_moved"] = True
            if fresh != active:
                promo = promotion_links(fresh, query.n, self._keys.popular) if fresh else NO_LINKS
                reply = await self._gather(replace(query, rate=None), promo,
                                           Checked(self._batch))
        # Flat reply, see api.serve_script: ok, v, t0, aff lo/hi, L, item count,
        # L x (lo, hi), items of 11 values, names, (trace).
        version = reply[1]
        chain = (*promo.specs, *query.chain)
        first = 7 + 2 * int(reply[5])
        end = first + 11 * int(reply[6])
        names, at = names_of(reply, end)
        items, links = scored_items(query, chain, reply, (first, end), names,
                                    self._settings.trending_half_life_s)
        organic = [i for i, spec in enumerate(links) if spec is not PROMOTED]
        # an empty list is named by its chain's last link before the newest items
        lead = links[organic[0]] if organic else [
            spec for spec in query.chain if spec is not NEW_ITEMS][-1]
        origin = items[organic[0]]["reason"] if organic else lead.reason
        if note is not None:
            note.update(origin=origin, reply=reply, chain=chain, section=(first, end))
        body: ListBody = {
            "recommendation_id": new_recommendation_id(query.context, origin),
            "source": lead.source,
            "model_version": version if isinstance(version, str) else "none",
            "context": query.context,
            "items": items,
        }
        if query.merch is not None and query.merch.explain:
            body["trace"] = trace_of(reply, at, [
                *(link_name("promoted", pid) for pid in promo.ids),
                *(link_name(spec.kind) for spec in query.chain)])
        return body
