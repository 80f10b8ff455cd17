"""One batch of tracking events → histories, counted item effects, refreshed lists.

The pure work of a batch lives in ``recommender/`` — :func:`recommender.batch_step.step_entity`
per entity (history, counted increments, forwards) and :func:`recommender.relist.relist`
for the lists — the very functions the evaluator's worker replay runs. This module is
the glue around them: it reads and writes histories through a
:class:`~stream.history_store.HistoryStore` (the worker's Faust table), turns each step
into Redis operations (:func:`stream.item_ops.event_ops`, with the state bounds of
:mod:`stream.bounds` and the newcomer budget the writer's script keeps in Redis), reads
the blend's candidate lists from Redis and writes the lists, all through
:class:`~stream.redis_writer.RedisWriter`. The trending epoch follows the receive time
(a client's timestamp cannot move it). Kept free of Faust so it can be driven directly
in tests against a real Redis.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

import orjson

from core.limits import SESSION_ITEMS
from core.redis_keys import RedisKeys
from core.settings import Settings
from recommender.abuse import AbusePolicy
from recommender.batch_step import EntityStep, StepConfig, group_by_entity, step_entity
from recommender.history import History
from recommender.model import FoldInModel
from recommender.refresh import REASONS, RefreshSweep
from recommender.relist import anchors, relist
from recommender.trending import needs_rebase, rebase_factor
from schemas import TopicEvent
from stream.bounds import StateBounds, state_bounds
from stream.experiments import ExperimentOutcomes
from stream.forget import Forgetting
from stream.history_store import HistoryStore
from stream.item_ops import abuse_policy, event_ops, identify_ops
from stream.redis_writer import EventOps, RedisWriter, dumps_list

#: Distinct recent items kept in the session list the API falls back to.
RECENT_ITEMS = 20
#: Most entities per list-computation call (bounds its memory; see _refresh_lists).
FOLD_IN_CHUNK = 256
#: Most recent items the model knows whose neighbour lists feed the blend's similar source.
SIMILAR_ITEMS = 3


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

    @property
    def bought_max(self) -> int:
        """Purchases a history remembers (the batch step's ``StepConfig.bought_max``)."""
        return self.bounds.bought_max

    @property
    def identify_max_links(self) -> int:
        """Users one anonymous id may be identified as (``StepConfig``)."""
        return self.bounds.identify_max_links

    @classmethod
    def from_settings(cls, settings: Settings, *, replay: bool = False) -> ProcessorConfig:
        """The worker's knobs from ``settings``; ``replay`` for a rebuild from the log
        (no pipeline counters, no refresh sweep)."""
        sweep = 0 if replay else settings.sweep_entities
        return cls(history_max=settings.history_max, cooc_window=settings.cooc_window,
                   list_size=settings.list_size, blend_depth=settings.blend_depth,
                   trending_half_life_s=settings.trending_half_life_s,
                   abuse=abuse_policy(settings), count_stats=not replay,
                   sweep_entities=sweep, sweep_per_batch=settings.sweep_per_batch,
                   sweep_window_s=settings.sweep_window_s, bounds=state_bounds(settings))


class EventProcessor:
    """Applies batches of events; stateless apart from the trending epoch cache and the
    refresh sweep's memory of recently active entities."""

    def __init__(
        self,
        writer: RedisWriter,
        keys: RedisKeys,
        config: ProcessorConfig,
        model: Callable[[], FoldInModel | None],
    ) -> None:
        self.writer = writer
        self.keys = keys
        self.config = config
        self.model = model
        self._step = StepConfig.of(config)
        self._t0: float | None = None
        self.sweep = RefreshSweep(config.sweep_entities, config.sweep_per_batch,
                                  config.sweep_window_s)
        self.outcomes = ExperimentOutcomes(writer.r, keys, dedupe_ttl_s=writer.dedupe_ttl_s,
                                           ttl_s=config.bounds.experiment_ttl_s)
        # Batches and idle sweeps each read histories and write lists: one at a time, so
        # a sweep never writes a list from a history a batch has since extended.
        self._lock = asyncio.Lock()
        # Forgotten ids (stream.forget); the sweep of every item set only in the live
        # pipeline, not in a replay (whose forgotten ids never reach the sets).
        self.forgetting = Forgetting(writer.r, keys, sweep=config.count_stats)

    async def _epoch(self, batch_max_ts: float, batch_min_ts: float) -> float:
        if self._t0 is None:
            self._t0 = await self.writer.trending_epoch(batch_min_ts)
        hl = self.config.trending_half_life_s
        if needs_rebase(batch_max_ts, self._t0, hl):
            new_t0 = float(int(batch_max_ts))
            await self.writer.rebase_trending(new_t0, rebase_factor(self._t0, new_t0, hl))
            self._t0 = await self.writer.trending_epoch(new_t0)
        return self._t0

    def reset_epoch(self) -> None:
        """Forget the cached trending epoch (Redis was flushed: re-read it)."""
        self._t0 = None

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
        events_in = sum(ev.type != "exposure" for ev, _ in batch)
        # Forgotten ids first: before any history or experiment outcome is read.
        batch = await self.forgetting.screen(batch, store)
        # Experiment outcomes (own dedupe); exposure records are for them alone.
        await self.outcomes.apply(ev for ev, _ in batch)
        batch = [(ev, p) for ev, p in batch if ev.type != "exposure"]
        result = BatchResult(events=events_in)
        if not batch:
            return result
        # Trending decays on the server's clock: a client's timestamp cannot inflate it.
        t0 = await self._epoch(max(e.receive_time for e, _ in batch),
                               min(e.receive_time for e, _ in batch))
        cfg = self.config
        anonymous = {ev.entity for ev, _ in batch if ev.user_id is None}
        all_ops: list[EventOps] = []
        refreshed: dict[str, History] = {}
        unchanged: dict[str, History] = {}
        received: dict[str, list[float]] = {}
        for entity, items in group_by_entity(batch, lambda pair: pair[0].entity).items():
            events = [ev for ev, _ in items]
            step = step_entity(History.from_dict(store.get(entity)), events, t0=t0,
                               config=self._step)
            self._forward(step, events, entity, result.forwards)
            result.identify_refused += step.identify_refused
            all_ops.extend(identify_ops(events[pos], self.keys, cfg.bounds)
                           for pos in step.identified)
            all_ops.extend(event_ops(events[pos], entity=entity, counted=counted,
                                     keys=self.keys, policy=cfg.abuse, bounds=cfg.bounds)
                           for pos, counted in step.counted)
            if step.changed:
                store.put(entity, step.history.to_dict(), items[-1][1])
                refreshed[entity] = step.history
            elif step.has_items:
                unchanged[entity] = step.history
            received[entity] = [t for pos in step.added if (t := events[pos].received_at)]

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

    @staticmethod
    def _forward(step: EntityStep, events: Sequence[TopicEvent], entity: str,
                 forwards: dict[str, list[TopicEvent]]) -> None:
        """The step's forwards as topic events for the identified user's partition: the
        anonymous history's entries at the ``identify`` (with their receive times, which
        the abuse rules read), later events re-addressed."""
        for fw in step.forwards:
            out = forwards.setdefault(fw.target, [])
            if fw.entries is not None:
                out.extend(TopicEvent(event_id=event_id, type=etype, item_id=item_id or None,
                                      anonymous_id=entity, user_id=fw.target, ts=ts,
                                      received_at=received)
                           for event_id, item_id, etype, ts, received in fw.entries)
            elif fw.event is not None:
                out.append(events[fw.event].model_copy(update={"user_id": fw.target}))

    def _swept(self, model: FoldInModel | None, store: HistoryStore,
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

    async def _refresh_lists(self, model: FoldInModel | None, refreshed: dict[str, History],
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

    async def _entity_lists(self, model: FoldInModel, entities: list[str],
                            listed: dict[str, History],
                            recent: dict[str, list[str]]) -> list[tuple[str, bytes]]:
        """The stored list of each entity (:func:`recommender.relist.relist`, the function
        the evaluator's worker replay calls), from candidate lists read in one round trip
        (the neighbour lists as this model's rows, not JSON)."""
        anchor = {e: anchors(recent[e], model, session_items=SESSION_ITEMS,
                             similar_items=SIMILAR_ITEMS) for e in entities}
        inputs = await self.writer.blend_inputs(
            list(dict.fromkeys(i for e in entities for i in anchor[e].session)),
            list(dict.fromkeys(i for e in entities for i in anchor[e].similar)),
            self.config.blend_depth, version=model.version)
        lists = relist(
            model, [listed[e] for e in entities], [recent[e] for e in entities],
            session=[[inputs.cooc[i] for i in anchor[e].session] for e in entities],
            similar=[[inputs.similar[i] for i in anchor[e].similar] for e in entities],
            trending=inputs.trending, popular=inputs.popular, n=self.config.list_size)
        now = time.time()
        return [(entity, dumps_list(model.version, out.blended.ids, out.blended.scores, ts=now,
                                    reasons=[REASONS[s] for s in out.blended.sources]))
                for entity, out in zip(entities, lists, strict=True) if out.blended.ids]
