"""Which entities' lists a batch rebuilds, and rebuilding them.

:class:`Relister` is the list half of :class:`stream.processor.EventProcessor`: an
entity whose history changed gets its recent-items list at once, and its stored list
(:func:`recommender.relist.relist`, the function the evaluator's worker replay calls)
now, or, while the worker is behind, once for all its waiting events
(:class:`recommender.coalesce.Coalescer`, mirrored in ``RedisKeys.relist_pending``),
its stored list then updated at once at the first freshness level
(:meth:`Relister.quick_lists`); after a model swap the refresh sweep adds recently active
entities (:class:`recommender.refresh.RefreshSweep`), fewer per second while the worker is
behind. Everything a batch writes goes to Redis in one round trip
(:meth:`stream.redis_writer.RedisWriter.write_batch`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from functools import partial
from operator import itemgetter

import orjson

from core.limits import SESSION_ITEMS
from core.redis_client import command, run_batch
from core.scored_lists import parse_scored_json
from recommender.blend_quick import quick_entries
from recommender.coalesce import Coalescer
from recommender.history import History
from recommender.model import FoldInModel
from recommender.refresh import REASONS, RefreshSweep
from recommender.relist import anchors, relist
from stream.history_store import HistoryStore
from stream.list_writes import Written
from stream.redis_writer import EventOps, RedisWriter, dumps_list, dumps_rounded, round_entries
from stream.row_lists import decode_row_ids

_ID = itemgetter(0)

#: Distinct recent items kept in the session list the API falls back to.
RECENT_ITEMS = 20
#: Most entities per list-computation call (bounds its memory; see Relister.write).
FOLD_IN_CHUNK = 256
#: Most recent items the model knows whose neighbour lists feed the blend's similar source.
SIMILAR_ITEMS = 3
#: Blend sources every entity shares: a list of only these is not stored with
#: ``require_catalog`` (see ``Relister._entity_lists``).
GLOBAL_SOURCES = frozenset({"trending", "popular"})
#: Lists the idle timer rebuilds between two chances for a batch to run: a lone event
#: arriving meanwhile waits for at most this many (tens of ms with a model); also the
#: most waiting re-folds one batch does, due ones included (``recommender.coalesce``).
IDLE_GROUP = 64
#: Fewest swept entities a batch may carry beside its own changed ones (it carries at most
#: as many as those, or this many): a lone event's batch rebuilt the sweep's whole
#: allowance (``sweep_per_batch``, 256 lists, ~90 ms) before its own list was stored, for
#: as long as a post-retrain sweep lasted; the idle timer re-lists the rest between batches.
SWEEP_BESIDE_FEW = 16
#: Seconds the idle timer pauses between two groups. A fetched event reaches the agent
#: through several turns of the event loop (the consumer thread's hand-off, Faust's
#: conductor, the stream); with a bare yield each turn ran one more group first, so a lone
#: event during a post-retrain sweep waited 0.2–2 s (ten groups and more) instead of one.
IDLE_PAUSE_S = 0.002


class Relister:
    """Rebuilds stored lists for the processor (see the module notes).

    Parameters
    ----------
    writer
        The Redis writer.
    model
        The live model (None before the first retrain: then only recent lists).
    list_size, blend_depth
        ``Settings.list_size``, ``Settings.blend_depth``.
    sweep
        The post-swap refresh sweep.
    coalescer
        The waiting lists (``max_delay_s`` 0: none ever wait, as in rebuild replays).
    """

    def __init__(self, writer: RedisWriter, model: Callable[[], FoldInModel | None], *,
                 list_size: int, blend_depth: int, sweep: RefreshSweep,
                 coalescer: Coalescer, sweep_rate_limited: bool = False) -> None:
        self.writer = writer
        self.model = model
        self.list_size = list_size
        self.blend_depth = blend_depth
        self.sweep = sweep
        self.coalescer = coalescer
        self.sweep_rate_limited = sweep_rate_limited
        self._sweep_allowance = float(sweep.per_batch)
        self._sweep_at = time.monotonic()

    def swept(self, model: FoldInModel | None, store: HistoryStore, *,
              skip: Collection[str] = (), behind: bool = False,
              idle: bool = False, most: int | None = None,
              beside: int | None = None) -> dict[str, History]:
        """The histories of the entities the sweep re-lists now (none without a model;
        an entity whose history is not in this worker's table is dropped).

        Beside batches, rate-limited (``sweep_rate_limited``, the worker's): at most
        ``sweep_per_batch`` per second, a quarter of that while the worker is ``behind``
        or has no time to spare (``recommender.coalesce.SpareTime``: a sweep must not
        slow the catch-up that overtakes it anyway, nor the first level), so a swap does not
        add hundreds of list rebuilds to every batch while traffic flows; and no more
        than the batch's own ``beside`` changed entities or :data:`SWEEP_BESIDE_FEW`.
        ``idle`` (the idle timer, no batch waiting): at most ``most`` (what the group's
        waiting re-folds left of :data:`IDLE_GROUP`), unlimited overall."""
        limit: int | None = None
        if idle:
            limit = IDLE_GROUP if most is None else max(most, 0)
        elif self.sweep_rate_limited:
            now = time.monotonic()
            per_s = self.sweep.per_batch / (4 if behind else 1)
            self._sweep_allowance = min(float(self.sweep.per_batch),
                                        self._sweep_allowance + (now - self._sweep_at) * per_s)
            self._sweep_at = now
            limit = int(self._sweep_allowance)
            if beside is not None:
                limit = min(limit, max(beside, SWEEP_BESIDE_FEW))
        out: dict[str, History] = {}
        for entity in self.sweep.take(model.version if model else None, skip=skip,
                                      limit=limit):
            raw = store.get(entity)
            if raw:
                out[entity] = History.from_dict(raw)
        if self.sweep_rate_limited and not idle:
            self._sweep_allowance -= len(out)
        return out

    def waiting(self, store: HistoryStore, *, behind: bool, skip: Collection[str],
                now: float, idle: bool = False, most: int | None = None
                ) -> tuple[dict[str, History], dict[str, list[float]]]:
        """The waiting entities to rebuild now (:meth:`Coalescer.take`, at most ``most``;
        ``idle``: a group of :data:`IDLE_GROUP`), with their current histories (those of
        ``skip``, the batch's own, are the caller's), and the receive times of every
        taken entity's waiting events."""
        taken = self.coalescer.take(now=now, behind=behind, skip=skip,
                                    most=IDLE_GROUP if idle else most)
        histories: dict[str, History] = {}
        for entity in taken:
            if entity in skip:
                continue
            raw = store.get(entity)
            if raw:
                histories[entity] = History.from_dict(raw)
        return histories, taken

    async def lists_behind(self, unchanged: dict[str, History]) -> dict[str, History]:
        """Entities whose item events were all known to their history, yet whose stored
        recent list differs from it.

        A worker killed after a batch's table writes reached the changelog but before its
        lists reached Redis restarts with histories that already hold the redelivered
        events: without this check their lists would stay missing or stale. In normal
        flow (and for replays of applied events) the stored list matches and nothing is
        rewritten.
        """
        if not unchanged:
            return {}
        entities = list(unchanged)
        stored = await self.writer.recent_lists(entities)
        return {e: unchanged[e] for e, body in zip(entities, stored, strict=True)
                if body != orjson.dumps(unchanged[e].recent_items(RECENT_ITEMS))}

    async def write(self, model: FoldInModel | None, *, changed: dict[str, History],
                    listed: dict[str, History], ops: Sequence[EventOps],
                    processed: int | None, anonymous: Collection[str] = (),
                    deferred: Sequence[str] = (), done: Collection[str] = (),
                    quick: Collection[str] = (), off_loop: bool = False
                    ) -> tuple[Callable[[], Awaitable[Written]], int]:
        """Recent lists of the ``changed`` entities and stored lists of the ``listed``
        ones, with the batch's counted effects, as one Redis round trip to run (and to run
        again should Redis fail): it returns the events applied and when the lists were
        written. ``deferred`` entities start waiting in Redis, ``done`` ones stop.
        ``quick`` (changed entities whose re-fold waits) get their first-level list
        (:meth:`quick_lists`); also returns how many were written. ``off_loop`` (the
        idle timer): the lists are computed in a thread, so the event loop goes on
        meanwhile (:meth:`_entity_lists`)."""
        entities = list(listed)
        recent = {e: h.recent_items(RECENT_ITEMS) for e, h in {**listed, **changed}.items()}
        recents = [(e, orjson.dumps(recent[e])) for e in changed]
        recs: list[tuple[str, bytes]] = []
        if model is not None and quick:
            recs = await self.quick_lists(model, {e: changed[e] for e in quick}, recent)
        n_quick = len(recs)
        if model is not None:
            # Bounded calls: the list computation allocates a k×k float64 system per
            # entity (128 KB at 128 factors), and one call over a backlog batch's
            # thousands of entities spent most of its time faulting that memory in
            # (measured ~2.7x slower per entity unbounded than in chunks of 64–512).
            for start in range(0, len(entities), FOLD_IN_CHUNK):
                recs.extend(await self._entity_lists(
                    model, entities[start:start + FOLD_IN_CHUNK], listed, recent,
                    off_loop=off_loop))
        return partial(self.writer.write_batch, ops, recs, recents, processed=processed,
                       anonymous=anonymous, deferred=deferred, done=done), n_quick

    async def quick_lists(self, model: FoldInModel, quick: dict[str, History],
                          recent: dict[str, list[str]]) -> list[tuple[str, bytes]]:
        """The first freshness level of entities whose re-fold waits: each stored list
        with the model neighbours of the entity's newest item the model knows fused in
        and its touched items out (:func:`recommender.blend_quick.quick_entries`), from the
        stored lists and this model's neighbour rows read in one round trip (items the
        rows lack: their JSON lists in a second, as the re-fold reads them). Entities
        whose list would not change get none (a list of no entity is not started here:
        the re-fold makes it); the coalesced re-fold later replaces every one."""
        entities = list(quick)
        known = model.item_map.index_map
        newest = {e: next((i for i in recent[e] if i in known), None) for e in entities}
        items = list(dict.fromkeys(i for i in newest.values() if i is not None))
        keys = self.writer.keys
        calls = [command("GET", keys.user_recs(e)) for e in entities]
        if items:
            calls.append(command("HMGET", keys.model_similar_rows(model.version), *items))
        replies = await run_batch(self.writer.r, calls)
        rows = dict(zip(items, replies[len(entities)] if items else [], strict=True))
        names = model.item_map.id_list
        near = {item: [names[r] for r in decode_row_ids(raw, self.blend_depth) if r >= 0]
                for item, raw in rows.items() if raw}
        if missing := [item for item in items if item not in near]:
            near.update(await self._json_neighbours(missing))
        now = time.time()
        out: list[tuple[str, bytes]] = []
        for entity, raw in zip(entities, replies[:len(entities)], strict=True):
            if raw is None:
                continue
            stored = orjson.loads(raw).get("items", ())  # written by this worker's kind
            item = newest[entity]
            new, fresh = quick_entries(stored, near.get(item, []) if item is not None else [],
                                       exclude=quick[entity].item_ids(), n=self.list_size)
            if list(map(_ID, new)) == list(map(_ID, stored)):
                continue  # unchanged: nothing to write
            # Written at once, while the list is in the cache: kept to the batch's end
            # (to round every list's new scores in one numpy call) it cost ~1.2x.
            round_entries(fresh)
            out.append((entity, dumps_rounded(model.version, new, ts=now)))
        return out

    async def _json_neighbours(self, items: list[str]) -> dict[str, list[str]]:
        """The model neighbours of ``items`` from their JSON lists (``i:{item}:similar``),
        for items the model's binary copy lacks (a model published before that copy
        existed, a version just dropped): the re-fold reads those the same way
        (``RedisWriter.blend_inputs``), so both levels see the same neighbours."""
        replies = await run_batch(self.writer.r, [
            command("GET", self.writer.keys.item_similar(i)) for i in items])
        return {item: [i for i, _ in parse_scored_json(raw)[:self.blend_depth]]
                for item, raw in zip(items, replies, strict=True)}

    async def _entity_lists(self, model: FoldInModel, entities: list[str],
                            listed: dict[str, History],
                            recent: dict[str, list[str]], *, off_loop: bool = False
                            ) -> list[tuple[str, bytes]]:
        """The stored list of each entity (:func:`recommender.relist.relist`, the function
        the evaluator's worker replay calls), from candidate lists read in one round trip
        (the neighbour lists as this model's rows, not JSON). ``off_loop``: ``relist``
        runs in a thread (it reads only its arguments). A lone event fetched while the
        idle timer's group computes then reaches the agent meanwhile, and waits for that
        one group only; in the loop, each turn of its way (the consumer thread's
        hand-off, Faust's conductor, the stream) waited for a group of its own."""
        anchor = {e: anchors(recent[e], model, session_items=SESSION_ITEMS,
                             similar_items=SIMILAR_ITEMS) for e in entities}
        inputs = await self.writer.blend_inputs(
            list(dict.fromkeys(i for e in entities for i in anchor[e].session)),
            list(dict.fromkeys(i for e in entities for i in anchor[e].similar)),
            self.blend_depth, version=model.version)
        compute = partial(
            relist, model, [listed[e] for e in entities], [recent[e] for e in entities],
            session=[[inputs.cooc[i] for i in anchor[e].session] for e in entities],
            similar=[[inputs.similar[i] for i in anchor[e].similar] for e in entities],
            trending=inputs.trending, popular=inputs.popular, n=self.list_size)
        lists = await asyncio.to_thread(compute) if off_loop else compute()
        now = time.time()
        # With require_catalog, a list of nothing but the global heads is not stored: its
        # entity touched no item the model, the co-occurrence or the catalog relates to
        # (typically a fresh id naming unknown items), and serving falls back to the same
        # global lists without it. Stored, it was ~1.1 KB per forged id once a model is
        # live, three times the flood's whole stated budget per event.
        global_only = self.writer.bounds.require_catalog
        return [(entity, dumps_list(model.version, out.blended.ids, out.blended.scores, ts=now,
                                    reasons=[REASONS[s] for s in out.blended.sources]))
                for entity, out in zip(entities, lists, strict=True) if out.blended.ids
                and not (global_only and GLOBAL_SOURCES.issuperset(out.blended.sources))]
