"""The streaming worker, replayed in memory: what it would have served at every moment.

:class:`StreamSim` runs every batch through the worker's own batch step and keeps in
Python containers what the worker keeps in its Faust table and in Redis:

* per batch, :func:`recommender.batch_step.step_entity` per entity (in order of first
  appearance): histories updated event by event (through ``to_dict``/``from_dict``, as
  through the Faust table), each event's counted increments (popularity, forward-decayed
  trending, co-occurrence with the entity's recent items before the event, scaled by
  the abuse policy from the history's receipts), applied once per event id by
  :class:`~recommender.evaluation.replay_state.ItemCounts`;
* entities whose history changed get their recent-items list and, when a model is live,
  the two lists the worker computes with :func:`recommender.relist.relist`: the personal
  fold-in list (ranked over the ``foldin_candidates`` pool plus the entity's session and
  similar candidates) and the blended list the API serves;
* retrains follow the worker's triggers in event time: the first as soon as
  ``retrain_min_events`` events were processed, then once the log grew by
  ``retrain_growth`` since the last one and at least ``retrain_min_gap_s`` after it
  (every ``retrain_interval_s`` when the growth share is 0;
  :func:`recommender.retrain_policy.retrain_due`, on the events replayed so far, which
  here are also the log's). A retrain is
  :func:`~recommender.evaluation.replay_model.fit_model` over every event so far and
  gives every trained user the list :func:`recommender.topn.recommend_batch` would write
  (computed lazily, per asked user, which gives the same list);
* after a retrain, the worker's refresh sweep (:class:`recommender.refresh.RefreshSweep`)
  re-lists the most recently active entities on the new model, a bounded number per
  batch, replacing the retrain's plain lists with blends.

What is simplified: a retrain is instantaneous at a batch boundary (the worker trains in a
thread for a few seconds and hot-swaps within two more), the timer is checked at every
batch instead of every 15 s, and a batch's lists blend the co-occurrence, trending and
popular lists after that batch's own increments (the worker reads them before, as it
writes the increments and the lists in one Redis round trip). Identify events never
reach the replay (the evaluator resolves aliases up front,
``recommender.evaluation.events.prepare_events``). Two bounds the worker's Redis writer
applies across all workers are not modelled: the newcomer budget (rule 5 of
:mod:`recommender.abuse`: the increments of not yet trusted ids to one item per window
are capped together, ``Settings.abuse_newcomer_budget`` split into one share per
``events`` partition; the replay, which has no partitions, counts them at their
trust-discounted weight) and the trims of the popular/trending sets and co-occurrence
lists (``Settings.ranked_items_max``, ``cooc_max``; the replay keeps every item and
partner). Recorded events arrive when they happen: their receive time is their ``ts``.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

from recommender.abuse import AbusePolicy
from recommender.batch_step import PlainEvent, StepConfig, group_by_entity, step_entity
from recommender.blend import merge_recent
from recommender.evaluation.events import Event, backlog_batches
from recommender.evaluation.replay_model import AlsParams, PoolRows, Retrain, fit_model
from recommender.evaluation.replay_state import ItemCounts
from recommender.history import History
from recommender.model import FoldInModel, candidate_rows
from recommender.refresh import RefreshSweep
from recommender.relist import anchors, relist
from recommender.retrain_policy import retrain_due

Scored = tuple[str, float]


@dataclass(frozen=True)
class StreamConfig:
    """The worker's knobs (mirrored from ``core.settings.Settings`` by the caller).

    Attributes
    ----------
    batch_size, batch_within_s
        ``stream_batch_size`` and ``stream_batch_within_s``.
    history_max, cooc_window, list_size, trending_half_life_s
        As in ``Settings``.
    retrain_interval_s, retrain_min_events
        The retrain timer (``0`` interval: no timed retrains).
    recent_items
        Recent items the worker stores per entity (``stream.processor.RECENT_ITEMS``).
    session_items
        Recent items whose co-occurrence lists the API merges (``core.limits.SESSION_ITEMS``).
    similar_items
        Recent items whose model neighbours feed the blend's ``similar`` source.
    retrain_every_events
        When positive, the timer runs on an event count instead of event time: a retrain
        every this many processed events (``retrain_interval_s`` × a reference event rate;
        see ``docs/quality.md``). ``0`` keeps the event-time timer.
    abuse
        The manipulation-resistance policy that scales each event's popularity, trending
        and co-occurrence increments (``stream.item_ops.abuse_policy(settings)``); ``None``
        counts every event fully.
    foldin_candidates
        ``Settings.foldin_candidates``: the worker ranks refolded users against this many
        items only (chosen by ``pool_rows``, see :class:`StreamSim`); ``0`` ranks all.
    foldin_neighbourhood
        Also rank each refolded entity's neighbourhood (the session and similar
        candidates of its recent items), as the worker does.
    blend_depth
        Candidates per source read for the stored blend (``Settings.blend_depth``).
    retrain_min_gap_s
        ``Settings.retrain_min_gap_s``: least event-time seconds between two retrains.
    retrain_growth
        ``Settings.retrain_growth``: retrain once the log grew by this share of what the
        last retrain read, never before (``0``: every ``retrain_interval_s`` instead).
    sweep_entities, sweep_per_batch, sweep_window_s
        ``Settings.sweep_*``: after a retrain, re-list the most recently active
        entities (within the window, in event time), a bounded number per batch
        (:class:`recommender.refresh.RefreshSweep`; ``0`` entities: off).
    bought_max, identify_max_links
        ``Settings.bought_max`` (purchases a history remembers; ``None``: all) and
        ``Settings.identify_max_links``, as the batch step reads them.
    cart_max
        ``Settings.cart_max``: the cart an anonymous history follows for its identify, as
        the worker's does (``None``: not followed).
    """

    batch_size: int = 500
    batch_within_s: float = 0.05
    history_max: int = 200
    cooc_window: int = 5
    list_size: int = 100
    trending_half_life_s: float = 7200.0
    retrain_interval_s: float = 600.0
    retrain_min_events: int = 50
    recent_items: int = 20
    session_items: int = 10
    similar_items: int = 3
    retrain_every_events: int = 0
    abuse: AbusePolicy | None = None
    foldin_candidates: int = 0
    foldin_neighbourhood: bool = True
    blend_depth: int = 30
    retrain_growth: float = 0.0
    retrain_min_gap_s: float = 0.0
    sweep_entities: int = 0
    sweep_per_batch: int = 256
    sweep_window_s: float = 3600.0
    bought_max: int | None = None
    identify_max_links: int = 3
    cart_max: int | None = 100


def plain_event(ev: Event) -> PlainEvent:
    """An evaluation event as the batch step reads it."""
    user, received = ev.get("user_id"), ev.get("received_at")
    return PlainEvent(str(ev["event_id"]), str(ev["type"]),
                      str(ev["item_id"]) if ev.get("item_id") else None, float(ev["ts"]),
                      ev.get("quantity"), str(user) if user else None,
                      float(received) if received is not None else None)


class StreamSim:
    """In-memory replay of the worker (see the module notes).

    Parameters
    ----------
    config
        Worker knobs.
    params
        ALS hyper-parameters of the retrains.
    pool_rows
        ``(item_factors, limit) -> rows or None``: the items refolded users are ranked
        against when ``config.foldin_candidates`` is positive (by default the worker's
        own choice, :func:`recommender.model.candidate_rows`); ``None`` ranks all items.
    """

    def __init__(self, config: StreamConfig, params: AlsParams,
                 pool_rows: PoolRows | None = candidate_rows) -> None:
        self.config = config
        self.params = params
        self.pool_rows = pool_rows
        self._step = StepConfig.of(config)
        self.tables: dict[str, dict[str, object]] = {}
        self.recent: dict[str, list[str]] = {}
        self.counts = ItemCounts(config.trending_half_life_s)
        self.lists: dict[str, tuple[Retrain, int] | tuple[FoldInModel, list[Scored]]] = {}
        self.retrained: Retrain | None = None
        self.log: list[Event] = []
        self.processed = 0
        self.trained_at = -np.inf
        self.last_attempt = -np.inf
        self.retrains = 0
        self.trained_log_len = -1
        self.blended: dict[str, list[tuple[str, float, str]]] = {}
        self.sweep = RefreshSweep(config.sweep_entities, config.sweep_per_batch,
                                  config.sweep_window_s)
        self.swept = 0
        self.retrain_seconds = 0.0
        self.update_seconds = 0.0
        self.updated_events = 0
        self.count_seconds = 0.0

    @property
    def model(self) -> FoldInModel | None:
        """The live model (None before the first retrain)."""
        return self.retrained.model if self.retrained is not None else None

    # -- the worker's loop ----------------------------------------------------------------
    def load_backlog(self, events: Sequence[Event]) -> None:
        """Catch up on a backlog in full batches, then retrain once (``streamrec train``)."""
        for batch in backlog_batches(events, size=self.config.batch_size):
            self.process(batch, timed=False)
        if events:
            self.retrain(float(events[-1]["ts"]))

    def record(self, batch: Sequence[Event]) -> None:
        """Only log events (for runs that score no streaming method)."""
        self.log.extend(batch)
        self.processed += len(batch)

    def maybe_retrain(self, now: float) -> bool:
        """Apply the worker's retrain timer at event time ``now``; True if it retrained."""
        cfg = self.config
        if cfg.retrain_interval_s <= 0:
            return False
        if self.retrained is None:
            due = self.processed >= cfg.retrain_min_events and now - self.last_attempt > 60.0
        elif cfg.retrain_every_events > 0:
            due = self.processed - self.trained_log_len >= cfg.retrain_every_events
        else:
            due = retrain_due(ends={0: len(self.log)}, trained={0: self.trained_log_len},
                              trained_at=self.trained_at, now=now, growth=cfg.retrain_growth,
                              min_gap_s=cfg.retrain_min_gap_s,
                              interval_s=cfg.retrain_interval_s)
        return self.retrain(now) if due else False

    def retrain(self, now: float) -> bool:
        """Full retrain on everything processed so far; True when a model was published."""
        self.last_attempt = now
        limit, choose = self.config.foldin_candidates, self.pool_rows
        fitted = fit_model(self.log, self.params, version=self.retrains + 1,
                           min_events=self.config.retrain_min_events,
                           pool=(lambda f: choose(f, limit))
                           if choose is not None and limit > 0 else None)
        if fitted is None:
            return False
        self.retrains += 1
        self.retrain_seconds += fitted.seconds
        self.retrained = fitted
        self.trained_log_len = len(self.log)
        self.trained_at = now
        for row, user in enumerate(fitted.user_map):
            self.lists[user] = (fitted, row)
            self.blended.pop(user, None)  # the retrain overwrites the stored list
        return True

    def process(self, batch: Sequence[Event], *, timed: bool = True) -> None:
        """Apply one batch as ``EventProcessor.process`` does.

        Parameters
        ----------
        batch
            Events of one worker batch, in topic order.
        timed
            Count the wall time towards :attr:`update_seconds` (off for the backlog).
        """
        if not batch:
            return
        started = time.perf_counter()
        plain = [(str(e["entity"]), plain_event(e)) for e in batch]
        # Trending decays on the receive time, as in the worker (recorded events: ts).
        t0 = self.counts.epoch(max(ev.receive_time for _, ev in plain),
                               min(ev.receive_time for _, ev in plain))
        refreshed: dict[str, History] = {}
        for entity, pairs in group_by_entity(plain, lambda pair: pair[0]).items():
            events = [ev for _, ev in pairs]
            step = step_entity(History.from_dict(self.tables.get(entity)), events, t0=t0,
                               config=self._step)
            tick = time.perf_counter()
            for pos, counted in step.counted:
                self.counts.count(events[pos].event_id, counted)
            if timed:
                self.count_seconds += time.perf_counter() - tick
            if step.changed:
                self.tables[entity] = step.history.to_dict()
                refreshed[entity] = step.history
        for entity, hist in refreshed.items():
            self.recent[entity] = hist.recent_items(self.config.recent_items)
        listed = {**self._swept(skip=refreshed), **refreshed}
        if self.retrained is not None and listed:
            self._refresh(self.retrained, listed)
        self.sweep.touched(refreshed, max(float(e["ts"]) for e in batch))
        self.log.extend(batch)
        self.processed += len(batch)
        if timed:
            self.update_seconds += time.perf_counter() - started
            self.updated_events += len(batch)

    def idle(self) -> None:
        """Finish the refresh sweep, as the worker's idle timer does when no batch comes
        (``EventProcessor.relist_idle``); the in-stream replay sweeps per batch only,
        which is never faster than the worker."""
        retrained = self.retrained
        if retrained is None:
            return
        while True:
            listed = self._swept()
            if listed:
                self._refresh(retrained, listed)
            if not self.sweep.pending:
                return

    def _swept(self, skip: Collection[str] = ()) -> dict[str, History]:
        """The histories of the entities the sweep re-lists now (none without a model)."""
        out: dict[str, History] = {}
        model = self.model
        for entity in self.sweep.take(model.version if model else None, skip=skip):
            raw = self.tables.get(entity)
            if raw:
                out[entity] = History.from_dict(raw)
        self.swept += len(out)
        return out

    def _refresh(self, retrained: Retrain, listed: dict[str, History]) -> None:
        """Personal and blended lists of the listed entities, as the worker stores them
        (:func:`recommender.relist.relist`, from this replay's candidate lists)."""
        cfg, model, depth = self.config, retrained.model, self.config.blend_depth
        entities = list(listed)
        recent = [self.recent_items(e) for e in entities]
        anchor = [anchors(r, model, session_items=cfg.session_items,
                          similar_items=cfg.similar_items) for r in recent]
        # One list object per item, shared by the entities that anchor on it (as the
        # worker reads each once): the blend codes each list once.
        cooc = {i: self.counts.cooc_top(i, depth) for a in anchor for i in a.session}
        retrained.prefetch_similar([i for a in anchor for i in a.similar], depth)
        similar = {i: retrained.similar(i, depth) for a in anchor for i in a.similar}
        lists = relist(
            model, [listed[e] for e in entities], recent,
            session=[[cooc[i] for i in a.session] for a in anchor],
            similar=[[similar[i] for i in a.similar] for a in anchor],
            trending=self.trending_top(depth), popular=self.popular_top(depth),
            n=cfg.list_size, neighbourhood=cfg.foldin_neighbourhood,
            half_life_s=self.params.decay_half_life_s)
        for entity, out in zip(entities, lists, strict=True):
            if out.personal is not None:
                rows, vals = out.personal
                self.lists[entity] = (model, list(zip(model.item_map.ids_of(rows),
                                                      (float(v) for v in vals), strict=True)))
            b = out.blended
            self.blended[entity] = list(zip(b.ids, b.scores.tolist(), b.sources, strict=True))

    # -- what the API would read now ------------------------------------------------------
    def personal(self, entity: str) -> list[Scored]:
        """The entity's stored personal list (``[]`` when it has none)."""
        stored = self.lists.get(entity)
        if stored is None:
            return []
        source, payload = stored
        if isinstance(payload, int):
            assert isinstance(source, Retrain)
            return source.user_list(payload, self.config.list_size)
        return payload

    def recent_items(self, entity: str) -> list[str]:
        """The entity's stored recent items, newest first."""
        return self.recent.get(entity, [])

    def session_lists(self, entity: str, n: int) -> list[list[Scored]]:
        """Co-occurrence lists of the entity's recent items (newest first), as the API
        reads them for the session source."""
        recent = self.recent_items(entity)[: self.config.session_items]
        return [self.counts.cooc_top(i, n) for i in recent]

    def similar_lists(self, entity: str, n: int) -> list[list[Scored]]:
        """Model neighbour lists of the most recent items the live model knows."""
        retrained = self.retrained
        if retrained is None or self.config.similar_items <= 0:
            return []
        anchor = anchors(self.recent_items(entity), retrained.model, session_items=0,
                         similar_items=self.config.similar_items)
        return [retrained.similar(i, n) for i in anchor.similar]

    def served(self, entity: str) -> list[Scored]:
        """What the API serves on the home list: the stored list (the blend the worker
        stored at the entity's last refresh, or the retrain's list after a retrain), then
        the API's fallbacks (session, popular) for the rest."""
        stored = self.blended.get(entity)
        head: list[Scored] = ([(i, s) for i, s, _ in stored] if stored is not None
                              else self.personal(entity))
        depth = self.config.blend_depth
        session = merge_recent(self.session_lists(entity, depth))
        out: list[Scored] = []
        seen: set[str] = set()
        for item, score in (*head, *session, *self.popular_top(depth)):
            if item not in seen:
                seen.add(item)
                out.append((item, score))
        return out

    def popular_top(self, n: int) -> list[Scored]:
        """The ``popular`` sorted set's head."""
        return self.counts.popular.top(n)

    def trending_top(self, n: int) -> list[Scored]:
        """The ``trending`` sorted set's head."""
        return self.counts.trending.top(n)
