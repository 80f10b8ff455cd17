"""One batch of tracking events → histories, counted item effects, refreshed lists.

The pure work of a batch lives in ``recommender/`` — :func:`recommender.batch_step.step_entity`
per entity (history, counted increments, forwards) and :func:`recommender.relist.relist` for the
lists — the very functions the evaluator's worker replay runs. This module is the glue around
them: it reads and writes histories through a :class:`~stream.history_store.HistoryStore` (the
worker's Faust table), turns each step into Redis operations (:func:`stream.item_ops.event_ops`,
the bounds of :mod:`stream.bounds`, the newcomer budget kept in Redis), reads the blend's
candidate lists and writes the lists through :class:`~stream.redis_writer.RedisWriter`. The
trending epoch follows the receive time. Free of Faust: tests drive it on a real Redis.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

from core.redis_keys import RedisKeys
from recommender.batch_step import StepConfig, group_by_entity, step_entity
from recommender.coalesce import Coalescer, SpareTime
from recommender.history import History
from recommender.model import FoldInModel
from recommender.refresh import RefreshSweep
from recommender.trending import needs_rebase
from schemas import TopicEvent
from stream.experiments import ExperimentOutcomes
from stream.forget import Forgetting
from stream.forwards import collect_forwards
from stream.history_expiry import advance, stamped
from stream.history_store import HistoryStore
from stream.item_ops import added_members, event_ops, identify_ops
from stream.legacy_history import legacy_carts
from stream.list_writes import Written
from stream.processor_config import ProcessorConfig
from stream.redis_writer import EventOps, RedisWriter
from stream.relister import IDLE_GROUP, IDLE_PAUSE_S, RECENT_ITEMS, SIMILAR_ITEMS, Relister

__all__ = ["RECENT_ITEMS", "SIMILAR_ITEMS", "BatchResult", "EventProcessor", "ProcessorConfig"]


#: A replayed event's receive time: catch-up, never freshness (``WorkerState.observe_lists``).
REPLAYED = -math.inf
#: Receive times of the events a write serves: their lists' first change, their re-fold.
Arrivals = tuple[list[float], list[float]]


@dataclass
class BatchResult:
    """What a batch did, for forwarding, metrics and tests."""

    events: int = 0
    applied: int = 0
    entities_refreshed: int = 0
    #: Entities re-listed by the refresh sweep (no event of theirs in the batch).
    entities_swept: int = 0
    forwards: dict[str, list[TopicEvent]] = field(default_factory=dict)
    #: Per event, arrival → its entity's list first changed (recent, first-level or
    #: re-folded list), and → its stored list re-folded (at once, or after waiting).
    freshness_s: list[float] = field(default_factory=list)
    refold_s: list[float] = field(default_factory=list)
    #: First-level lists written (entities whose re-fold waits).
    quick_lists: int = 0
    #: Identify events ignored: the anonymous id was linked to too many users already.
    identify_refused: int = 0


class EventProcessor:
    """Applies batches of events; stateless apart from the refresh sweep's memory of
    recently active entities and the lists that wait (trending's landmark: from Redis)."""

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
        self.sweep = RefreshSweep(config.sweep_entities, config.sweep_per_batch,
                                  config.sweep_window_s)
        self.relister = Relister(writer, model, list_size=config.list_size,
                                 blend_depth=config.blend_depth, sweep=self.sweep,
                                 coalescer=Coalescer(config.coalesce_max_delay_s,
                                                     IDLE_GROUP),
                                 sweep_rate_limited=config.sweep_rate_limited)
        #: The last batch said the worker is behind (lists may wait; the idle timer too).
        self.behind = False
        self.behind_at: float | None = None  # monotonic time of the last step behind
        self.spare = SpareTime()  # the worker's batches (stream.agents) feed it
        #: Ids of the current batch's events a replay re-applies (the worker's, cleared
        #: with each batch): they report :data:`REPLAYED` as their receive time.
        self.replayed: set[str] = set()
        #: A batch is being applied in steps, its histories not all in the table yet:
        #: the idle timer must not read them (see :meth:`batch`).
        self._in_batch = False
        #: The pipelined write in flight: (task or None to resend, the write, the receive
        #: times of the events whose lists it changes first, and of those it re-folds).
        self._inflight: tuple[asyncio.Future[Written] | None, Callable[[], Awaitable[Written]],
                              Arrivals] | None = None
        self.outcomes = ExperimentOutcomes(writer.r, keys, dedupe_ttl_s=writer.dedupe_ttl_s,
                                           ttl_s=config.bounds.experiment_ttl_s)
        # Batches and idle sweeps each read histories and write lists: one at a time, so
        # a sweep never writes a list from a history a batch has since extended.
        self._lock = asyncio.Lock()
        # Forgotten ids (stream.forget); the sweep of every item set only in the live
        # pipeline, not in a replay (whose forgotten ids never reach the sets).
        self.forgetting = Forgetting(writer.r, keys, sweep=config.count_stats)
        #: Partition → the newest receive time applied from it (the history expiry
        #: sweep's clock, ``stream.history_expiry.expired``).
        self.clocks: dict[int, float] = {}

    async def _epoch(self, batch_max_ts: float, batch_min_ts: float) -> float:
        # Read each batch (one GET), never cached: another worker may have moved the
        # landmark (increments against a stale one were 2^50 times too large), and a wipe
        # of Redis takes it too.
        t0 = await self.writer.trending_epoch(batch_min_ts)
        hl = self.config.trending_half_life_s
        if needs_rebase(batch_max_ts, t0, hl):
            new_t0 = float(int(batch_max_ts))
            await self.writer.rebase_trending(new_t0, hl)
            t0 = await self.writer.trending_epoch(new_t0)
        return t0

    @property
    def pending(self) -> int:
        """Entities whose list waits (coalescing while the worker is behind)."""
        return self.relister.coalescer.pending

    async def process(
        self, batch: Sequence[tuple[TopicEvent, int]], store: HistoryStore, *,
        behind: bool = False, pipelined: bool = False,
    ) -> BatchResult:
        """Apply ``(event, source partition)`` pairs in order. ``behind``: the worker has
        a backlog beyond this batch, so the lists of its entities may wait
        (:class:`recommender.coalesce.Coalescer`). ``pipelined``: return once the batch's
        Redis write is sent, not done, so the next batch is computed while Redis applies
        this one; the result then carries the applied count and freshness of the write
        before, and :meth:`drain` completes the last one (the worker drains before it
        acknowledges a batch)."""
        async with self._lock:
            self.behind = behind
            self.behind_at = time.monotonic() if behind else self.behind_at
            return await self._process(batch, store, pipelined)

    async def drain(self) -> BatchResult:
        """Wait for the write in flight (sending it again when Redis failed it: the
        caller retries this call until Redis answers, ``stream.rebuild.retry_redis``);
        its applied count and freshness samples. Callers may overlap (the next batch's
        first step and the batch loop's finisher): the write is sent once, and its
        counts go to the first that sees it land, nothing to the other."""
        out = BatchResult()
        if (flight := self._inflight) is None:
            return out
        task, write, received = flight
        if task is None:  # failed before: sent again, once, whoever asks first
            self._inflight = flight = (task := asyncio.ensure_future(write()), write, received)
        try:
            written = await task
        except BaseException:
            if self._inflight is flight:
                self._inflight = (None, write, received)  # the next call writes it again
            raise
        if self._inflight is flight:
            self._inflight = None
            out.applied = written.applied
            _arrived(out, received, written.listed_at)
        return out

    async def _submit(self, write: Callable[[], Awaitable[Written]], received: Arrivals,
                      result: BatchResult) -> None:
        """Send ``write`` once the one before it is done (Redis applies them in order)."""
        before = await self.drain()
        result.applied = before.applied
        result.freshness_s, result.refold_s = before.freshness_s, before.refold_s
        self._inflight = (asyncio.ensure_future(write()), write, received)

    @asynccontextmanager
    async def writes_paused(self) -> AsyncIterator[None]:
        """No batch or idle group of this processor sends a write inside (after
        :meth:`drain`, none is in flight either): a stale Redis is wiped in there."""
        async with self._lock:
            yield

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Around the steps of one batch whose history writes are deferred to its end
        (``TableHistoryStore(deferred=True)``): the idle timer stays out meanwhile."""
        self._in_batch = True
        try:
            yield
        finally:
            self._in_batch = False

    async def relist_idle(self, store: HistoryStore) -> BatchResult:
        """Re-list waiting and swept entities while no batch comes (the idle timer): after
        a burst the last waiting lists, after ``streamrec train`` on a quiet shop the
        recently active users, who would otherwise keep the retrain's plain lists until
        their next event. In groups (``stream.relister.IDLE_GROUP``), batches in between;
        nothing while the worker is behind or busy (:class:`SpareTime`)."""
        total = BatchResult()
        while self._idle():
            async with self._lock:
                if not self._idle():
                    break
                model = self.model()
                listed, times = self.relister.waiting(store, behind=False, skip=(),
                                                      now=time.time(), idle=True)
                swept = self.relister.swept(model, store, skip=listed, idle=True,
                                            most=IDLE_GROUP - len(times))
                if not listed and not swept and not times:
                    break
                try:
                    write, _ = await self.relister.write(
                        model, changed={}, listed={**swept, **listed}, ops=[], processed=None,
                        done=list(times), off_loop=True)
                    written = await write()
                except BaseException:  # the timer logs it; the next run takes them again
                    self.relister.coalescer.give_back(times, time.time())
                    self.sweep.give_back(swept)
                    raise
                # Their events' lists changed at their batch (first level): re-folds only.
                _arrived(total, ([], [t for ts in times.values() for t in ts]), written.listed_at)
                total.entities_refreshed += len(listed)
                total.entities_swept += len(swept)
                if not self.sweep.pending and not self.relister.coalescer.pending:
                    break
            await asyncio.sleep(IDLE_PAUSE_S)
        return total

    def _idle(self) -> bool:
        # Not while a batch's write is in flight: an idle group's lists would land first.
        return (not self.behind and not self._in_batch and self._inflight is None
                and self.spare.spare(time.monotonic()))

    async def _process(
        self, batch: Sequence[tuple[TopicEvent, int]], store: HistoryStore, pipelined: bool
    ) -> BatchResult:
        events_in = sum(ev.type != "exposure" for ev, _ in batch)
        advance(self.clocks, batch)
        # The write in flight (the step before, pipelined) may hold keys of an id this
        # step forgets: it lands first, or it would bring them back after the erase.
        drained = (await self.drain() if self._inflight is not None
                   and any(ev.type == "forget" for ev, _ in batch) else BatchResult())
        # Forgotten ids first: before any history or experiment outcome is read.
        batch = await self.forgetting.screen(batch, store)
        # Experiment outcomes (own dedupe); exposure records are for them alone.
        await self.outcomes.apply(ev for ev, _ in batch)
        batch = [(ev, p) for ev, p in batch if ev.type != "exposure"]
        result = BatchResult(events=events_in, applied=drained.applied,
                             freshness_s=drained.freshness_s, refold_s=drained.refold_s)
        if not batch:
            return result
        # Trending decays on the server's clock: a client's timestamp cannot inflate it.
        t0 = await self._epoch(max(e.receive_time for e, _ in batch),
                               min(e.receive_time for e, _ in batch))
        # An anonymous history an older version wrote gets its cart (stream.legacy_history).
        legacy = await legacy_carts(self.writer.r, self.keys, batch, store.get)
        changed, unchanged, received, ops = self._step_entities(batch, store, t0, result,
                                                                legacy)
        changed.update(await self.relister.lists_behind(unchanged))
        await self._relist(batch, store, changed, received, ops, result, pipelined)
        result.applied += drained.applied
        result.freshness_s = [*drained.freshness_s, *result.freshness_s]
        result.refold_s = [*drained.refold_s, *result.refold_s]
        return result

    def _step_entities(
        self, batch: Sequence[tuple[TopicEvent, int]], store: HistoryStore, t0: float,
        result: BatchResult, legacy: dict[str, dict[str, Any]] | None = None,
    ) -> tuple[dict[str, History], dict[str, History], dict[str, list[float]],
               list[EventOps]]:
        """The batch step of every entity: histories stored, forwards and refusals into
        ``result``; returns the changed and the unchanged histories (of entities with
        item events), the receive times of the events each history took in, and the
        counted effects in batch order. ``legacy``: stored values to read instead of the
        store's (an older version's anonymous histories with their cart).

        Batch order, not entity order: within one partition that is the log order,
        whatever the batch boundaries, and the writer charges each event's share of its
        item's newcomer budget (:mod:`recommender.abuse` rule 5, one share per partition)
        in that order, so the live run, a replay and any number of workers grant the same
        shares."""
        cfg = self.config
        placed: list[tuple[int, EventOps]] = []
        changed: dict[str, History] = {}
        unchanged: dict[str, History] = {}
        received: dict[str, list[float]] = {}
        landmark = (t0, cfg.trending_half_life_s)
        for entity, items in group_by_entity(enumerate(batch),
                                             lambda at: at[1][0].entity).items():
            events = [ev for _, (ev, _) in items]
            stored = (legacy or {}).get(entity) or store.get(entity)
            step = step_entity(History.from_dict(stored), events, t0=t0,
                               config=self._step)
            collect_forwards(step, events, entity, result.forwards)
            result.identify_refused += step.identify_refused
            placed.extend((items[pos][0], identify_ops(events[pos], self.keys, cfg.bounds))
                          for pos in step.identified)
            placed.extend((items[pos][0], event_ops(
                events[pos], entity=entity, counted=counted, keys=self.keys,
                policy=cfg.abuse, bounds=cfg.bounds, partition=items[pos][1][1],
                landmark=landmark))
                for pos, counted in step.counted)
            if self.forgetting.sweeping:  # what an id back after its forget adds stays
                for pos, counted in [*((p, None) for p in step.identified), *step.counted]:
                    self.forgetting.claim(added_members(events[pos], entity=entity,
                                                        counted=counted, keys=self.keys))
            if step.changed:
                part = items[-1][1][1]  # with its expiry (stream.history_expiry)
                store.put(entity, stamped(step.history.to_dict(), events, cfg.bounds, part,
                                          stored), part)
                changed[entity] = step.history
            elif step.has_items:
                unchanged[entity] = step.history
            # A forwarded copy (an identify's handover, a later anonymous event) was
            # sampled at its own entity; its original receive time would count the time
            # before the identify as delay.
            received[entity] = [REPLAYED if events[pos].event_id in self.replayed else t
                                for pos in step.added
                                if (t := events[pos].received_at) and not events[pos].forwarded]
        placed.sort(key=lambda at: at[0])
        return changed, unchanged, received, [ops for _, ops in placed]

    async def _relist(self, batch: Sequence[tuple[TopicEvent, int]], store: HistoryStore,
                      changed: dict[str, History], received: dict[str, list[float]],
                      ops: list[EventOps], result: BatchResult, pipelined: bool) -> None:
        """Write the batch: counted effects, the changed entities' recent lists, and the
        stored lists of those not waiting (:class:`~stream.relister.Relister`), plus the
        waiting ones now due and the swept ones; sets ``result``'s counts."""
        now = time.time()
        coalescer = self.relister.coalescer
        deferred: list[str] = []
        model = self.model()
        # Behind, with re-folds already queued, or more than a batch re-folds: the batch's
        # own re-folds queue behind the waiting ones (each entity's list changes now, at
        # the first level). A lone event after idle is re-folded at once. Without a model
        # there is nothing to re-fold (recent lists are written now): nothing queues.
        deferred_all = model is not None and coalescer.enabled and (
            self.behind or coalescer.pending > 0 or len(changed) > coalescer.per_batch)
        if deferred_all:
            deferred = coalescer.defer({e: received.get(e, ()) for e in changed}, now)
            own: dict[str, History] = {}
        else:
            own = changed
        busy = not self.spare.spare(mono := time.monotonic()) or self.behind  # due: fewer
        waiting, times = self.relister.waiting(store, behind=busy, skip=own, now=now,
                                               most=self.spare.due_budget(IDLE_GROUP, mono))
        listed = {**waiting, **own}
        swept = self.relister.swept(model, store, skip={**changed, **listed},
                                    behind=busy, beside=len(changed))
        try:
            write, result.quick_lists = await self.relister.write(
                model, changed=changed, listed={**swept, **listed}, ops=ops,
                processed=result.events if self.config.count_stats else None,
                # An identify is the anonymous id's event (its entity), user_id set or not.
                anonymous={ev.entity for ev, _ in batch
                           if ev.user_id is None or ev.type == "identify"},
                deferred=deferred, done=list(times),
                quick=[e for e in changed if e not in listed] if deferred_all else ())
            # Receive time, not event time: a backfill dated days back is as recent as its
            # arrival, and the sweep's window is about who shops now (the replay, whose
            # events arrive at their event time, gives the same order).
            self.sweep.touched(changed, max(e.receive_time for e, _ in batch))
            # Every changed entity's list changes now (re-folded, or at the first level while
            # its re-fold waits); the re-folds now are its own and the waiting ones taken.
            refolded = [t for e in own for t in received.get(e, ())]
            refolded += [t for ts in times.values() for t in ts]
            arrived = ([t for e in changed for t in received.get(e, ())], refolded)
            await self.forgetting.settled()  # lands after the forget sweep's removal in flight
            if pipelined:
                await self._submit(write, arrived, result)
            else:
                result.applied = (written := await write()).applied
                _arrived(result, arrived, written.listed_at)
        except BaseException:
            # Redis failed the step before its write was sent (retry_redis tries it
            # again): the re-folds and sweep entities it took wait again, first, or they
            # were lost. Its new deferrals stay queued here, unmirrored (Coalescer doc).
            coalescer.give_back(times, time.time())
            self.sweep.give_back(swept)
            raise
        result.entities_refreshed = len(listed)
        result.entities_swept = len(swept)


def _arrived(result: BatchResult, received: Arrivals, listed_at: float | None) -> None:
    """Both freshness levels' samples of a write just done: its events' receive times (first
    change, re-fold) → when Redis wrote its lists (now if none); new lists, never extended."""
    done = time.time() if listed_at is None else listed_at
    result.freshness_s = [*result.freshness_s, *(done - t for t in received[0])]
    result.refold_s = [*result.refold_s, *(done - t for t in received[1])]
