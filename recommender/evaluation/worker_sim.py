"""The streaming worker, replayed in memory: what it would have served at every moment.

:class:`StreamSim` mirrors ``stream/processor.py`` and the worker's retrain timer
(``stream/worker.py``) with the Redis state kept in Python containers:

* per batch, events are grouped by entity in order of first appearance; each event first
  updates the counted item state (``popular``, forward-decayed ``trending``,
  co-occurrence with the entity's recent items before the event, counted once per event
  id and scaled by :func:`recommender.abuse.contribution` over the entity's history),
  then :meth:`recommender.history.History.apply` (histories go through
  ``to_dict``/``from_dict`` as they do through the Faust table);
* entities whose history changed get their recent-items list and, when a model is live,
  the two lists the worker stores, computed by the worker's own functions
  (:mod:`recommender.refresh`): the personal fold-in list (:func:`refold_rows`, ranked
  over the ``foldin_candidates`` pool plus the entity's session and similar candidates)
  and the blended list (:func:`entity_blend`) that the API serves;
* retrains follow the worker's triggers in event time: the first as soon as
  ``retrain_min_events`` events were processed, then every ``retrain_interval_s`` or once
  the data grew by ``retrain_growth`` (:func:`recommender.refresh.grown`). A
  retrain is :func:`recommender.interactions.build_matrix` over every event so far plus
  :func:`recommender.als.train_als`, and gives every trained user the list
  :func:`recommender.topn.recommend_batch` would write (computed lazily, per asked user,
  which gives the same list).
* after a retrain, the worker's refresh sweep (:class:`recommender.refresh.RefreshSweep`)
  re-lists the most recently active entities on the new model, a bounded number per
  batch, replacing the retrain's plain lists with blends.

What is simplified: a retrain is instantaneous at a batch boundary (the worker trains in a
thread for a few seconds and hot-swaps within two more), and the timer is checked at every
batch instead of every 15 s.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from recommender.abuse import AbusePolicy, contribution
from recommender.als import AlsModel, train_als
from recommender.blend import merge_recent
from recommender.cooccurrence import cooccurrence_pairs
from recommender.evaluation.events import Event, backlog_batches
from recommender.foldin import gramian
from recommender.history import History
from recommender.idmap import IdMap
from recommender.interactions import Interactions, build_matrix
from recommender.refresh import RefreshSweep, entity_blend, grown, refold_rows
from recommender.topn import top_n
from recommender.trending import forward_decay, needs_rebase, rebase_factor
from recommender.weights import popularity_weight

Scored = tuple[str, float]
PoolRows = Callable[[npt.NDArray[np.float32], int], "npt.NDArray[np.int64] | None"]


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
        Recent items whose co-occurrence lists the API merges (``core.scored_lists.SESSION_ITEMS``).
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
    retrain_growth
        ``Settings.retrain_growth``: also retrain once the events processed since the
        last retrain reach this share of the events it was trained on (``0``: off).
    sweep_entities, sweep_per_batch, sweep_window_s
        ``Settings.sweep_*``: after a retrain, re-list the most recently active
        entities (within the window, in event time), a bounded number per batch
        (:class:`recommender.refresh.RefreshSweep`; ``0`` entities: off).
    """

    batch_size: int = 500
    batch_within_s: float = 0.05
    history_max: int = 200
    cooc_window: int = 20
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
    sweep_entities: int = 0
    sweep_per_batch: int = 256
    sweep_window_s: float = 3600.0


@dataclass(frozen=True)
class AlsParams:
    """ALS hyper-parameters (``Settings.als_*``) and the recency decay of the weights.

    ``decay_half_life_s=None`` means the production default,
    :data:`recommender.weights.DECAY_HALF_LIFE_S`.
    """

    factors: int = 128
    iterations: int = 10
    regularization: float = 10.0
    alpha: float = 20.0
    decay_half_life_s: float | None = None
    #: Seed of the initial factors (``Settings.als_seed``).
    seed: int = 0


@dataclass
class TrainedModel:
    """One retrain's output, with what fold-in and serving need precomputed.

    Attributes
    ----------
    version
        Sequence number of the retrain.
    item_map, user_map
        Column and row ids of the training matrix.
    als
        The factors and the regularisation / alpha they were trained with.
    yty
        Gramian of the item factors (shared part of every fold-in).
    matrix
        The training weights (users whose lists exclude their training items).
    n_events
        Events that went into the matrix.
    seconds
        Wall time of matrix building plus training.
    """

    version: int
    item_map: IdMap
    user_map: IdMap
    als: AlsModel
    yty: npt.NDArray[np.float64]
    matrix: sp.csr_matrix
    n_events: int
    seconds: float
    pool: npt.NDArray[np.int64] | None = field(default=None, repr=False)
    _pool_factors: npt.NDArray[np.float32] | None = field(default=None, repr=False)
    _unit: npt.NDArray[np.float32] | None = field(default=None, repr=False)
    _valid: npt.NDArray[np.bool_] | None = field(default=None, repr=False)
    _similar: dict[int, list[Scored]] = field(default_factory=dict, repr=False)

    @property
    def item_factors(self) -> npt.NDArray[np.float32]:
        """Item factors, ``(n_items, k)``."""
        return self.als.item_factors

    def pool_factors(self) -> npt.NDArray[np.float32]:
        """Factors of the items the stream ranks (all items without a pool)."""
        if self.pool is None:
            return self.item_factors
        if self._pool_factors is None:
            self._pool_factors = np.ascontiguousarray(self.item_factors[self.pool])
        return self._pool_factors

    def user_list(self, row: int, n: int) -> list[Scored]:
        """The list a retrain writes for its user ``row`` (as ``recommend_batch`` does)."""
        scores = self.als.user_factors[row] @ self.item_factors.T
        start, stop = self.matrix.indptr[row], self.matrix.indptr[row + 1]
        idx, vals = top_n(scores, n, exclude=self.matrix.indices[start:stop])
        return self._scored(idx, vals)

    def _unit_factors(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
        if self._unit is None or self._valid is None:
            norms = np.linalg.norm(self.item_factors, axis=1)
            unit = np.zeros_like(self.item_factors)
            ok = norms > 0
            unit[ok] = self.item_factors[ok] / norms[ok, None]
            self._unit, self._valid = unit, ok
        return self._unit, self._valid

    def prefetch_similar(self, items: Iterable[str], n: int, *, chunk: int = 256) -> None:
        """Compute the neighbour lists of many items at once (one matrix product per
        chunk instead of one vector product per item); same lists as :meth:`similar`."""
        todo = sorted({i for i in (self.item_map.index(x) for x in items)
                       if i is not None and i not in self._similar})
        if not todo:
            return
        unit, valid = self._unit_factors()
        for start in range(0, len(todo), chunk):
            rows = np.asarray(todo[start:start + chunk], dtype=np.int64)
            scores = unit[rows] @ unit.T
            scores[:, ~valid] = -np.inf
            idx, vals = top_n(scores, n, exclude=[[r] for r in rows])
            for j, r in enumerate(rows):
                self._similar[int(r)] = self._scored(idx[j], vals[j]) if valid[r] else []

    def similar(self, item: str, n: int) -> list[Scored]:
        """The item's cosine neighbours in factor space (as ``similar_items`` writes them)."""
        i = self.item_map.index(item)
        if i is None:
            return []
        cached = self._similar.get(i)
        if cached is not None:
            return cached[:n]
        self.prefetch_similar([item], n)
        return self._similar[i][:n]

    def _scored(self, idx: npt.NDArray[np.int64], vals: npt.NDArray[np.floating]) -> list[Scored]:
        ids = self.item_map.ids_of(idx)
        return list(zip(ids, (float(v) for v in vals[idx >= 0]), strict=True))


def fit_model(events: Iterable[Event] | Interactions, params: AlsParams, *, version: int = 0,
              min_events: int = 1) -> TrainedModel | None:
    """Train ALS on events exactly as ``stream/retrain.py`` does.

    Parameters
    ----------
    events
        Every event so far (``build_matrix`` dedupes, resolves and weighs them), or an
        already built matrix.
    params
        Hyper-parameters; ``factors`` is capped below the smaller matrix side, as in the
        retrain.
    version
        Sequence number to record.
    min_events
        Return ``None`` below this many usable events (``retrain_min_events``).

    Returns
    -------
    TrainedModel or None
        ``None`` when there is not enough data.
    """
    started = time.perf_counter()
    if isinstance(events, Interactions):
        data = events
    else:
        data = build_matrix(events, half_life_s=params.decay_half_life_s)
    if data.n_events < min_events or data.matrix.nnz == 0:
        return None
    factors = min(params.factors, max(2, min(data.matrix.shape) - 1))
    als = train_als(data.matrix, factors=factors, iterations=params.iterations,
                    regularization=params.regularization, alpha=params.alpha,
                    random_state=params.seed)
    return TrainedModel(
        version=version, item_map=data.item_map, user_map=data.user_map, als=als,
        yty=gramian(als.item_factors), matrix=data.matrix, n_events=data.n_events,
        seconds=time.perf_counter() - started,
    )


class _Counter:
    """A growable item → score array (stands in for a Redis sorted set)."""

    def __init__(self, items: IdMap) -> None:
        self.items = items
        self.values = np.zeros(1024, dtype=np.float64)

    def add(self, item: str, amount: float) -> None:
        i = self.items.add(item)
        if i >= self.values.size:
            grown = np.zeros(max(2 * self.values.size, i + 1), dtype=np.float64)
            grown[: self.values.size] = self.values
            self.values = grown
        self.values[i] += amount

    def top(self, n: int) -> list[Scored]:
        size = len(self.items)
        vals = self.values[:size]
        idx, top = top_n(np.where(vals > 0, vals, -np.inf), n)
        ids = self.items.ids_of(idx)
        return list(zip(ids, (float(v) for v in top[idx >= 0]), strict=True))


class StreamSim:
    """In-memory replay of the worker (see the module notes).

    Parameters
    ----------
    config
        Worker knobs.
    params
        ALS hyper-parameters of the retrains.
    pool_rows
        ``(item_factors, limit) -> rows or None``: the worker's choice of the items it
        ranks refolded users against (``stream.live_model.candidate_rows``). Without it,
        and whenever ``config.foldin_candidates`` is 0, all items are ranked.
    """

    def __init__(self, config: StreamConfig, params: AlsParams,
                 pool_rows: PoolRows | None = None) -> None:
        self.config = config
        self.params = params
        self.pool_rows = pool_rows
        self.tables: dict[str, dict[str, object]] = {}
        self.recent: dict[str, list[str]] = {}
        self.seen: set[str] = set()
        self.items = IdMap()
        self.popular = _Counter(self.items)
        self.trending = _Counter(self.items)
        self.t0: float | None = None
        self.cooc: dict[str, dict[str, float]] = {}
        self._cooc_top: dict[str, list[Scored]] = {}
        self.lists: dict[str, tuple[TrainedModel, int] | tuple[TrainedModel, list[Scored]]] = {}
        self.model: TrainedModel | None = None
        self.log: list[Event] = []
        self.processed = 0
        self.trained_at = -np.inf
        self.last_attempt = -np.inf
        self.retrains = 0
        self.trained_log_len = -1
        self.trained_processed = 0
        self.blended: dict[str, list[tuple[str, float, str]]] = {}
        self.sweep = RefreshSweep(config.sweep_entities, config.sweep_per_batch,
                                  config.sweep_window_s)
        self.swept = 0
        self.retrain_seconds = 0.0
        self.update_seconds = 0.0
        self.updated_events = 0
        self.count_seconds = 0.0

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
        if self.model is None:
            due = self.processed >= cfg.retrain_min_events and now - self.last_attempt > 60.0
        elif cfg.retrain_every_events > 0:
            due = self.processed - self.trained_log_len >= cfg.retrain_every_events
        else:
            due = now - self.trained_at >= cfg.retrain_interval_s or grown(
                self.processed - self.trained_processed, self.model.n_events,
                cfg.retrain_growth)
        return self.retrain(now) if due else False

    def retrain(self, now: float) -> bool:
        """Full retrain on everything processed so far; True when a model was published."""
        self.last_attempt = now
        model = fit_model(self.log, self.params, version=self.retrains + 1,
                          min_events=self.config.retrain_min_events)
        if model is None:
            return False
        self.retrains += 1
        self.retrain_seconds += model.seconds
        if self.pool_rows is not None and self.config.foldin_candidates > 0:
            model.pool = self.pool_rows(model.item_factors, self.config.foldin_candidates)
        self.model = model
        self.trained_log_len = len(self.log)
        self.trained_processed = self.processed
        self.trained_at = now
        for row, user in enumerate(model.user_map):
            self.lists[user] = (model, row)
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
        cfg = self.config
        t0 = self._epoch(max(e["ts"] for e in batch), min(e["ts"] for e in batch))
        by_entity: dict[str, list[Event]] = {}
        for ev in batch:
            by_entity.setdefault(ev["entity"], []).append(ev)
        refreshed: dict[str, History] = {}
        for entity, evs in by_entity.items():
            hist = History.from_dict(self.tables.get(entity))
            changed = False
            for ev in evs:
                tick = time.perf_counter()
                self._count(ev, hist.recent_items(cfg.cooc_window), t0, hist.entries)
                if timed:
                    self.count_seconds += time.perf_counter() - tick
                if ev["item_id"] and ev["type"] != "impression":
                    entry = (str(ev["event_id"]), str(ev["item_id"]), str(ev["type"]),
                             float(ev["ts"]))
                    if hist.apply([entry], max_entries=cfg.history_max):
                        changed = True
            if changed:
                self.tables[entity] = hist.to_dict()
                refreshed[entity] = hist
        for entity, hist in refreshed.items():
            self.recent[entity] = hist.recent_items(cfg.recent_items)
        listed = {**self._swept(skip=refreshed), **refreshed}
        if self.model is not None and listed:
            self._refresh(self.model, listed)
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
        model = self.model
        if model is None:
            return
        while True:
            listed = self._swept()
            if listed:
                self._refresh(model, listed)
            if not self.sweep.pending:
                return

    def _swept(self, skip: Collection[str] = ()) -> dict[str, History]:
        """The histories of the entities the sweep re-lists now (none without a model)."""
        out: dict[str, History] = {}
        for entity in self.sweep.take(self.model.version if self.model else None, skip=skip):
            raw = self.tables.get(entity)
            if raw:
                out[entity] = History.from_dict(raw)
        self.swept += len(out)
        return out

    def _epoch(self, batch_max_ts: float, batch_min_ts: float) -> float:
        hl = self.config.trending_half_life_s
        if self.t0 is None:
            self.t0 = float(int(batch_min_ts))
        if needs_rebase(batch_max_ts, self.t0, hl):
            new_t0 = float(int(batch_max_ts))
            self.trending.values *= rebase_factor(self.t0, new_t0, hl)
            self.t0 = new_t0
        return self.t0

    def _count(self, ev: Event, recent: list[str], t0: float,
               prior: Sequence[Sequence[object]]) -> None:
        event_id = str(ev["event_id"])
        if event_id in self.seen:
            return
        self.seen.add(event_id)
        weight = popularity_weight(str(ev["type"]), ev.get("quantity"))
        item = ev["item_id"]
        if not item or weight <= 0:
            return
        policy = self.config.abuse
        if policy is not None:
            weight *= contribution(event_id=event_id, item_id=str(item),
                                   event_type=str(ev["type"]), ts=float(ev["ts"]),
                                   prior=prior, policy=policy)
            if weight <= 0:
                return
        self.popular.add(item, weight)
        decay = forward_decay(float(ev["ts"]), t0=t0, half_life_s=self.config.trending_half_life_s)
        self.trending.add(item, weight * decay)
        for a, b, w in cooccurrence_pairs(item, recent, weight=weight,
                                          window=self.config.cooc_window):
            partners = self.cooc.setdefault(a, {})
            partners[b] = partners.get(b, 0.0) + w
            self._cooc_top.pop(a, None)

    def _refresh(self, model: TrainedModel, refreshed: dict[str, History]) -> None:
        """Personal and blended lists of the refreshed entities, as the worker stores them."""
        cfg = self.config
        entities = list(refreshed)
        depth = cfg.blend_depth
        session = [self.session_lists(e, depth) for e in entities]
        model.prefetch_similar([i for e in entities for i in self._similar_anchors(model, e)],
                               depth)
        similar = [self.similar_lists(e, depth) for e in entities]
        neighbours = [{i for lst in (*session[j], *similar[j]) for i, _ in lst}
                      for j in range(len(entities))]
        lists = refold_rows(
            [refreshed[e].item_weights(half_life_s=self.params.decay_half_life_s)
             for e in entities],
            item_map=model.item_map, item_factors=model.item_factors, yty=model.yty,
            regularization=model.als.regularization, alpha=model.als.alpha,
            n=cfg.list_size, pool=model.pool,
            pool_factors=model.pool_factors() if model.pool is not None else None,
            neighbours=neighbours if cfg.foldin_neighbourhood else None,
        )
        personal: dict[int, list[Scored]] = {}
        for pos, rows, vals in lists:
            personal[pos] = list(zip(model.item_map.ids_of(rows), (float(v) for v in vals),
                                     strict=True))
            self.lists[entities[pos]] = (model, personal[pos])
        trending, popular = self.trending_top(depth), self.popular_top(depth)
        for j, entity in enumerate(entities):
            hist = refreshed[entity]
            self.blended[entity] = [
                (b.item_id, b.score, b.source) for b in entity_blend(
                    n=cfg.list_size, personal=personal.get(j, []), session=session[j],
                    similar=similar[j], trending=trending, popular=popular,
                    known=hist.item_ids(), history_size=len(self.recent_items(entity)))
            ]

    # -- what the API would read now ------------------------------------------------------
    def personal(self, entity: str) -> list[Scored]:
        """The entity's stored personal list (``[]`` when it has none)."""
        stored = self.lists.get(entity)
        if stored is None:
            return []
        model, payload = stored
        if isinstance(payload, int):
            return model.user_list(payload, self.config.list_size)
        return payload

    def recent_items(self, entity: str) -> list[str]:
        """The entity's stored recent items, newest first."""
        return self.recent.get(entity, [])

    def cooc_top(self, item: str, n: int) -> list[Scored]:
        """The item's co-occurrence partners, best first (``ZREVRANGE item_cooc``)."""
        cached = self._cooc_top.get(item)
        if cached is None or len(cached) < n:
            partners = self.cooc.get(item, {})
            cached = sorted(partners.items(), key=lambda p: -p[1])[: max(n, 1)]
            self._cooc_top[item] = cached
        return cached[:n]

    def session_lists(self, entity: str, n: int) -> list[list[Scored]]:
        """Co-occurrence lists of the entity's recent items (newest first), as the API
        reads them for the session source."""
        recent = self.recent_items(entity)[: self.config.session_items]
        return [self.cooc_top(i, n) for i in recent]

    def _similar_anchors(self, model: TrainedModel, entity: str) -> list[str]:
        recent = [i for i in self.recent_items(entity) if i in model.item_map]
        return recent[: self.config.similar_items]

    def similar_lists(self, entity: str, n: int) -> list[list[Scored]]:
        """Model neighbour lists of the most recent items the live model knows."""
        model = self.model
        if model is None or self.config.similar_items <= 0:
            return []
        return [model.similar(i, n) for i in self._similar_anchors(model, entity)]

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
        return self.popular.top(n)

    def trending_top(self, n: int) -> list[Scored]:
        """The ``trending`` sorted set's head."""
        return self.trending.top(n)
