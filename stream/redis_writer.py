"""The only code that writes streamrec's derived state into Redis.

Counted effects of an event (popularity, trending, co-occurrence, per-item counts) are
applied per hash slot (:mod:`stream.slot_apply`): one Lua call per slot records the
event (its id within its namespace, ``core.redis_keys.seen_member``) in that slot's
per-hour seen set and applies its guarded increments there, atomically, so at-least-once
delivery, crashes and replays never count an event twice in any slot. The same script
applies the state bounds (``stream.bounds``): catalog gates, the newcomer budget, capped
sets, and the trims of popular, trending and co-occurrence. Every call touches one slot,
so the same code runs on one Redis and on a Redis Cluster.
"""

from __future__ import annotations

import math
import time
import uuid
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import redis.asyncio as aioredis

from core.redis_client import (
    Call,
    Lua,
    command,
    get_many,
    run_batch,
    touched_keys,
    wait_replicated,
)
from core.redis_keys import RedisKeys, tag_of
from core.scored_lists import parse_scored_json
from recommender.blend_many import ScoredList
from recommender.trending import FORGET_BELOW
from schemas import CatalogRecord
from stream import slot_apply
from stream.bounds import StateBounds
from stream.catalog_columns import Columns
from stream.list_writes import ListWrites, Written, listed_at
from stream.row_lists import decode_rows
from stream.status_writer import PipelineStatusWriter
from stream.write_scripts import READ_LISTS, REBASE_TRENDING

#: One Redis command as a flat list: ["ZINCRBY", key, incr, member], ...
Op = list[Any]

#: Keys per list-reading script call: each call blocks Redis while it runs (≈ a few µs
#: per key); the calls of one batch still share one round trip.
READ_CHUNK_KEYS = 200


@dataclass(slots=True)
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
    #: The event's item (the catalog gate counts events whose item it lacks).
    item: str | None = None
    #: A forwarded copy (:func:`stream.item_ops.event_ops`): always-ops only; it neither
    #: claims nor checks the event's seen member and counts for no gate.
    copy: bool = False


#: Decimals of a stored list's scores (the serve script reads them as they are).
_DECIMALS = 6
_SCALE = 10.0 ** _DECIMALS


def dumps_list(version: str, ids: Sequence[str], scores: Sequence[float] | np.ndarray,
               *, ts: float | None = None, reasons: Sequence[str] | None = None) -> bytes:
    """Serialise a prepared list the way the API reads it.

    ``reasons`` (one per item) adds a third element to each ``[id, score]`` pair: which
    source put the item there (the blended lists); readers take the first two.
    """
    # One vectorised rounding + tolist() instead of float()/round() per item: this was
    # ~15 % of the worker's time at full speed (100 items per refolded user).
    rounded = np.round(np.asarray(scores, dtype=np.float64), _DECIMALS).tolist()
    if len(rounded) != len(ids):
        raise ValueError("ids and scores differ in length")
    items: list[Any]
    if reasons is None:
        items = list(zip(ids, rounded, strict=True))
    else:
        items = list(zip(ids, rounded, reasons, strict=True))
    return _dumps_items(version, items, ts)


def dumps_list_block(version: str, ids: list[list[str]], scores: np.ndarray, *,
                     ts: float | None = None) -> list[bytes]:
    """:func:`dumps_list` of many lists of one length at once (``scores``: ``(m, n)``),
    rounded in one go: the retrain writes 20,000 similar lists."""
    rounded = np.round(np.asarray(scores, dtype=np.float64), _DECIMALS).tolist()
    if len(rounded) != len(ids):
        raise ValueError("ids and scores differ in length")
    return [_dumps_items(version, list(zip(row_ids, row, strict=True)), ts)
            for row_ids, row in zip(ids, rounded, strict=True)]


def dumps_rounded(version: str, items: list[Any], *, ts: float | None = None) -> bytes:
    """:func:`dumps_list` of ``[id, score, reason]`` entries rounded already (stored
    ones, or by :func:`round_entries`: ``recommender.blend_quick.quick_entries``)."""
    return _dumps_items(version, items, ts)


def round_entries(entries: Sequence[list[Any]]) -> None:
    """Round the scores (``entry[1]``) of ``[id, score, ...]`` entries in place to what
    :func:`dumps_list` writes for them: ``np.round(score, 6)`` is ``rint(score · 1e6) /
    1e6``, and so is this, bit for bit, with Python's round-half-even (the sign of a zero
    and non-finite values included): a numpy call cost more for a list's few new scores."""
    for entry in entries:
        scaled = entry[1] * _SCALE
        if not math.isfinite(scaled):
            entry[1] = scaled / _SCALE
            continue
        rounded = round(scaled) / _SCALE
        entry[1] = rounded if rounded else math.copysign(0.0, scaled)


def _dumps_items(version: str, items: list[Any], ts: float | None) -> bytes:
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


def _flat_zpairs(reply: Any) -> list[tuple[str, float]]:
    """``(member, score)`` pairs of a ``ZREVRANGE … WITHSCORES`` reply: flat from Lua,
    already paired by redis-py's reply parsing."""
    flat = reply or []
    if flat and isinstance(flat[0], list | tuple):
        return [(_text(m), float(score)) for m, score in flat]
    members = flat[::2]
    if members and isinstance(members[0], bytes):
        members = [m.decode() for m in members]
    return list(zip(members, map(float, flat[1::2]), strict=True))


class RedisWriter(PipelineStatusWriter):
    """Writes lists, counters, catalog state and model artefacts."""

    def __init__(self, client: aioredis.Redis, keys: RedisKeys, *, dedupe_ttl_s: int,
                 bounds: StateBounds | None = None, replay: bool = False,
                 split_slots: bool | None = None) -> None:
        self.r = client
        self.keys = keys
        self.dedupe_ttl_s = dedupe_ttl_s
        self.bounds = bounds or StateBounds()
        #: Events applied since the last :meth:`take_counts` whose item the catalog lacked
        #: (``uncatalogued``) or whose weight the newcomer budget cut (``budget_cut``).
        self.counts: Counter[str] = Counter()
        #: Who this writer is to the outbox (``stream.slot_apply``).
        self.writer_id = uuid.uuid4().hex
        #: The markers of the last batch's outbox entries, dropped with the next batch.
        self._markers: list[Call] = []
        self._rebase = Lua(REBASE_TRENDING)
        self._read_lists = Lua(READ_LISTS)
        self._columns = Columns(keys, self.bounds.ranked_items_max)
        #: Counted effects split by slot (``stream.slot_apply``): on a Redis Cluster,
        #: unless ``split_slots`` says otherwise (tests compare both on one Redis).
        self._split = (isinstance(client, aioredis.RedisCluster) if split_slots is None
                       else split_slots)
        self._lists = ListWrites(keys, self.bounds, split=self._split, replay=replay)

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
    ) -> Written:
        """A whole stream batch in two round trips: the lists, the shared slot's counted
        effects and the entities whose list starts (``deferred``) or stops (``done``)
        waiting, then the other slots' counted effects (:mod:`stream.slot_apply`); then
        the ``processed`` counter, so that a reader who sees it has every effect of those
        events in Redis.

        ``processed`` (None for rebuild replays, which must not move the live counters)
        is added to the ``processed`` counter, and the newly applied events to
        ``applied``. Returns how many events were new, and when the lists were written.
        Lists do not read the counted effects, so they go first: Redis runs a pipeline in
        order, and they were written ~15 ms after it was sent behind a held batch's.

        Lists expire: those of entities with a new recent list (``recents``) live
        ``bounds.ttl_s`` from now (shorter for the ``anonymous`` ones); a personal list
        rewritten without one (the post-swap sweep) keeps its recent list's lifetime.
        """
        ttl = self.dedupe_ttl_s
        split = slot_apply.plan(ops, self.keys, gate=self.bounds.require_catalog,
                                split=self._split)
        first = slot_apply.shared_calls(split, self.keys, ttl=ttl, owner=self.writer_id,
                                        count_applied=processed is not None)
        extra, written = self._lists.calls(recs, recents, anonymous)
        waits = self._waiting_calls(deferred, done)
        replies = await run_batch(self.r, [*extra, *first, *waits])
        self._lists.note(written, replies[:len(extra)])
        touched = touched_keys([*extra, *first, *waits])
        shared = slot_apply.read_shared(split, replies[len(extra):len(extra) + len(first)])
        self.counts.update(shared.counts)
        second, cleanup = slot_apply.other_calls(split, self.keys, shared, ttl=ttl)
        await run_batch(self.r, [*self._markers, *second])
        touched += touched_keys(second)
        # Last: the outbox entries go, and whoever reads ``processed`` then sees every
        # effect of those events applied.
        last = cleanup.first()
        if ops:  # the age of popular and trending in explain traces (api.explain)
            last.append(command("HSET", self.keys.stats, "counted_at", repr(time.time())))
        if processed:
            last.append(command("HINCRBY", self.keys.stats, "processed", processed))
        await run_batch(self.r, last)
        self._markers = cleanup.second()
        # On a cluster with replicas: the batch survives a master failover before its
        # offsets are committed (a failed wait fails the batch, which is applied again).
        await wait_replicated(self.r, touched, self.keys)
        return Written(shared.applied, listed_at(replies[:len(extra)]))

    def _waiting_calls(self, deferred: Sequence[str], done: Collection[str]) -> list[Call]:
        """Entities whose list starts waiting (kept at the first time) or stops waiting
        (``RedisKeys.relist_pending``, in the shared slot)."""
        calls = []
        if deferred:
            now = repr(time.time())
            calls.append(command("ZADD", self.keys.relist_pending, "NX",
                                 *(x for e in dict.fromkeys(deferred) for x in (now, e))))
        if done:
            calls.append(command("ZREM", self.keys.relist_pending, *done))
        return calls

    def take_counts(self) -> Counter[str]:
        """The counts since the last call (the worker exports them as metrics)."""
        counts, self.counts = self.counts, Counter()
        return counts

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
        json_items = list(similar_items) if version is None else []
        wanted = ([("z", i, self.keys.item_cooc(i)) for i in cooc_items]
                  + [("s", i, self.keys.item_similar(i)) for i in json_items])
        calls = [command("ZREVRANGE", self.keys.trending, 0, depth - 1, "WITHSCORES"),
                 command("ZREVRANGE", self.keys.popular, 0, depth - 1, "WITHSCORES")]
        order: list[tuple[str, str]] = []
        # A call reads one slot's keys on a cluster; on one Redis any keys (one call per
        # item bucket was ~250 calls a batch, each packed and parsed by the client).
        for group in (_by_slot(wanted).values() if self._split else [wanted]):
            group.sort(key=lambda w: w[0] != "z")  # sorted sets first
            for start in range(0, len(group), READ_CHUNK_KEYS):
                chunk = group[start:start + READ_CHUNK_KEYS]
                n_sets = sum(1 for kind, _, _ in chunk if kind == "z")
                calls.append(self._read_lists.call([k for _, _, k in chunk],
                                                   [depth - 1, n_sets],
                                                   any_slot=not self._split))
                order += [(kind, item) for kind, item, _ in chunk]
        n_chunks = len(calls) - 2
        if version is not None:
            rows_key = self.keys.model_similar_rows(version)
            for start in range(0, len(similar_items), READ_CHUNK_KEYS):
                calls.append(command("HMGET", rows_key,
                                     *similar_items[start:start + READ_CHUNK_KEYS]))
        trending, popular, *rest = await run_batch(self.r, calls)
        replies = [r for chunk in rest[:n_chunks] for r in chunk]
        got = dict(zip(order, replies, strict=True))
        cooc = {item: _flat_zpairs(got[("z", item)]) for item in cooc_items}
        similar: dict[str, ScoredList] = {
            item: parse_scored_json(got[("s", item)])[:depth] for item in json_items}
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
        return BlendInputs(cooc, similar, _flat_zpairs(trending), _flat_zpairs(popular))

    async def trending_epoch(self, first_ts: float) -> float:
        """The trending reference time as Redis holds it now (one ``GET``; every worker
        moves it, see :meth:`rebase_trending`), set from ``first_ts`` when there is none
        yet (the first event ever seen, or a wiped Redis)."""
        raw = await self.r.get(self.keys.trending_epoch)
        if raw is None:
            await self.r.set(self.keys.trending_epoch, repr(float(int(first_ts))), nx=True)
            raw = await self.r.get(self.keys.trending_epoch)
        return float(raw) if raw is not None else float(int(first_ts))

    async def rebase_trending(self, new_t0: float, half_life_s: float) -> int:
        """Rescale all trending scores to a later reference time (keeps them finite),
        dropping those decayed under ``recommender.trending.FORGET_BELOW``. The factor
        (:func:`recommender.trending.rebase_factor`) is taken from the landmark Redis
        holds, not the caller's: another worker may have moved it since."""
        return int(await self._rebase.run(self.r, [self.keys.trending, self.keys.trending_epoch],
                                          [repr(float(new_t0)), repr(float(half_life_s)),
                                           repr(FORGET_BELOW)]))

    async def apply_catalog(self, records: Sequence[CatalogRecord]) -> None:
        """Mirror catalog state and stock; the last record per item wins."""
        # columns, category sets, newest items (before the item hashes: it reads them)
        await run_batch(self.r, self._columns.calls(records))
        pipe = self.r.pipeline(transaction=False)
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
        values = await get_many(self.r, [self.keys.user_recent(e) for e in entities])
        return [v.encode() if isinstance(v, str) else v for v in values]


def _by_slot(wanted: list[tuple[str, str, str]]) -> dict[str, list[tuple[str, str, str]]]:
    """``(kind, item, key)`` reads grouped by the hash tag of their key."""
    groups: dict[str, list[tuple[str, str, str]]] = {}
    for entry in wanted:
        groups.setdefault(tag_of(entry[2]), []).append(entry)
    return groups


def hour_of(ts: float) -> int:
    """Event-time hour bucket of a timestamp (dedupe sets are per hour)."""
    return int(ts // 3600)


def now() -> float:
    """Wall-clock time (one place, so tests can reason about it)."""
    return time.time()
