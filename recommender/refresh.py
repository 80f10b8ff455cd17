"""The steps of an entity's refresh, one function each.

:func:`recommender.relist.relist` — the list half of the batch step that the streaming
worker (``stream/processor.py``) and its in-memory replay in the evaluator
(``recommender/evaluation/worker_sim.py``) both run, so the list that is evaluated is
the list that is served — is built from these:

:func:`refold_rows`
    fold the entities' histories into the live model and rank items for them: the
    ``personal`` list. Items are ranked within the worker's candidate pool (the items of
    largest factor norm) **plus each entity's own neighbourhood** (the co-occurrence
    partners and model neighbours of its recent items), so long-tail items close to what
    the entity just did are ranked exactly even though the pool holds only the head.
:func:`entity_blend`
    fuse the personal list with the entity's session, similar, trending and popular
    candidates (:func:`recommender.blend.blend`): the list that is stored and served,
    defined for one entity. :func:`recommender.blend_many.blend_many` computes the same
    lists for a whole batch at once and is what runs.
:class:`RefreshSweep`
    which entities to re-list after a new model goes live although they had no event:
    the most recently active ones, a bounded number per batch.
:func:`grown`
    the retrain timer's growth trigger.

Pure: numpy arrays and plain containers in and out, no I/O.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from recommender.blend import DEFAULT_WEIGHTS, Blended, BlendWeights, blend, merge_recent
from recommender.foldin import fold_in
from recommender.idmap import IdMap
from recommender.topn import top_n

Scored = tuple[str, float]

__all__ = ["REASONS", "RefreshSweep", "entity_blend", "grown", "refold_rows"]

#: The ``reason`` an item of a stored blended list shows, per blend source (API.md names).
REASONS: dict[str, str] = {
    "personal": "personalized", "session": "session", "similar": "similar",
    "trending": "trending", "popular": "popular",
}


def _known_rows(
    weights: Sequence[Mapping[str, float]], item_map: IdMap
) -> tuple[list[tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]], list[int]]:
    """Per entity with at least one item the model knows, its ``(rows, weights)`` of those
    items (in mapping order), and the entities' positions. All entities are looked up
    in one pass: per-entity arrays were a dozen numpy calls each."""
    sizes = [len(w) for w in weights]
    total = sum(sizes)
    idx = item_map.indices([i for w in weights for i in w])
    vals = np.fromiter((x for w in weights for x in w.values()), dtype=np.float32,
                       count=total)
    known = idx >= 0
    counts = np.bincount(np.repeat(np.arange(len(weights)), sizes)[known],
                         minlength=len(weights))
    keep = np.flatnonzero(counts).tolist()
    cuts = np.cumsum(counts)[keep]
    idx, vals = idx[known], vals[known]
    rows = [(idx[hi - counts[pos]:hi], vals[hi - counts[pos]:hi])
            for pos, hi in zip(keep, cuts.tolist(), strict=True)]
    return rows, keep


def _in_sorted(values: npt.NDArray[np.int64],
               sorted_ref: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    if len(sorted_ref) == 0:
        return np.zeros(values.shape, dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_ref, values), len(sorted_ref) - 1)
    return np.asarray(sorted_ref[pos] == values)


def refold_rows(
    weights: Sequence[Mapping[str, float]],
    *,
    item_map: IdMap,
    item_factors: npt.NDArray[np.floating],
    yty: npt.NDArray[np.float64],
    regularization: float,
    alpha: float,
    n: int,
    pool: npt.NDArray[np.int64] | None = None,
    pool_factors: npt.NDArray[np.floating] | None = None,
    neighbours: Sequence[Collection[str]] | None = None,
    neighbour_rows: Sequence[npt.NDArray[np.int64]] | None = None,
) -> list[tuple[int, npt.NDArray[np.int64], npt.NDArray[np.floating]]]:
    """Fold entities in against fixed item factors and rank their personal lists, as
    rows of the model (``IdMap.ids_of`` turns them into ids).

    Parameters
    ----------
    weights
        One ``item -> weight`` mapping per entity (``History.item_weights()``).
    item_map, item_factors, yty, regularization, alpha
        The live model: item ids and factors, their Gramian and the ALS parameters.
    n
        List length.
    pool
        Sorted rows of the items every entity is ranked against (``None``: all items).
    pool_factors
        ``item_factors[pool]`` if already at hand.
    neighbours
        Per entity, further item ids to rank (its neighbourhood); items the model does
        not know are skipped. Ignored without a pool (every item is ranked then).
    neighbour_rows
        The same as rows of the model (``-1`` skipped), when the caller has them already:
        the worker codes each recent item's neighbour list once per batch instead of once
        per entity that shares it. Takes precedence over ``neighbours``.

    Returns
    -------
    list of tuple
        ``(position in weights, item rows, scores)`` best first, for each entity with at
        least one item the model knows; the entity's own items are never listed.
    """
    rows, keep = _known_rows(weights, item_map)
    if not keep:
        return []
    # fold_in works in float64 on the matrix it is given: hand it only the rows this
    # batch touches (converting all 85k Taobao items cost ~20 ms per batch).
    touched = np.unique(np.concatenate([r[0] for r in rows]))
    compact = [(np.searchsorted(touched, r[0]), r[1]) for r in rows]
    factors = fold_in(item_factors[touched], rows=compact, regularization=regularization,
                      alpha=alpha, yty=yty)
    if pool is None:
        scores = factors @ np.asarray(item_factors).T
        exclude: list[npt.NDArray[np.int64]] | None = [r[0] for r in rows]
    else:
        if pool_factors is None:
            pool_factors = np.ascontiguousarray(item_factors[pool])
        scores = factors @ pool_factors.T
        # The entities' own items, at their positions in the sorted pool, all at once.
        own_e = np.repeat(np.arange(len(rows)), [r[0].size for r in rows])
        own_r = np.concatenate([r[0] for r in rows])
        at = np.minimum(np.searchsorted(pool, own_r), len(pool) - 1)
        hit = pool[at] == own_r
        scores[own_e[hit], at[hit]] = -np.inf
        exclude = None
    idx, vals = top_n(scores, n, exclude=exclude, overwrite=True)
    if pool is not None:
        idx = np.where(idx >= 0, pool[np.maximum(idx, 0)], -1)
        if neighbour_rows is None and neighbours is not None:
            neighbour_rows = [item_map.indices(list(neighbours[pos]), add=False)
                              for pos in range(len(weights))]
        if neighbour_rows is not None:
            idx, vals = _with_neighbours(idx, vals, factors, rows, keep, item_factors, pool,
                                         neighbour_rows, n)
    return [(pos, idx[row][idx[row] >= 0], vals[row][idx[row] >= 0])
            for row, pos in enumerate(keep)]


def _with_neighbours(
    idx: npt.NDArray[np.int64], vals: npt.NDArray[np.floating], factors: npt.NDArray[np.floating],
    rows: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]], keep: list[int],
    item_factors: npt.NDArray[np.floating], pool: npt.NDArray[np.int64],
    neighbour_rows: Sequence[npt.NDArray[np.int64]], n: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.floating]]:
    """Each entity's pool top-``n`` merged with its scored neighbourhood (items outside the
    pool, not its own), best first, ties by ascending item row; padded with -1 / -inf.

    Vectorised over all entities: the neighbourhoods of a batch are thousands of items,
    and a per-entity loop over them was a fifth of the worker's CPU. Only a neighbour
    scoring at least its entity's ``n``-th listed item can enter that list (the pool
    holds the items of largest norm, so few do): the others are dropped before the
    deduplication and the merge sort, which were most of this step's time."""
    m = len(keep)
    n_items = item_factors.shape[0]
    per = [np.asarray(neighbour_rows[pos], dtype=np.int64) for pos in keep]
    ent = np.repeat(np.arange(m, dtype=np.int64), [a.size for a in per])
    cand = np.concatenate(per) if per else np.zeros(0, dtype=np.int64)
    ok = cand >= 0
    ent, cand = ent[ok], cand[ok]
    in_pool = np.zeros(n_items, dtype=bool)  # a table: cheaper than a search per item
    in_pool[pool] = True
    ok = ~in_pool[cand]
    ent, cand = ent[ok], cand[ok]
    if cand.size == 0 or n <= 0:
        return idx, vals
    score = np.einsum("ij,ij->i", np.asarray(item_factors[cand], dtype=factors.dtype),
                      factors[ent]).astype(vals.dtype)
    ok = score >= vals[ent, n - 1]  # -inf when the entity's list is shorter than n
    # a repeated pair has the same score: keep one
    key, first = np.unique(ent[ok] * n_items + cand[ok], return_index=True)
    score = score[ok][first]
    own = np.sort(np.concatenate([j * n_items + r[0] for j, r in enumerate(rows)]))
    mine = _in_sorted(key, own)
    key, score = key[~mine], score[~mine]
    if key.size == 0:
        return idx, vals
    return _merged(idx, vals, key // n_items, key % n_items, score, n)


def _merged(idx: npt.NDArray[np.int64], vals: npt.NDArray[np.floating],
            ent: npt.NDArray[np.int64], cand: npt.NDArray[np.int64],
            score: npt.NDArray[np.floating], n: int
            ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.floating]]:
    """The top-``n`` lists ``idx`` / ``vals`` with the candidates ``(ent, cand, score)``
    merged in: the rows of the entities with candidates are re-ranked, best first, ties
    by ascending item row; the other rows are returned as they are."""
    touched = np.unique(ent)
    sub_i, sub_v = idx[touched], vals[touched]
    local = np.searchsorted(touched, ent)
    valid = sub_i >= 0
    all_e = np.concatenate([np.nonzero(valid)[0], local])
    all_i = np.concatenate([sub_i[valid], cand])
    all_v = np.concatenate([sub_v[valid], score])
    order = np.lexsort((all_i, -all_v, all_e))
    all_e, all_i, all_v = all_e[order], all_i[order], all_v[order]
    counts = np.bincount(all_e, minlength=touched.size)
    rank = np.arange(all_e.size) - (np.cumsum(counts) - counts)[all_e]
    top = rank < n
    out_i, out_v = idx.copy(), vals.copy()
    out_i[touched], out_v[touched] = -1, -np.inf
    out_i[touched[all_e[top]], rank[top]] = all_i[top]
    out_v[touched[all_e[top]], rank[top]] = all_v[top]
    return out_i, out_v


def entity_blend(
    *,
    n: int,
    personal: Sequence[Scored],
    session: Sequence[Sequence[Scored]],
    similar: Sequence[Sequence[Scored]],
    trending: Sequence[Scored],
    popular: Sequence[Scored],
    known: Collection[str],
    history_size: int,
    weights: BlendWeights = DEFAULT_WEIGHTS,
) -> list[Blended[str]]:
    """The list the worker stores for an entity: every source fused by the blend.

    Parameters
    ----------
    n
        List length.
    personal
        The entity's fold-in list (:func:`refold_rows`, as ids).
    session, similar
        Per recent item (newest first), its co-occurrence partners / model neighbours;
        merged with the blend's recency decay (:func:`recommender.blend.merge_recent`).
    trending, popular
        Heads of the global lists.
    known
        The entity's items (never recommended back).
    history_size
        Length of the entity's recent-items list (shrinks the personal weight).
    weights
        Blend weights (production: :data:`recommender.blend.DEFAULT_WEIGHTS`).

    Returns
    -------
    list of Blended
        At most ``n`` items, best first, each with the source that contributed most.
    """
    return blend(
        n=n,
        personal=personal,
        session=merge_recent(session, recency=weights.recency),
        similar=merge_recent(similar, recency=weights.recency),
        trending=trending,
        popular=popular,
        exclude=known,
        weights=weights,
        history_size=history_size,
    )


def grown(new_events: int, trained_events: int, growth: float) -> bool:
    """Whether the data grew enough since the last retrain to retrain again.

    True once what was added since the live model was trained reaches ``growth`` times
    what it was trained on (``growth <= 0``: never). Fold-in keeps users
    current but cannot place items the model has never seen nor move existing items, so
    a model goes stale in proportion to how much of the data it has not seen, not to the
    clock. Retraining at a fixed relative growth also bounds the retrain cost per event:
    a retrain costs about ``c·N`` for ``N`` events and runs after ``growth·N`` new ones,
    i.e. ``c / growth`` per event whatever the event rate.

    Parameters
    ----------
    new_events
        What the log gained since the live model's retrain read it (the worker counts
        messages: end offsets, :mod:`recommender.retrain_policy`).
    trained_events
        What that retrain read, in the same unit.
    growth
        The share (``Settings.retrain_growth``).
    """
    return growth > 0 and new_events >= growth * max(trained_events, 1)


class RefreshSweep:
    """After a model swap, the recently active entities whose lists to rebuild.

    A retrain writes a plain ALS list only for trained users who have no list; every
    other entity keeps the list the old model blended until its next event unless the
    sweep re-lists it on the new one. The
    entities most likely to ask for a list soon are those active most recently, so the
    worker remembers the last ``capacity`` entities it refreshed with the time of their
    refresh (the worker: the batch's newest receive time, so a backfill dated days back
    counts as recent; the replay: event time, which is its receive time) and, once it
    sees a new model version, re-lists those active within ``window_s`` of the newest,
    newest first, at most ``per_batch`` per batch (each costs what an event's refresh
    costs, and a batch must stay short for freshness). The window keeps a quiet shop from
    re-listing sessions that ended hours ago. The worker
    and the evaluator's replay both drive one of these, in batch order.

    Parameters
    ----------
    capacity
        Most entities remembered (``Settings.sweep_entities``; 0 turns sweeping off).
    per_batch
        Most entities re-listed per batch (``Settings.sweep_per_batch``).
    window_s
        Only entities refreshed within this many seconds (as ``touched`` counts) before
        the newest refresh are re-listed (``Settings.sweep_window_s``).
    """

    def __init__(self, capacity: int, per_batch: int, window_s: float = math.inf) -> None:
        self.capacity = max(capacity, 0)
        self.per_batch = max(per_batch, 0)
        self.window_s = window_s
        self._recent: OrderedDict[str, float] = OrderedDict()
        self._newest = -math.inf
        self._pending: list[str] = []
        self._version: Hashable = None

    def touched(self, entities: Iterable[str], ts: float) -> None:
        """Record entities whose lists were just rebuilt because of their own events
        (``ts``: the time of the batch, e.g. its newest event's receive time)."""
        if not self.capacity:
            return
        for entity in entities:
            self._recent[entity] = ts
            self._recent.move_to_end(entity)
        self._newest = max(self._newest, ts)
        while len(self._recent) > self.capacity:
            self._recent.popitem(last=False)

    def take(self, version: Hashable, skip: Collection[str] = (),
             limit: int | None = None) -> list[str]:
        """The entities to re-list in this batch, given the live model's ``version``.

        A version different from the last one seen (re)starts the sweep over the
        remembered entities inside the window, newest first; ``skip`` (the batch's own
        refreshed entities) are not returned, since their lists are rebuilt anyway. At
        most ``per_batch``, and at most ``limit`` when given (the worker's rate while
        it is behind).
        """
        if version is None or not self.capacity:
            return []
        if version != self._version:
            self._version = version
            since = self._newest - self.window_s
            # oldest first: pop() takes the newest
            self._pending = [e for e, ts in self._recent.items() if ts >= since]
        out: list[str] = []
        most = self.per_batch if limit is None else min(self.per_batch, max(limit, 0))
        while self._pending and len(out) < most:
            entity = self._pending.pop()
            if entity not in skip:
                out.append(entity)
        return out

    def give_back(self, entities: Iterable[str]) -> None:
        """Entities :meth:`take` answered whose lists were not written after all (Redis
        failed the worker's step, which it tries again): next in line again, in the
        order taken, or the sweep skipped them for good (they kept the old model's list
        until their next event)."""
        self._pending.extend(reversed(list(entities)))

    def forget(self) -> None:
        """Drop every remembered entity, e.g. after a rebalance moved partitions away:
        another worker owns their histories now, and re-listing them from a copy left
        here could overwrite its fresher list."""
        self._recent.clear()
        self._pending.clear()

    @property
    def pending(self) -> int:
        """Entities still to re-list for the current version."""
        return len(self._pending)

    @property
    def version(self) -> Hashable:
        """The model version the last sweep started for (``None`` before any)."""
        return self._version
