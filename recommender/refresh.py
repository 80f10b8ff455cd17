"""What the worker stores for an entity whose history changed: one function per step.

Both the streaming worker (``stream/processor.py``) and its in-memory replay in the
evaluator (``recommender/evaluation/worker_sim.py``) call these, so the list that is
evaluated is the list that is served:

:func:`refold_lists`
    fold the entities' histories into the live model and rank items for them: the
    ``personal`` list. Items are ranked within the worker's candidate pool (the items of
    largest factor norm) **plus each entity's own neighbourhood** (the co-occurrence
    partners and model neighbours of its recent items), so long-tail items close to what
    the entity just did are ranked exactly even though the pool holds only the head.
:func:`entity_blend`
    fuse the personal list with the entity's session, similar, trending and popular
    candidates (:func:`recommender.blend.blend`): the list that is stored and served.

Pure: numpy arrays and plain containers in and out, no I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from recommender.blend import DEFAULT_WEIGHTS, Blended, BlendWeights, blend, merge_recent
from recommender.foldin import fold_in
from recommender.idmap import IdMap
from recommender.topn import top_n

Scored = tuple[str, float]

__all__ = ["REASONS", "entity_blend", "grown", "refold_lists"]

#: The ``reason`` an item of a stored blended list shows, per blend source (API.md names).
REASONS: dict[str, str] = {
    "personal": "personalized", "session": "session", "similar": "similar",
    "trending": "trending", "popular": "popular",
}


def _known_rows(
    weights: Sequence[Mapping[str, float]], item_map: IdMap
) -> tuple[list[tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]], list[int]]:
    rows: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]] = []
    keep: list[int] = []
    for pos, w in enumerate(weights):
        if not w:
            continue
        idx = item_map.indices(list(w), add=False)
        vals = np.fromiter(w.values(), dtype=np.float32, count=len(w))
        known = idx >= 0
        if not known.any():
            continue
        rows.append((idx[known].astype(np.int64), vals[known]))
        keep.append(pos)
    return rows, keep


def _in_sorted(values: npt.NDArray[np.int64],
               sorted_ref: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    if len(sorted_ref) == 0:
        return np.zeros(values.shape, dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_ref, values), len(sorted_ref) - 1)
    return np.asarray(sorted_ref[pos] == values)


def refold_lists(
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
) -> list[tuple[int, list[str], npt.NDArray[np.floating]]]:
    """Fold entities in against fixed item factors and rank their personal lists.

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

    Returns
    -------
    list of tuple
        ``(position in weights, item ids, scores)`` best first, for each entity with at
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
        exclude: list[npt.NDArray[np.int64]] = [r[0] for r in rows]
    else:
        if pool_factors is None:
            pool_factors = np.ascontiguousarray(item_factors[pool])
        scores = factors @ pool_factors.T
        exclude = []
        for r in rows:  # the entity's own items, as positions in the sorted pool
            at = np.searchsorted(pool, r[0])
            at = at[at < len(pool)]
            exclude.append(at[np.isin(pool[at], r[0])])
    idx, vals = top_n(scores, n, exclude=exclude)
    if pool is not None:
        idx = np.where(idx >= 0, pool[np.maximum(idx, 0)], -1)
    out: list[tuple[int, list[str], npt.NDArray[np.floating]]] = []
    for row, pos in enumerate(keep):
        valid = idx[row] >= 0
        ii, vv = idx[row][valid], vals[row][valid]
        extra_ids = neighbours[pos] if (pool is not None and neighbours is not None) else ()
        if extra_ids:
            extra = item_map.indices(list(extra_ids), add=False)
            extra = np.unique(extra[extra >= 0])
            extra = extra[~_in_sorted(extra, pool)] if pool is not None else extra
            extra = extra[~np.isin(extra, rows[row][0])]
            if extra.size:
                es = (np.asarray(item_factors[extra]) @ factors[row]).astype(vv.dtype)
                ii = np.concatenate([ii, extra])
                vv = np.concatenate([vv, es])
                order = np.lexsort((ii, -vv))[:n]
                ii, vv = ii[order], vv[order]
        out.append((pos, item_map.ids_of(ii), vv))
    return out


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
        The entity's fold-in list (:func:`refold_lists`).
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

    True once the events processed since the live model was trained reach ``growth``
    times the events it was trained on (``growth <= 0``: never). Fold-in keeps users
    current but cannot place items the model has never seen nor move existing items, so
    a model goes stale in proportion to how much of the data it has not seen, not to the
    clock. Retraining at a fixed relative growth also bounds the retrain cost per event:
    a retrain costs about ``c·N`` for ``N`` events and runs after ``growth·N`` new ones,
    i.e. ``c / growth`` per event whatever the event rate.

    Parameters
    ----------
    new_events
        Events processed since the live model's retrain started.
    trained_events
        Events the live model was trained on.
    growth
        The share (``Settings.retrain_growth``).
    """
    return growth > 0 and new_events >= growth * max(trained_events, 1)
