"""The stored blend of many entities at once, vectorised: same lists as one
:func:`recommender.refresh.entity_blend` call per entity, a fraction of the CPU.

The worker refreshes hundreds of entities per batch. Calling the per-entity blend for
each walked ~500 candidates per entity in Python dictionaries and was the largest single
cost of a batch (a quarter of the worker's samples in a py-spy profile of the Taobao
bench). Here every candidate of every entity becomes one row of a few numpy arrays and
the fusion is a handful of sorts and ``bincount`` calls over all of them:

* ids are coded as small integers once per call; the per-recent-item lists (co-occurrence
  and model neighbours), which entities share, are coded once each;
* an ``(entity, item)`` pair is the integer key ``entity · V + item``;
* :func:`recommender.blend.merge_recent` and :func:`recommender.blend.blend` are
  replayed with the same floating-point operations in the same order (``bincount`` adds a
  bin's weights in input order, as the dictionaries did), and ties are broken by first
  appearance, as their stable sorts do; so the result is identical, not merely close
  (``tests/unit/recommender/test_blend_many.py`` checks it against the per-entity functions).

Pure: plain containers and numpy arrays in and out, no I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from recommender.blend import DEFAULT_WEIGHTS, SOURCES, BlendWeights
from recommender.idmap import IdMap

__all__ = ["BlendedList", "ItemCodes", "RowList", "blend_many"]

Scored = tuple[str, float]
Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class BlendedList:
    """One entity's blended list: ids best first, their fused scores and sources."""

    ids: list[str]
    scores: Floats
    sources: list[str]


@dataclass(frozen=True)
class RowList:
    """A scored list already coded as model rows: ``rows[j]`` is the model row of its
    ``j``-th item, ``scores[j]`` that item's score.

    The worker reads the model-neighbour lists in this form (written by the retrain per
    model version), so neither JSON decoding nor the id → code step runs for them. Only
    valid with an :class:`ItemCodes` built on the same model's ``IdMap``.
    """

    rows: Ints
    scores: Floats

    def __len__(self) -> int:
        """Number of items."""
        return int(self.rows.size)


#: An ``(id, score)`` list, or the same list coded as model rows.
ScoredList = Sequence[Scored] | RowList


class ItemCodes:
    """Item id → integer code for one batch: a model's row for the items it knows (so
    fold-in rows need no translation), ``size + j`` for the ``j``-th other id seen.

    Lists are coded once each, keyed by the identity of the list object: the worker
    hands the same list to every entity that shares a recent item, and uses the same
    codes for its neighbourhood rows (:meth:`rows`) and for the blend.
    """

    def __init__(self, item_map: IdMap | None = None) -> None:
        self._known: Mapping[str, int] = item_map.index_map if item_map is not None else {}
        self._item_map = item_map
        self.size = len(item_map) if item_map is not None else 0
        self.extra: dict[str, int] = {}
        self._lists: dict[int, tuple[Ints, Floats]] = {}

    def ids(self, items: Sequence[str]) -> Ints:
        """Codes of ``items`` (new ids get new codes)."""
        known = self._known.get
        codes = np.array([known(i, -1) for i in items], dtype=np.int64)
        extra = self.extra
        for j in np.flatnonzero(codes < 0).tolist():  # ids the model does not know: rare
            codes[j] = extra.setdefault(items[j], self.size + len(extra))
        return codes

    def code(self, item: str) -> int | None:
        """The code of ``item`` if it has one already, else None."""
        found = self._known.get(item)
        return found if found is not None else self.extra.get(item)

    def scored(self, pairs: ScoredList) -> tuple[Ints, Floats]:
        """``(codes, scores)`` of an ``(id, score)`` list, coded once per list object
        (which the caller keeps alive for the batch); a :class:`RowList` is its codes."""
        if isinstance(pairs, RowList):
            return pairs.rows, pairs.scores
        cached = self._lists.get(id(pairs))
        if cached is None:
            codes = self.ids([p[0] for p in pairs])
            scores = np.fromiter((float(p[1]) for p in pairs), dtype=np.float64,
                                 count=len(pairs))
            cached = (codes, scores)
            self._lists[id(pairs)] = cached
        return cached

    def code_all(self, lists: Iterable[ScoredList]) -> None:
        """Code every ``(id, score)`` list not coded yet, all in one pass: one id lookup
        loop and one array for the batch's few hundred short lists, where coding them
        one by one spent most of its time in per-list numpy calls. The codes are the
        ones :meth:`scored` would give, taking the lists in the same order."""
        todo: dict[int, Sequence[Scored]] = {}
        for pairs in lists:
            if pairs and not isinstance(pairs, RowList) and id(pairs) not in self._lists:
                todo.setdefault(id(pairs), pairs)
        if not todo:
            return
        flat = [p for pairs in todo.values() for p in pairs]
        codes = self.ids([p[0] for p in flat])
        scores = np.array([p[1] for p in flat], dtype=np.float64)
        lo = 0
        for key, pairs in todo.items():
            hi = lo + len(pairs)
            self._lists[key] = (codes[lo:hi], scores[lo:hi])
            lo = hi

    def rows(self, pairs: ScoredList) -> Ints:
        """The model rows of a list's items (ids the model does not know dropped)."""
        codes = self.scored(pairs)[0]
        return codes if not self.extra else codes[codes < self.size]

    def names_of(self, codes: Ints) -> list[str]:
        """The ids of ``codes`` (codes this object handed out), in order.

        Only the listed codes are translated: building an array of every id of the model
        per call was ~2 ms (20,000 items), more than the blend of a small batch."""
        known = self._item_map
        if known is not None and (codes.size == 0 or int(codes.max()) < self.size):
            return known.ids_of(codes)
        extra = list(self.extra)
        size = self.size
        names = known.id_list if known is not None else ()
        return [extra[c - size] if c >= size else names[c] for c in codes.tolist()]


def _merge_recent(sources: Sequence[Sequence[Sequence[ScoredList]]], codes: ItemCodes,
                  recency: float) -> list[tuple[Ints, Ints]]:
    """Vectorised :func:`recommender.blend.merge_recent` of every entity's lists, per
    source: ``(entity, item)`` rows, entity-major, each entity's items in merged order.
    One grouping pass for all sources (source ``s``'s entity ``e`` is owner ``s · m + e``):
    the same as one pass each, with fewer numpy calls (a fixed cost per batch)."""
    m = max((len(per_entity) for per_entity in sources), default=0)
    owner: list[int] = []
    sizes: list[int] = []
    decay: list[float] = []
    items: list[Ints] = []
    scores: list[Floats] = []
    for s, per_entity in enumerate(sources):
        for e, lists in enumerate(per_entity):
            for rank, pairs in enumerate(lists):
                if not pairs:
                    continue
                code, score = codes.scored(pairs)
                owner.append(s * m + e)
                sizes.append(code.size)
                decay.append(1.0 / (1.0 + recency * rank))
                items.append(code)
                scores.append(score)
    if not items:
        return [(np.zeros(0, np.int64), np.zeros(0, np.int64)) for _ in sources]
    # the same products as scaling each list on its own: decay · score, per element
    weights = np.repeat(np.asarray(decay), sizes) * np.concatenate(scores)
    g_ent, g_item = _group_sorted(np.repeat(np.asarray(owner, dtype=np.int64), sizes),
                                  np.concatenate(items), weights)[:2]
    cuts = np.searchsorted(g_ent, np.arange(len(sources) + 1) * m).tolist()
    return [(g_ent[lo:hi] - s * m, g_item[lo:hi])
            for s, (lo, hi) in enumerate(zip(cuts[:-1], cuts[1:], strict=True))]


def _group_sorted(ent: Ints, item: Ints,
                  weight: Floats) -> tuple[npt.NDArray[Any], ...]:
    """Sum ``weight`` per ``(entity, item)`` in input order; groups sorted by entity,
    descending sum, then first appearance. Returns entity, item, sum, first row, and the
    group (its index in that order) of every input row.

    One stable argsort of the keys does all the grouping: within a group the rows keep
    their input order, so ``bincount`` adds them in that order, as the dictionaries of
    the per-entity functions did. The rows come in entity-major runs (one per source or
    list), which the stable sort (timsort for int64) exploits: on the worker's rows it
    took a quarter to a half of the time of the default sort of row-unique keys
    (``key · rows + row``, the same order), for calls of 20 to 200 entities."""
    v = int(item.max()) + 1
    key = ent * v + item
    perm = np.argsort(key, kind="stable")
    sorted_key = key[perm]
    head = np.ones(key.size, dtype=bool)
    head[1:] = sorted_key[1:] != sorted_key[:-1]
    group = np.cumsum(head) - 1  # group of each row of perm, in key order
    uniq = sorted_key[head]
    first = perm[head]
    total = np.bincount(group, weights=weight[perm], minlength=uniq.size)
    g_ent = uniq // v
    order = _ranking(g_ent, total, first)
    rank_of = np.empty_like(order)
    rank_of[order] = np.arange(order.size)
    grouped = np.empty_like(group)
    grouped[perm] = rank_of[group]
    return g_ent[order], (uniq % v)[order], total[order], first[order], grouped


def _ranking(ent: Ints, total: npt.NDArray[Any], first: Ints) -> Ints:
    """``np.lexsort((first, -total, ent))`` for non-negative ``ent`` and distinct
    non-negative ``first``: by entity, descending total, then first row. Computed as one
    argsort of an integer key (entity, dense rank of the total, first row), unique per
    group: the three-key lexsort was the largest single cost of the blend."""
    if ent.size < 600:  # small: the lexsort's fixed cost is lower (measured crossover)
        return np.lexsort((first, -total, ent))
    _, dense = np.unique(-total, return_inverse=True)  # equal totals share a rank
    ranks, span = int(dense.max()) + 1, int(first.max()) + 1
    if (int(ent.max()) + 1) * ranks * span >= 1 << 62:  # would overflow: the plain way
        return np.lexsort((first, -total, ent))
    return np.argsort((ent * ranks + dense.ravel()) * span + first)


def _first_rows(key: Ints) -> npt.NDArray[np.bool_]:
    """True at the first row of every distinct key."""
    ordered = np.sort(key)
    if not (ordered[1:] == ordered[:-1]).any():  # the usual case: nothing repeats
        return np.ones(key.size, dtype=bool)
    _, first = np.unique(key, return_index=True)
    seen = np.zeros(key.size, dtype=bool)
    seen[first] = True
    return seen


def _ranked(by_source: list[tuple[Ints, Ints, Floats, bool]], blocked: Ints, v: int, m: int,
            rank_offset: float) -> tuple[Ints, Ints, Floats, Ints]:
    """Every source's rows (entity-major per source) without blocked and repeated
    ``(entity, item)`` rows (the first kept; sources marked distinct skip that check),
    numbered 1, 2, … per source and entity as the blend's rank counter does, as
    ``(entity, item, gain, source)`` rows in chain order. One pass over all sources: the
    per-source passes were a fixed cost of a dozen numpy calls each."""
    sizes = [e.size for e, _, _, _ in by_source]
    ent = np.concatenate([e for e, _, _, _ in by_source])
    item = np.concatenate([i for _, i, _, _ in by_source])
    src = np.repeat(np.arange(len(by_source), dtype=np.int64), sizes)
    key = ent * v + item
    keep = ~_in_sorted(key, blocked)
    lo = 0
    for size, (_, _, _, distinct) in zip(sizes, by_source, strict=True):
        if not distinct:
            keep[lo:lo + size] &= _first_rows(key[lo:lo + size])
        lo += size
    ent, item, src = ent[keep], item[keep], src[keep]
    group = src * m + ent  # non-decreasing: sources in order, each entity-major
    counts = np.bincount(group, minlength=len(by_source) * m)
    rank = np.arange(ent.size, dtype=np.int64) - (np.cumsum(counts) - counts)[group] + 1
    w_row = np.stack([w for _, _, w, _ in by_source])[src, ent]
    on = w_row > 0.0  # a source of weight 0 adds nothing, not even an entry
    return ent[on], item[on], w_row[on] / (rank_offset + rank[on]), src[on]


def _in_sorted(values: Ints, sorted_ref: Ints) -> npt.NDArray[np.bool_]:
    if sorted_ref.size == 0:
        return np.zeros(values.shape, dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_ref, values), sorted_ref.size - 1)
    return np.asarray(sorted_ref[pos] == values)


def blend_many(
    *,
    n: int,
    personal: Sequence[Sequence[Scored] | Ints],
    session: Sequence[Sequence[Sequence[Scored]]],
    similar: Sequence[Sequence[ScoredList]],
    trending: Sequence[Scored],
    popular: Sequence[Scored],
    known: Sequence[Collection[str]],
    history_size: Sequence[int],
    weights: BlendWeights = DEFAULT_WEIGHTS,
    codes: ItemCodes | None = None,
) -> list[BlendedList]:
    """:func:`recommender.refresh.entity_blend` for every entity at once.

    Parameters
    ----------
    n
        List length.
    personal
        Per entity, its fold-in list: ``(id, score)`` pairs, or the items' codes in an
        integer array when ``codes`` come from the model the list was ranked with
        (model rows, as :func:`recommender.refresh.refold_rows` gives them). Only the
        order counts.
    session, similar
        Per entity, per recent item (newest first), that item's co-occurrence partners /
        model neighbours. Pass the *same list object* for the same item to every entity
        (it is coded once per call).
    trending, popular
        Heads of the global lists (the same for every entity).
    known
        Per entity, its items (never recommended back).
    history_size
        Per entity, the length of its recent-items list.
    weights
        Blend weights.
    codes
        The batch's :class:`ItemCodes` when the caller coded lists already (a fresh
        one otherwise).

    Returns
    -------
    list of BlendedList
        One per entity, in input order; what ``entity_blend`` returns for it (empty when
        it returns nothing).
    """
    m = len(personal)
    if n <= 0 or m == 0:
        return [BlendedList([], np.zeros(0), []) for _ in range(m)]
    codes = codes if codes is not None else ItemCodes()
    by_source = _source_rows(m, personal, session, similar, trending, popular,
                             history_size, weights, codes)
    v = max(codes.size + len(codes.extra), 1)  # after coding: every id has a code now
    code_of = codes.code
    blocked = np.unique(np.fromiter(
        (e * v + c for e, items in enumerate(known) for i in items
         if (c := code_of(i)) is not None), dtype=np.int64))
    ent, item, gain, src = _ranked(by_source, blocked, v, m, weights.rank_offset)
    if ent.size == 0:
        return [BlendedList([], np.zeros(0), []) for _ in range(m)]
    return _fused(ent, item, gain, src, m=m, n=n, codes=codes)


def _source_rows(m: int, personal: Sequence[Sequence[Scored] | Ints],
                 session: Sequence[Sequence[Sequence[Scored]]],
                 similar: Sequence[Sequence[ScoredList]], trending: Sequence[Scored],
                 popular: Sequence[Scored], history_size: Sequence[int],
                 weights: BlendWeights, codes: ItemCodes
                 ) -> list[tuple[Ints, Ints, Floats, bool]]:
    """Every source's candidates as ``(entity, item code)`` rows, in chain order, with
    the source's weight per entity and whether its rows are already distinct per entity
    (merged lists and the deduplicated global heads are)."""
    by_source: list[tuple[Ints, Ints, Floats, bool]] = []
    w_personal = np.full(m, weights.personal, dtype=np.float64)
    if weights.evidence > 0.0:
        h = np.maximum(np.asarray(history_size, dtype=np.float64), 0.0)
        w_personal = w_personal * (h / (h + weights.evidence))
    p_ent = np.repeat(np.arange(m, dtype=np.int64), [len(p) for p in personal])
    p_item = np.concatenate([
        np.asarray(p, dtype=np.int64) if isinstance(p, np.ndarray)
        else codes.ids([i for i, _ in p]) for p in personal]) if m else np.zeros(0, np.int64)
    by_source.append((p_ent, p_item, w_personal, False))
    merged = _merge_recent([session, similar], codes, weights.recency)
    for (ent, item), w in zip(merged, (weights.session, weights.similar), strict=True):
        by_source.append((ent, item, np.full(m, w), True))
    for shared, w in ((trending, weights.trending), (popular, weights.popular)):
        code, _ = codes.scored(shared)
        code = code[_first_rows(code)]  # the same for every entity: deduplicated once
        by_source.append((np.repeat(np.arange(m, dtype=np.int64), code.size),
                          np.tile(code, m), np.full(m, w), True))
    return by_source


def _fused(ent: Ints, item: Ints, gain: Floats, src: Ints, *, m: int, n: int,
           codes: ItemCodes) -> list[BlendedList]:
    """Sum the gains per ``(entity, item)``, rank, and keep each entity's top ``n`` with
    its reason: the source of an item's largest gain, the earliest in chain order on
    ties (rows are in chain order, so the first row reaching the maximum)."""
    g_ent, g_item, g_score, _, group = _group_sorted(ent, item, gain)
    top = np.full(g_ent.size, -np.inf)
    np.maximum.at(top, group, gain)
    at_top = np.flatnonzero(gain == top[group])
    groups, first_at = np.unique(group[at_top], return_index=True)  # earliest per group
    best = np.empty(g_ent.size, dtype=np.int64)
    best[groups] = src[at_top[first_at]]
    counts = np.bincount(g_ent, minlength=m)
    starts = np.cumsum(counts) - counts
    kept = np.minimum(counts, n)
    # every entity's top n, translated and labelled in one pass each
    at = np.repeat(starts, kept) + (np.arange(int(kept.sum())) - np.repeat(np.cumsum(kept)
                                                                           - kept, kept))
    names = codes.names_of(g_item[at])
    reasons = [SOURCES[s] for s in best[at].tolist()]
    out = []
    lo = 0
    for e, size in enumerate(kept.tolist()):
        hi = lo + size
        start = int(starts[e])
        out.append(BlendedList(names[lo:hi], g_score[start:start + size], reasons[lo:hi]))
        lo = hi
    return out
