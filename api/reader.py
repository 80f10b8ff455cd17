"""Recommendation lists read from Redis: fallback chain, filters, metadata, blend.

One request costs about two round trips, both pipelined: the first reads every list the
chain may need (plus the model version and the user's purchases); the second checks the
overfetched candidates against ``items:unavailable`` and reads their catalog hashes.
Only when filtering leaves fewer than ``n`` does it read more (the session's
co-occurrence lists, further pages of a sorted set) — the chain tops the list up until
``n`` items or until every source is exhausted. When Redis fails, the answer comes from
:class:`api.snapshot.FallbackSnapshot` instead: never a 5xx.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from api.metrics import Metrics
from api.ranking import (
    POPULAR_CHAIN,
    SESSION_ITEMS,
    ItemMeta,
    Normalizer,
    Scored,
    SourceSpec,
    blend_score,
    decay_factor,
    merge_summed,
    parse_meta,
    parse_recent,
    parse_scored_json,
    servable,
    zset_pairs,
)
from api.snapshot import FallbackSnapshot
from schemas import RecommendationItem, RecommendationList, Source
from streamrec.redis_keys import RedisKeys
from streamrec.security import redis_options
from streamrec.settings import Settings

log = logging.getLogger("streamrec.api")

#: Candidates checked per missing item in one round (filters drop some).
OVERFETCH = 3
#: Most candidate-checking round trips per request.
MAX_CHECK_ROUNDS = 4
#: Whole-request budget for Redis before serving the fallback snapshot.
READ_TIMEOUT_S = 2.0
#: After a Redis failure, serve the snapshot without trying Redis for this long.
BREAKER_S = 1.0
#: Items kept in the fallback snapshot.
SNAPSHOT_SIZE = 200

#: (offset) -> (next pairs, more may follow)
Loader = Callable[[int], Awaitable[tuple[list[Scored], bool]]]


def connect_redis(settings: Settings) -> Redis:
    """The API's Redis pool: short timeouts and one quick retry, so outages fail fast."""
    return Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        encoding_errors="replace",
        socket_timeout=1.0,
        socket_connect_timeout=0.5,
        retry=Retry(ExponentialBackoff(cap=0.05, base=0.01), 1),
        health_check_interval=30,
        **redis_options(settings),
    )


@dataclass(frozen=True)
class ListQuery:
    """What a recommendation endpoint asks the reader for."""

    chain: tuple[SourceSpec, ...]
    n: int
    entity: str | None = None  # user/anonymous id: personal sources and purchases
    anchor: str | None = None  # item the similar sources start from; never returned
    exclude: frozenset[str] = field(default_factory=frozenset)
    blend: bool = True  # False: report raw scores (single-source lists)


class _Candidates:
    """One chain link's candidates, consumed best first, loading more on demand."""

    def __init__(self, spec: SourceSpec, band: int, pairs: list[Scored],
                 loader: Loader | None, *, blend: bool) -> None:
        self.spec = spec
        self._band = band
        self._blend = blend
        self._pairs: list[Scored] = []
        self._norm: Normalizer | None = None
        self._loader = loader
        self._cursor = 0
        self._ceiling = math.inf
        self._add(pairs)

    def _add(self, pairs: list[Scored]) -> None:
        if pairs and self._norm is None:
            self._norm = Normalizer([score for _, score in pairs])
        self._pairs.extend(pairs)

    async def next(self) -> tuple[str, float] | None:
        """The next candidate as ``(item_id, final score)``, or None when exhausted."""
        while self._cursor >= len(self._pairs):
            loader, self._loader = self._loader, None
            if loader is None:
                return None
            pairs, more = await loader(len(self._pairs))
            self._add(pairs)
            if more and pairs:
                self._loader = loader
        position = self._cursor
        item_id, raw = self._pairs[position]
        self._cursor += 1
        # A sorted set can change between two pages: never let a later page climb.
        raw = self._ceiling = min(raw, self._ceiling)
        if not self._blend:
            return item_id, raw
        assert self._norm is not None
        return item_id, blend_score(self._band, self._norm(raw), position)


def _ok(result: Any) -> Any:
    """A pipeline result, or None if that command failed (wrong type, ...)."""
    if isinstance(result, Exception):
        log.warning("redis command failed while serving: %s", result)
        return None
    return result


class Reader:
    """Serves recommendation lists from the prepared data the worker keeps in Redis."""

    def __init__(self, redis: Redis, settings: Settings, metrics: Metrics) -> None:
        self._redis = redis
        self._settings = settings
        self._metrics = metrics
        self._keys = RedisKeys()
        self._down_until = 0.0
        self.snapshot = FallbackSnapshot(self._snapshot_list)

    async def _snapshot_list(self) -> RecommendationList:
        return await self.read(ListQuery(POPULAR_CHAIN, n=SNAPSHOT_SIZE, blend=False))

    async def recommend(self, query: ListQuery) -> RecommendationList:
        """The list for ``query``; the fallback snapshot when Redis fails."""
        if time.monotonic() >= self._down_until:
            try:
                async with asyncio.timeout(READ_TIMEOUT_S):
                    result = await self.read(query)
            except (RedisError, OSError, TimeoutError) as exc:
                log.warning("Redis unavailable, serving the fallback snapshot: %r", exc)
                self._down_until = time.monotonic() + BREAKER_S
            except Exception:
                # Serving never answers 5xx: data no reader expected still gets a list.
                log.exception("reading %s failed; serving the fallback snapshot", query)
            else:
                self._metrics.lists_served.labels(result.source).inc()
                return result
        self._metrics.redis_fallbacks.inc()
        self._metrics.lists_served.labels("fallback").inc()
        blocked = query.exclude | ({query.anchor} if query.anchor else set())
        return self.snapshot.serve(query.n, blocked=frozenset(blocked))

    async def ping(self) -> bool:
        """True when Redis answers PING now."""
        try:
            async with asyncio.timeout(1.0):
                return bool(await self._redis.ping())
        except (RedisError, OSError, TimeoutError):
            return False

    # -- reading ------------------------------------------------------------------------
    async def read(self, query: ListQuery) -> RecommendationList:
        """Build the list from Redis (raises ``RedisError`` when Redis fails)."""
        k = self._keys
        page = OVERFETCH * query.n + len(query.exclude) + 20
        # MULTI only for trending: its scores and t0 are rebased together by the worker.
        atomic = any(spec.kind == "trending" for spec in query.chain)
        pipe = self._redis.pipeline(transaction=atomic)
        pipe.get(k.model_current)
        if query.entity:
            pipe.smembers(k.user_bought(query.entity))
        counts = [self._queue(pipe, spec, query, page) for spec in query.chain]
        results = await pipe.execute(raise_on_error=False)

        model_version = _ok(results[0]) or "none"
        offset = 1
        bought: set[str] = set()
        if query.entity:
            bought = set(_ok(results[1]) or ())
            offset = 2
        sources = []
        for index, (spec, count) in enumerate(zip(query.chain, counts, strict=True)):
            chunk = [_ok(r) for r in results[offset:offset + count]]
            offset += count
            band = len(query.chain) - 1 - index
            sources.append(self._candidates(spec, band, chunk, query, page))

        blocked = set(query.exclude) | bought
        if query.anchor:
            blocked.add(query.anchor)
        items = await self._fill(sources, blocked, query.n)
        # Reasons are copied from SourceSpec.reason, so they are Source values.
        source = cast(Source, items[0].reason) if items else query.chain[-1].reason
        return RecommendationList(
            recommendation_id=uuid.uuid4().hex,
            source=source,
            model_version=str(model_version),
            items=items,
        )

    def _queue(self, pipe: Any, spec: SourceSpec, query: ListQuery, page: int) -> int:
        """Queue this link's first reads; returns how many commands were queued."""
        k = self._keys
        if spec.kind == "user_recs" and query.entity:
            pipe.get(k.user_recs(query.entity))
            return 1
        if spec.kind == "session" and query.entity:
            pipe.get(k.user_recent(query.entity))
            return 1
        if spec.kind == "item_similar" and query.anchor:
            pipe.get(k.item_similar(query.anchor))
            return 1
        if spec.kind == "item_cooc" and query.anchor:
            pipe.zrevrange(k.item_cooc(query.anchor), 0, page - 1, withscores=True)
            return 1
        if spec.kind == "popular":
            pipe.zrevrange(k.popular, 0, page - 1, withscores=True)
            return 1
        if spec.kind == "trending":
            pipe.zrevrange(k.trending, 0, page - 1, withscores=True)
            pipe.get(k.trending_epoch)
            return 2
        return 0

    def _candidates(self, spec: SourceSpec, band: int, chunk: list[Any], query: ListQuery,
                    page: int) -> _Candidates:
        k = self._keys
        pairs: list[Scored] = []
        loader: Loader | None = None
        if not chunk:
            pass
        elif spec.kind in ("user_recs", "item_similar"):
            pairs = parse_scored_json(chunk[0])
        elif spec.kind == "session":
            recent = parse_recent(chunk[0], SESSION_ITEMS)
            if recent:
                loader = self._session_loader(recent, page)
        elif spec.kind in ("item_cooc", "popular", "trending"):
            key = {
                "item_cooc": k.item_cooc(query.anchor or ""),
                "popular": k.popular,
                "trending": k.trending,
            }[spec.kind]
            scale = 1.0
            if spec.kind == "trending":
                scale = decay_factor(time.time(), chunk[1], self._settings.trending_half_life_s)
            pairs = [(i, s * scale) for i, s in zset_pairs(chunk[0])]
            if len(pairs) >= page:
                loader = self._zset_loader(key, page, scale)
        return _Candidates(spec, band, pairs, loader, blend=query.blend)

    def _zset_loader(self, key: str, page: int, scale: float) -> Loader:
        async def load(offset: int) -> tuple[list[Scored], bool]:
            raw = await self._redis.zrevrange(key, offset, offset + page - 1, withscores=True)
            pairs = [(i, s * scale) for i, s in zset_pairs(raw)]
            return pairs, len(pairs) >= page

        return load

    def _session_loader(self, recent: list[str], page: int) -> Loader:
        async def load(offset: int) -> tuple[list[Scored], bool]:
            pipe = self._redis.pipeline(transaction=False)
            for item in recent:
                pipe.zrevrange(self._keys.item_cooc(item), 0, page - 1, withscores=True)
            lists = [zset_pairs(_ok(r)) for r in await pipe.execute(raise_on_error=False)]
            return merge_summed(lists), False

        return load

    async def _fill(self, sources: list[_Candidates], blocked: set[str],
                    n: int) -> list[RecommendationItem]:
        """Walk the chain in order, checking candidates in batches, until ``n`` pass."""
        chosen: list[RecommendationItem] = []
        si = 0
        for _ in range(MAX_CHECK_ROUNDS):
            if len(chosen) >= n or si >= len(sources):
                break
            want = OVERFETCH * (n - len(chosen))
            batch: list[tuple[str, float, str]] = []
            while len(batch) < want and si < len(sources):
                got = await sources[si].next()
                if got is None:
                    si += 1
                    continue
                item_id, score = got
                if item_id in blocked:
                    continue
                blocked.add(item_id)
                batch.append((item_id, score, sources[si].spec.reason))
            if not batch:
                break
            checks = await self._check([item_id for item_id, _, _ in batch])
            for (item_id, score, reason), (meta, unavailable) in zip(batch, checks, strict=True):
                if not servable(meta, unavailable=unavailable,
                                require_catalog=self._settings.require_catalog):
                    continue
                chosen.append(RecommendationItem(
                    item_id=item_id, score=score, reason=reason, name=meta.name,
                    price=meta.price, currency=meta.currency, category=meta.category,
                    in_stock=True,
                ))
                if len(chosen) >= n:
                    break
        return chosen

    async def _check(self, ids: list[str]) -> list[tuple[ItemMeta, bool]]:
        """One round trip: stock/deletion flags and catalog hashes of every candidate."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.smismember(self._keys.unavailable, ids)
        for item_id in ids:
            pipe.hgetall(self._keys.item_meta(item_id))
        results = await pipe.execute(raise_on_error=False)
        flags = _ok(results[0]) or [0] * len(ids)
        return [
            (parse_meta(_ok(raw)), bool(flag))
            for raw, flag in zip(results[1:], flags, strict=True)
        ]
