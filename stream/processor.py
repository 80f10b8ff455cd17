"""One batch of tracking events → histories, counted item effects, refreshed lists.

Kept free of Faust so it can be driven directly in tests against a real Redis: the
worker hands it decoded events and a history store backed by its Faust table.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import orjson

from core.limits import SESSION_ITEMS
from core.redis_keys import RedisKeys
from recommender.abuse import AbusePolicy
from recommender.blend_many import ItemCodes, ScoredList, blend_many
from recommender.history import History
from recommender.refresh import REASONS, RefreshSweep, refold_rows
from recommender.trending import needs_rebase, rebase_factor
from schemas import TopicEvent
from stream.bounds import StateBounds
from stream.experiments import ExperimentOutcomes
from stream.item_ops import event_ops
from stream.live_model import LiveModel
from stream.redis_writer import EventOps, RedisWriter, dumps_list

#: Distinct recent items kept in the session list the API falls back to.
RECENT_ITEMS = 20
#: Most entities per list-computation call (bounds its memory; see _refresh_lists).
FOLD_IN_CHUNK = 256
#: Most recent items the model knows whose neighbour lists feed the blend's similar source.
SIMILAR_ITEMS = 3


class HistoryStore(Protocol):
    """Where entity histories live (the worker's changelog-backed Faust table)."""

    def get(self, entity: str) -> dict[str, Any] | None:
        """The stored history of an entity, or None."""

    def put(self, entity: str, value: dict[str, Any], partition: int) -> None:
        """Store an entity's history; ``partition`` is that of its source message."""


@dataclass
class BatchResult:
    """What a batch did, for forwarding, metrics and tests."""

    events: int = 0
    applied: int = 0
    entities_refreshed: int = 0
    #: Entities re-listed by the refresh sweep (no event of theirs in the batch).
    entities_swept: int = 0
    forwards: dict[str, list[TopicEvent]] = field(default_factory=dict)
    freshness_s: list[float] = field(default_factory=list)
    #: Identify events ignored: the anonymous id was linked to too many users already.
    identify_refused: int = 0


@dataclass
class ProcessorConfig:
    """The knobs the processor needs (taken from Settings by the worker)."""

    history_max: int = 200
    cooc_window: int = 20
    list_size: int = 100
    trending_half_life_s: float = 7200.0
    abuse: AbusePolicy | None = field(default_factory=AbusePolicy)
    #: Candidates read per source for the stored blend (``Settings.blend_depth``).
    blend_depth: int = 30
    #: Add to the pipeline counters (processed/applied). Off for rebuild replays: the
    #: counters describe the live pipeline, and a replay must not inflate them.
    count_stats: bool = True
    #: Recently active entities re-listed after a model swap (``Settings.sweep_entities``;
    #: 0 = off, as in rebuild replays, which rebuild every list from its events anyway).
    sweep_entities: int = 0
    #: Most of them re-listed per batch (``Settings.sweep_per_batch``).
    sweep_per_batch: int = 256
    #: Only those refreshed this recently, in event time (``Settings.sweep_window_s``).
    sweep_window_s: float = 3600.0
    #: TTLs, caps and trims of the state the batches write (``stream.bounds``).
    bounds: StateBounds = field(default_factory=StateBounds)


def _entry(ev: TopicEvent) -> tuple[str, str, str, float, float]:
    # Ordered by the event time a client may not push past its arrival; abuse decisions
    # read the receive time (recommender.abuse).
    return (ev.event_id, ev.item_id or "", ev.type, ev.order_ts, ev.receive_time)


class EventProcessor:
    """Applies batches of events; stateless apart from the trending epoch cache and the
    refresh sweep's memory of recently active entities."""

    def __init__(
        self,
        writer: RedisWriter,
        keys: RedisKeys,
        config: ProcessorConfig,
        model: Callable[[], LiveModel | None],
    ) -> None:
        self.writer = writer
        self.keys = keys
        self.config = config
        self.model = model
        self._t0: float | None = None
        self.sweep = RefreshSweep(config.sweep_entities, config.sweep_per_batch,
                                  config.sweep_window_s)
        self.outcomes = ExperimentOutcomes(writer.r, keys, dedupe_ttl_s=writer.dedupe_ttl_s,
                                           ttl_s=config.bounds.experiment_ttl_s)
        # Batches and idle sweeps each read histories and write lists: one at a time, so
        # a sweep never writes a list from a history a batch has since extended.
        self._lock = asyncio.Lock()

    async def _epoch(self, batch_max_ts: float, batch_min_ts: float) -> float:
        if self._t0 is None:
            self._t0 = await self.writer.trending_epoch(batch_min_ts)
        hl = self.config.trending_half_life_s
        if needs_rebase(batch_max_ts, self._t0, hl):
            new_t0 = float(int(batch_max_ts))
            await self.writer.rebase_trending(new_t0, rebase_factor(self._t0, new_t0, hl))
            self._t0 = await self.writer.trending_epoch(new_t0)
        return self._t0

    async def process(
        self, batch: Sequence[tuple[TopicEvent, int]], store: HistoryStore
    ) -> BatchResult:
        """Apply ``(event, source partition)`` pairs in order."""
        async with self._lock:
            return await self._process(batch, store)

    async def relist_idle(self, store: HistoryStore) -> int:
        """Re-list swept entities while no batch comes (the worker's idle timer): after
        ``streamrec train`` on a quiet shop the recently active users would otherwise
        keep the retrain's plain lists until their next event. Works in groups of
        ``sweep_per_batch``, letting batches in between; returns the entities re-listed."""
        done = 0
        while True:
            async with self._lock:
                model = self.model()
                if model is None:
                    return done
                swept = self._swept(model, store)
                if swept:
                    await self._refresh_lists(model, {}, swept, [], BatchResult(), set())
                    done += len(swept)
                if not self.sweep.pending:
                    return done
            await asyncio.sleep(0)

    async def _process(
        self, batch: Sequence[tuple[TopicEvent, int]], store: HistoryStore
    ) -> BatchResult:
        # Experiment outcomes (own dedupe); exposure records are for them alone.
        await self.outcomes.apply(ev for ev, _ in batch)
        batch = [(ev, p) for ev, p in batch if ev.type != "exposure"]
        result = BatchResult(events=len(batch))
        if not batch:
            return result
        # Trending decays on the server's clock: a client's timestamp cannot inflate it.
        t0 = await self._epoch(max(e.receive_time for e, _ in batch),
                               min(e.receive_time for e, _ in batch))
        cfg = self.config
        anonymous = {ev.entity for ev, _ in batch if ev.user_id is None}
        by_entity: dict[str, list[tuple[TopicEvent, int]]] = {}
        for ev, partition in batch:
            by_entity.setdefault(ev.entity, []).append((ev, partition))

        all_ops: list[EventOps] = []
        refreshed: dict[str, History] = {}
        unchanged: dict[str, History] = {}
        received: dict[str, list[float]] = {}
        for entity, items in by_entity.items():
            hist = History.from_dict(store.get(entity))
            changed = False
            has_items = False
            partition = items[-1][1]
            for ev, _ in items:
                if ev.type == "identify":
                    before = (hist.alias, len(hist.links))
                    if not hist.link(ev.user_id or "", max_links=cfg.bounds.identify_max_links):
                        result.identify_refused += 1
                        continue
                    changed = changed or before != (hist.alias, len(hist.links))
                    target = ev.user_id or ""
                    result.forwards.setdefault(target, []).extend(
                        self._rewrite(hist.entries, anonymous_id=entity, user_id=target)
                    )
                    continue
                if hist.alias and ev.user_id is None:
                    result.forwards.setdefault(hist.alias, []).append(
                        ev.model_copy(update={"user_id": hist.alias})
                    )
                recent = hist.recent_items(cfg.cooc_window)
                all_ops.append(
                    event_ops(ev, entity=entity, recent_items=recent, keys=self.keys, t0=t0,
                              half_life_s=cfg.trending_half_life_s, cooc_window=cfg.cooc_window,
                              prior=hist.receipts, policy=cfg.abuse, bounds=cfg.bounds,
                              first_received=hist.first_received)
                )
                if ev.item_id and ev.type != "impression":
                    has_items = True
                    if cfg.abuse is not None and hist.note_receipt(
                            _entry(ev), window_s=cfg.abuse.window_s,
                            max_pairs=cfg.abuse.max_per_window):
                        changed = True
                    new = hist.apply([_entry(ev)], max_entries=cfg.history_max,
                                     max_bought=cfg.bounds.bought_max)
                    if new:
                        changed = True
                        if ev.received_at:
                            received.setdefault(entity, []).append(ev.received_at)
            if changed:
                store.put(entity, hist.to_dict(), partition)
                refreshed[entity] = hist
            elif has_items:
                unchanged[entity] = hist

        refreshed.update(await self._lists_behind(unchanged))
        model = self.model()
        swept = self._swept(model, store, skip=refreshed)
        await self._refresh_lists(model, refreshed, swept, all_ops, result, anonymous)
        self.sweep.touched(refreshed, max(e.ts for e, _ in batch))
        result.entities_swept = len(swept)
        done = time.time()
        for entity in refreshed:
            result.freshness_s.extend(done - t for t in received.get(entity, ()))
        result.entities_refreshed = len(refreshed)
        return result

    def _swept(self, model: LiveModel | None, store: HistoryStore,
               skip: Collection[str] = ()) -> dict[str, History]:
        """The histories of the entities the sweep re-lists now (none without a model;
        an entity whose history is not in this worker's table is dropped)."""
        out: dict[str, History] = {}
        for entity in self.sweep.take(model.version if model else None, skip=skip):
            raw = store.get(entity)
            if raw:
                out[entity] = History.from_dict(raw)
        return out

    async def _lists_behind(self, unchanged: dict[str, History]) -> dict[str, History]:
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

    @staticmethod
    def _neighbour_rows(codes: ItemCodes, session: list[list[list[tuple[str, float]]]],
                        similar: list[list[ScoredList]]) -> list[np.ndarray]:
        """Per entity, the model rows of the items on its recent items' co-occurrence and
        neighbour lists. Entities share recent items, so each list is coded once (by
        ``codes``, which the blend then reuses) rather than once per entity."""
        empty = np.zeros(0, dtype=np.int64)
        out = []
        for lists in zip(session, similar, strict=True):
            parts = [codes.rows(lst) for lst in (*lists[0], *lists[1])]
            out.append(np.concatenate(parts) if parts else empty)
        return out

    @staticmethod
    def _rewrite(entries: Sequence[Sequence[Any]], *, anonymous_id: str,
                 user_id: str) -> list[TopicEvent]:
        out = []
        for event_id, item_id, etype, ts, received in entries:
            out.append(TopicEvent(event_id=event_id, type=etype, item_id=item_id or None,
                                  anonymous_id=anonymous_id, user_id=user_id, ts=ts,
                                  received_at=received))
        return out

    async def _refresh_lists(self, model: LiveModel | None, refreshed: dict[str, History],
                             swept: dict[str, History], all_ops: list[EventOps],
                             result: BatchResult, anonymous: set[str]) -> None:
        """Lists of every refreshed entity (and of the entities the sweep re-lists for a
        new model, whose recent items did not change), written with the batch's counted
        effects in one Redis round trip; sets ``result.applied``."""
        listed = {**swept, **refreshed}
        entities = list(listed)
        recent = {e: listed[e].recent_items(RECENT_ITEMS) for e in entities}
        recents = [(e, orjson.dumps(recent[e])) for e in refreshed]
        recs: list[tuple[str, bytes]] = []
        if model is not None:
            # Bounded calls: the list computation allocates a k×k float64 system per
            # entity (128 KB at 128 factors), and one call over a backlog batch's
            # thousands of entities spent most of its time faulting that memory in
            # (measured ~2.7x slower per entity unbounded than in chunks of 64–512).
            for start in range(0, len(entities), FOLD_IN_CHUNK):
                recs.extend(await self._entity_lists(
                    model, entities[start:start + FOLD_IN_CHUNK], listed, recent))
        result.applied = await self.writer.write_batch(
            all_ops, recs, recents,
            processed=result.events if self.config.count_stats else None,
            anonymous=anonymous,
        )

    async def _entity_lists(self, model: LiveModel, entities: list[str],
                            refreshed: dict[str, History],
                            recent: dict[str, list[str]]) -> list[tuple[str, bytes]]:
        """The stored list of each refreshed entity: its fold-in list blended with the
        session, similar, trending and popular candidates (``recommender.refresh``, the
        functions the evaluator's worker replay calls; the blend vectorised across entities
        by ``recommender.blend_many``, which gives identical lists)."""
        depth = self.config.blend_depth
        session_of = {e: recent[e][:SESSION_ITEMS] for e in entities}
        similar_of = {e: [i for i in recent[e] if i in model.item_map][:SIMILAR_ITEMS]
                      for e in entities}
        inputs = await self.writer.blend_inputs(
            list(dict.fromkeys(i for e in entities for i in session_of[e])),
            list(dict.fromkeys(i for e in entities for i in similar_of[e])), depth,
            version=model.version)  # neighbour lists as this model's rows, not JSON
        session = [[inputs.cooc[i] for i in session_of[e]] for e in entities]
        similar = [[inputs.similar[i] for i in similar_of[e]] for e in entities]
        pool, pool_factors = model.pool()
        codes = ItemCodes(model.item_map)  # model rows are codes: no translation
        no_rows = np.zeros(0, dtype=np.int64)
        lists = refold_rows(
            [refreshed[e].item_weights() for e in entities],
            item_map=model.item_map, item_factors=model.item_factors, yty=model.yty,
            regularization=model.regularization, alpha=model.alpha,
            n=self.config.list_size, pool=pool, pool_factors=pool_factors,
            neighbour_rows=self._neighbour_rows(codes, session, similar),
        )
        personal: dict[int, np.ndarray] = {pos: rows for pos, rows, _ in lists}
        # All entities in one vectorised call: the same lists as entity_blend per entity
        # (recommender.blend_many), which was a quarter of the worker's CPU.
        blended = blend_many(
            n=self.config.list_size,
            personal=[personal.get(j, no_rows) for j in range(len(entities))],
            session=session, similar=similar, trending=inputs.trending, popular=inputs.popular,
            known=[refreshed[e].item_ids() for e in entities],
            history_size=[len(recent[e]) for e in entities], codes=codes)
        now = time.time()
        return [(entity, dumps_list(model.version, b.ids, b.scores, ts=now,
                                    reasons=[REASONS[s] for s in b.sources]))
                for entity, b in zip(entities, blended, strict=True) if b.ids]
