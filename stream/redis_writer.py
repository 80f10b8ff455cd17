"""The only code that writes streamrec's derived state into Redis.

Counted effects of an event (popularity, trending, co-occurrence, per-item counts) are
applied by one Lua script per batch that first records the event (its id within its
namespace, ``core.redis_keys.seen_member``) in a per-hour seen set: the check and the
increments are atomic, so at-least-once delivery, crashes and replays never count an
event twice. The same script applies the state bounds (``stream.bounds``): catalog
gates, the newcomer budget, capped sets, and the trims of popular, trending and
co-occurrence.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import redis.asyncio as aioredis

from core.redis_keys import RedisKeys
from core.scored_lists import parse_scored_json
from recommender.blend_many import ScoredList
from schemas import CatalogRecord
from stream.bounds import StateBounds
from stream.catalog_columns import Columns
from stream.row_lists import decode_rows
from stream.status_writer import PipelineStatusWriter
from stream.write_scripts import APPLY_EVENTS, WRITE_LISTS

#: One Redis command as a flat list: ["ZINCRBY", key, incr, member], ...
Op = list[Any]

_READ_LISTS = """
-- KEYS = sorted-set keys, then string keys; ARGV[1] = last rank to read (depth - 1),
-- ARGV[2] = how many of KEYS are sorted sets. Returns one reply per key: the set's head
-- as a flat [member, score, ...] array, or the string ('' when missing: a nil would cut
-- the Lua array short).
local last = tonumber(ARGV[1])
local n_sets = tonumber(ARGV[2])
local out = {}
for i, key in ipairs(KEYS) do
  if i <= n_sets then
    out[i] = redis.call('ZREVRANGE', key, 0, last, 'WITHSCORES')
  else
    out[i] = redis.call('GET', key) or ''
  end
end
return out
"""

#: Keys per list-reading script call: each call blocks Redis while it runs (≈ a few µs
#: per key); the calls of one batch still share one round trip.
READ_CHUNK_KEYS = 200

#: Events per Lua call: a script blocks Redis while it runs (~80 µs per event of the
#: burst bench: 250 events keep an API read waiting behind one at most ~20 ms), and under
#: backlog a step carries thousands of events; the chunks still share one round trip.
LUA_CHUNK_EVENTS = 250

_REBASE_TRENDING = """
-- KEYS[1] = trending zset, KEYS[2] = t0 key; ARGV[1] = new t0; ARGV[2] = factor
local cur = redis.call('GET', KEYS[2])
if cur and tonumber(cur) >= tonumber(ARGV[1]) then return 0 end
local f = tonumber(ARGV[2])
local all = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #all, 2 do
  redis.call('ZADD', KEYS[1], tonumber(all[i + 1]) * f, all[i])
end
redis.call('SET', KEYS[2], ARGV[1])
return #all / 2
"""


@dataclass
class EventOps:
    """The Redis effects of one event (see ``stream.write_scripts.APPLY_EVENTS``)."""

    #: The event's dedupe-set member (``core.redis_keys.seen_member``).
    event_id: str
    hour: int
    guarded: list[Op] = field(default_factory=list)
    always: list[Op] = field(default_factory=list)
    #: ``[key, cap, ttl_s, weight, gate item or False]`` of the item's newcomer budget.
    budget: list[Any] | None = None
    #: Sorted sets to trim after the batch → members to keep.
    trims: dict[str, int] = field(default_factory=dict)


def dumps_list(version: str, ids: Sequence[str], scores: Sequence[float] | np.ndarray,
               *, ts: float | None = None, reasons: Sequence[str] | None = None) -> bytes:
    """Serialise a prepared list the way the API reads it.

    ``reasons`` (one per item) adds a third element to each ``[id, score]`` pair: which
    source put the item there (the blended lists); readers take the first two.
    """
    # One vectorised rounding + tolist() instead of float()/round() per item: this was
    # ~15 % of the worker's time at full speed (100 items per refolded user).
    rounded = np.round(np.asarray(scores, dtype=np.float64), 6).tolist()
    if len(rounded) != len(ids):
        raise ValueError("ids and scores differ in length")
    items: list[Any]
    if reasons is None:
        items = list(zip(ids, rounded, strict=True))
    else:
        items = list(zip(ids, rounded, reasons, strict=True))
    body: dict[str, Any] = {"v": version, "items": items}
    if ts is not None:
        body["ts"] = round(ts, 3)
    return orjson.dumps(body)


@dataclass(frozen=True)
class BlendInputs:
    """The stored blend's Redis-side candidates for one batch (see ``blend_inputs``)."""

    cooc: dict[str, list[tuple[str, float]]]
    similar: dict[str, ScoredList]
    trending: list[tuple[str, float]]
    popular: list[tuple[str, float]]


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _zpairs(reply: Any) -> list[tuple[str, float]]:
    return [(_text(m), float(s)) for m, s in reply or ()]


def _flat_zpairs(reply: Any) -> list[tuple[str, float]]:
    """``(member, score)`` pairs of a flat ``ZREVRANGE … WITHSCORES`` reply from Lua."""
    flat = reply or []
    members = flat[::2]
    if members and isinstance(members[0], bytes):
        members = [m.decode() for m in members]
    return list(zip(members, map(float, flat[1::2]), strict=True))


class RedisWriter(PipelineStatusWriter):
    """Writes lists, counters, catalog state and model artefacts."""

    def __init__(self, client: aioredis.Redis, keys: RedisKeys, *, dedupe_ttl_s: int,
                 bounds: StateBounds | None = None) -> None:
        self.r = client
        self.keys = keys
        self.dedupe_ttl_s = dedupe_ttl_s
        self.bounds = bounds or StateBounds()
        #: Events applied since the last :meth:`take_counts` whose item the catalog lacked
        #: (``uncatalogued``) or whose weight the newcomer budget cut (``budget_cut``).
        self.counts: Counter[str] = Counter()
        self._meta = orjson.dumps(list(keys.split("item_meta")))
        self._apply = client.register_script(APPLY_EVENTS)
        self._write_lists = client.register_script(WRITE_LISTS)
        self._rebase = client.register_script(_REBASE_TRENDING)
        self._read_lists = client.register_script(_READ_LISTS)
        self._columns = Columns(client, keys)

    async def _queue_event_ops(self, pipe: Any, ops: Sequence[EventOps], *,
                         count_applied: bool) -> int:
        """Queue the counted effects on ``pipe`` in bounded Lua calls; how many calls."""
        calls = 0
        for start in range(0, len(ops), LUA_CHUNK_EVENTS):
            chunk = ops[start:start + LUA_CHUNK_EVENTS]
            # cjson decodes [] as an empty table either way; {} keeps it unambiguous.
            payload: list[dict[str, Any]] = []
            trims: dict[str, int] = {}
            for o in chunk:
                item: dict[str, Any] = {"id": o.event_id, "s": self.keys.seen(o.hour),
                                        "g": o.guarded or {}, "a": o.always or {}}
                if o.budget:
                    item["b"] = o.budget
                payload.append(item)
                trims.update(o.trims)
            args: list[Any] = [self.dedupe_ttl_s, orjson.dumps(payload),
                               self.keys.stats if count_applied else "", self._meta,
                               orjson.dumps([[k, n] for k, n in trims.items()] or {})]
            await self._apply(args=args, client=pipe)  # queued; runs at execute()
            calls += 1
        if calls:  # the age of popular and trending in explain traces (api.explain)
            pipe.hset(self.keys.stats, "counted_at", repr(time.time()))
        return calls

    async def apply_event_ops(self, ops: Sequence[EventOps]) -> int:
        """Apply counted effects once per event id; returns how many events were new."""
        if not ops:
            return 0
        pipe = self.r.pipeline(transaction=False)
        calls = await self._queue_event_ops(pipe, ops, count_applied=False)
        return self._applied((await pipe.execute())[:calls])

    async def write_batch(
        self,
        ops: Sequence[EventOps],
        recs: Iterable[tuple[str, bytes]],
        recents: Iterable[tuple[str, bytes]],
        *,
        processed: int | None = None,
        anonymous: Collection[str] = (),
        deferred: Sequence[str] = (),
        done: Collection[str] = (),
    ) -> int:
        """A whole stream batch in one round trip: counted effects, lists, counters, and
        the entities whose list starts (``deferred``) or stops (``done``) waiting.

        ``processed`` (None for rebuild replays, which must not move the live counters)
        is added to the ``processed`` counter, and the newly applied events to
        ``applied``. Returns how many events were new. Lists do not read the counted
        effects, so sending them in the same pipeline changes no result.

        Lists expire: those of entities with a new recent list (``recents``) live
        ``bounds.ttl_s`` from now (shorter for the ``anonymous`` ones); a personal list
        rewritten without one (the post-swap sweep) keeps its recent list's lifetime.
        """
        pipe = self.r.pipeline(transaction=False)
        calls = await self._queue_event_ops(pipe, ops, count_applied=processed is not None)
        await self._queue_lists(pipe, recs, recents, anonymous)
        if deferred:
            pipe.zadd(self.keys.relist_pending, dict.fromkeys(deferred, time.time()), nx=True)
        if done:
            pipe.zrem(self.keys.relist_pending, *done)
        if processed:
            pipe.hincrby(self.keys.stats, "processed", processed)
        results = await pipe.execute()
        return self._applied(results[:calls])

    def _applied(self, replies: Sequence[Any]) -> int:
        """Events applied by the apply-script calls' replies; the rest go to ``counts``."""
        applied = 0
        for reply in replies:
            applied += int(reply[0])
            self.counts["uncatalogued"] += int(reply[1])
            self.counts["budget_cut"] += int(reply[2])
        return applied

    def take_counts(self) -> Counter[str]:
        """The counts since the last call (the worker exports them as metrics)."""
        counts, self.counts = self.counts, Counter()
        return counts

    async def _queue_lists(self, pipe: Any, recs: Iterable[tuple[str, bytes]],
                     recents: Iterable[tuple[str, bytes]], anonymous: Collection[str]) -> None:
        """Queue the list writes of a batch: one script call (one command, as the single
        MSET it replaced: per-command client overhead was ~10 % of the worker's CPU with
        two SETs per refreshed entity), each list with its lifetime (``WRITE_LISTS``)."""
        b = self.keys
        keys: list[str] = []
        values: list[bytes] = []
        lives: list[str] = []
        refs: dict[str, int] = {}
        fresh = dict(recents)
        for entity, body in fresh.items():
            keys.append(b.user_recent(entity))
            values.append(body)
            lives.append(str(1000 * self.bounds.ttl_s(entity in anonymous)))
        for entity, body in recs:
            keys.append(b.user_recs(entity))
            values.append(body)
            if entity in fresh:
                lives.append(str(1000 * self.bounds.ttl_s(entity in anonymous)))
            else:
                refs.setdefault(b.user_recent(entity), 0)
                lives.append(b.user_recent(entity))
        if not keys:
            return
        n = len(keys)
        ref_keys = list(refs)
        at = {key: n + 1 + j for j, key in enumerate(ref_keys)}
        lives = [life if life[0].isdigit() else f"@{at[life]}" for life in lives]
        await self._write_lists(keys=[*keys, *ref_keys],
                                args=[n, *values, *lives, 1000 * self.bounds.entity_ttl_s],
                                client=pipe)

    async def blend_inputs(self, cooc_items: Sequence[str], similar_items: Sequence[str],
                           depth: int, *, version: str | None = None) -> BlendInputs:
        """Everything the stored blend needs besides the fold-in, in one round trip:
        the co-occurrence head of each ``cooc_items``, the model neighbour list of each
        ``similar_items`` and the heads of ``trending`` and ``popular``.

        The per-item reads go through a read-only script in chunks of
        :data:`READ_CHUNK_KEYS` keys: one command per item (three per refreshed entity)
        cost more client CPU than everything else Redis-related in a batch. With
        ``version`` (the worker's model) the neighbour lists come as model rows from that
        version's binary copy (``stream.row_lists``: no JSON decoding, no id coding);
        items it lacks (a model published before it existed, a version just dropped)
        are read as JSON in a second round trip."""
        keys = [self.keys.item_cooc(i) for i in cooc_items]
        n_cooc = len(cooc_items)
        json_items = list(similar_items) if version is None else []
        keys += [self.keys.item_similar(i) for i in json_items]
        pipe = self.r.pipeline(transaction=False)
        pipe.zrevrange(self.keys.trending, 0, depth - 1, withscores=True)
        pipe.zrevrange(self.keys.popular, 0, depth - 1, withscores=True)
        for start in range(0, len(keys), READ_CHUNK_KEYS):
            chunk = keys[start:start + READ_CHUNK_KEYS]
            n_sets = max(0, min(len(chunk), n_cooc - start))
            await self._read_lists(keys=chunk, args=[depth - 1, n_sets], client=pipe)
        n_chunks = -(-len(keys) // READ_CHUNK_KEYS)
        if version is not None:
            rows_key = self.keys.model_similar_rows(version)
            for start in range(0, len(similar_items), READ_CHUNK_KEYS):
                pipe.hmget(rows_key, list(similar_items[start:start + READ_CHUNK_KEYS]))
        trending, popular, *rest = await pipe.execute()
        replies = [r for chunk in rest[:n_chunks] for r in chunk]
        cooc = {item: _flat_zpairs(r) for item, r in zip(cooc_items, replies[:n_cooc],
                                                          strict=True)}
        similar: dict[str, ScoredList] = {
            item: parse_scored_json(r)[:depth]
            for item, r in zip(json_items, replies[n_cooc:], strict=True)}
        if version is not None:
            binary = [r for chunk in rest[n_chunks:] for r in chunk]
            missing = []
            for item, raw in zip(similar_items, binary, strict=True):
                if raw is None:
                    missing.append(item)
                else:
                    similar[item] = decode_rows(raw, depth)
            if missing:
                similar.update((await self.blend_inputs((), missing, depth)).similar)
        return BlendInputs(cooc, similar, _zpairs(trending), _zpairs(popular))

    async def trending_epoch(self, first_ts: float) -> float:
        """The trending reference time, set from the first event ever seen."""
        await self.r.set(self.keys.trending_epoch, repr(float(int(first_ts))), nx=True)
        raw = await self.r.get(self.keys.trending_epoch)
        return float(raw) if raw is not None else float(int(first_ts))

    async def rebase_trending(self, new_t0: float, factor: float) -> int:
        """Rescale all trending scores to a later reference time (keeps them finite)."""
        return int(
            await self._rebase(
                keys=[self.keys.trending, self.keys.trending_epoch],
                args=[repr(float(new_t0)), repr(float(factor))],
            )
        )

    async def apply_catalog(self, records: Sequence[CatalogRecord]) -> None:
        """Mirror catalog state and stock; the last record per item wins."""
        pipe = self.r.pipeline(transaction=False)
        await self._columns.queue(pipe, records)  # category/price columns and sets
        for rec in records:
            key = self.keys.item_meta(rec.item_id)
            if rec.deleted:
                pipe.delete(key)
                pipe.hset(key, mapping={"deleted": "1", "in_stock": "0",
                                        "updated_at": repr(rec.updated_at)})
                pipe.sadd(self.keys.deleted, rec.item_id)
                pipe.sadd(self.keys.unavailable, rec.item_id)
                continue
            mapping: dict[Any, Any] = {
                "in_stock": "1" if rec.in_stock else "0",
                "deleted": "0",
                "properties": orjson.dumps(rec.properties).decode(),
                "updated_at": repr(rec.updated_at),
            }
            for name in ("name", "currency", "category"):
                value = getattr(rec, name)
                if value is not None:
                    mapping[name] = value
            if rec.price is not None:
                mapping["price"] = repr(float(rec.price))
            pipe.delete(key)
            pipe.hset(key, mapping=mapping)
            pipe.srem(self.keys.deleted, rec.item_id)
            if rec.in_stock:
                pipe.srem(self.keys.unavailable, rec.item_id)
            else:
                pipe.sadd(self.keys.unavailable, rec.item_id)
        await pipe.execute()

    async def waiting_lists(self) -> list[str]:
        """Every entity whose list waits (``RedisKeys.relist_pending``), oldest first."""
        return [_text(e) for e in await self.r.zrange(self.keys.relist_pending, 0, -1)]

    async def recent_lists(self, entities: Sequence[str]) -> list[bytes | None]:
        """The stored recent-item lists of ``entities`` (None where missing)."""
        if not entities:
            return []
        values = await self.r.mget([self.keys.user_recent(e) for e in entities])
        return [v.encode() if isinstance(v, str) else v for v in values]


def hour_of(ts: float) -> int:
    """Event-time hour bucket of a timestamp (dedupe sets are per hour)."""
    return int(ts // 3600)


def now() -> float:
    """Wall-clock time (one place, so tests can reason about it)."""
    return time.time()
