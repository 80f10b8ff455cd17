"""The comparison methods that are not the streaming worker: item-kNN and full-retrain ALS,
plus the per-entity interaction rows they are queried with.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from implicit.nearest_neighbours import BM25Recommender, CosineRecommender, ItemItemRecommender

from recommender.evaluation.events import Event
from recommender.foldin import fold_in
from recommender.idmap import IdMap
from recommender.interactions import Interactions, build_matrix
from recommender.model import FoldInModel
from recommender.topn import top_n
from recommender.weights import EVENT_WEIGHTS, event_weight, recency_decay

Scored = tuple[str, float]


class Profiles:
    """Every entity's full (uncapped) interaction history, as the retrain would see it.

    Rows are what :func:`recommender.interactions.build_matrix` would put in the
    entity's matrix row: summed event weights (recency-decayed like the matrix), clamped,
    positive only.
    """

    def __init__(self, half_life_s: float | None = None) -> None:
        self.half_life_s = half_life_s
        self._events: dict[str, list[tuple[str, float, float]]] = {}
        self._known: dict[str, set[str]] = {}

    def add(self, ev: Event) -> None:
        """Record one event (call in stream order)."""
        item = ev.get("item_id")
        kind = str(ev.get("type"))
        if not item:
            return
        weight = event_weight(kind, ev.get("quantity"))
        entity = str(ev["entity"])
        if weight != 0.0:
            self._events.setdefault(entity, []).append((str(item), weight, float(ev["ts"])))
        if EVENT_WEIGHTS.get(kind, 0.0) > 0.0:
            self._known.setdefault(entity, set()).add(str(item))

    def known(self, entity: str) -> frozenset[str]:
        """Items the entity viewed, clicked, carted or bought (never to recommend)."""
        return frozenset(self._known.get(entity, ()))

    def row(self, entity: str) -> dict[str, float]:
        """The entity's current matrix row: ``item -> weight`` for positive totals."""
        events = self._events.get(entity, ())
        if not events:
            return {}
        newest = max(ts for _, _, ts in events)
        totals: dict[str, float] = {}
        for item, weight, ts in events:
            decay = recency_decay(ts, newest, self.half_life_s)
            totals[item] = totals.get(item, 0.0) + weight * decay
        return {i: w for i, w in totals.items() if w > 0.0}

    def matrix(self, entities: Sequence[str], item_map: IdMap) -> sp.csr_matrix:
        """Rows of ``entities`` restricted to the items of ``item_map``."""
        indptr = [0]
        indices: list[int] = []
        data: list[float] = []
        for entity in entities:
            row = self.row(entity)
            idx = item_map.indices(list(row))
            for i, w in zip(idx, row.values(), strict=True):
                if i >= 0:
                    indices.append(int(i))
                    data.append(w)
            indptr.append(len(indices))
        return sp.csr_matrix(
            (np.asarray(data, dtype=np.float32), np.asarray(indices, dtype=np.int32), indptr),
            shape=(len(entities), len(item_map)),
        )


@dataclass
class KnnModel:
    """An ``implicit`` item-item model fitted on the interaction matrix.

    Attributes
    ----------
    name
        ``"cosine"`` or ``"bm25"``.
    model
        The fitted ``implicit`` recommender.
    item_map
        Its item ids.
    seconds
        Fit wall time (matrix building included).
    """

    name: str
    model: ItemItemRecommender
    item_map: IdMap
    seconds: float

    def recommend(self, profiles: Profiles, entities: Sequence[str],
                  n: int) -> list[list[str]]:
        """Top-``n`` per entity from its current row, its known items left out."""
        if not entities:
            return []
        user_items = profiles.matrix(entities, self.item_map)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ids, scores = self.model.recommend(np.arange(len(entities)), user_items, N=n,
                                               filter_already_liked_items=True)
        out = []
        for r in range(len(entities)):
            valid = (ids[r] >= 0) & np.isfinite(scores[r]) & (scores[r] > 0)
            out.append(self.item_map.ids_of(ids[r][valid]))
        return out


def fit_knn(events: Iterable[Event] | Interactions, kind: str, *, neighbours: int,
            half_life_s: float | None = None) -> KnnModel | None:
    """Fit ``implicit``'s CosineRecommender or BM25Recommender on the weight matrix.

    Parameters
    ----------
    events
        Training events (weighed by :func:`~recommender.interactions.build_matrix`), or an
        already built matrix.
    kind
        ``"cosine"`` or ``"bm25"`` (``K1=1.2, B=0.75``, implicit's defaults).
    neighbours
        ``K``: neighbours kept per item.
    half_life_s
        Recency decay of the weights (``None``: the production default).

    Returns
    -------
    KnnModel or None
        ``None`` without data.
    """
    started = time.perf_counter()
    if isinstance(events, Interactions):
        data = events
    else:
        data = build_matrix(events, half_life_s=half_life_s)
    if data.matrix.nnz == 0:
        return None
    model: ItemItemRecommender
    if kind == "cosine":
        model = CosineRecommender(K=neighbours, num_threads=1)
    elif kind == "bm25":
        model = BM25Recommender(K=neighbours, num_threads=1)
    else:
        raise ValueError(f"unknown kNN kind {kind!r}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(sp.csr_matrix(data.matrix), show_progress=False)
    return KnnModel(kind, model, data.item_map, time.perf_counter() - started)


def als_recommend(model: FoldInModel, profiles: Profiles, entities: Sequence[str],
                  n: int) -> list[list[str]]:
    """Full-retrain ALS answers: each entity's current row folded into the retrained model.

    This is the user half-step of ALS on the retrained item factors (what the trained
    user factors converge to), applied to the entity's history as of the query, so users
    who changed since the checkpoint and users new since it are handled like trained ones.
    """
    if not entities:
        return []
    rows: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]] = []
    for entity in entities:
        weights = profiles.row(entity)
        idx = model.item_map.indices(list(weights))
        w = np.fromiter(weights.values(), dtype=np.float64, count=len(weights))
        known = idx >= 0
        rows.append((idx[known], w[known]))
    factors = fold_in(model.item_factors, rows=rows, regularization=model.regularization,
                      alpha=model.alpha, yty=model.yty)
    scores = factors @ model.item_factors.T
    exclude = [
        np.concatenate([r[0], model.item_map.indices(list(profiles.known(e)))])
        for r, e in zip(rows, entities, strict=True)
    ]
    idx, _ = top_n(scores, n, exclude=exclude)
    out = []
    for r, (items, _) in enumerate(rows):
        out.append(model.item_map.ids_of(idx[r]) if items.size else [])
    return out


def filtered(candidates: Sequence[Scored], blocked: Collection[str], n: int) -> list[str]:
    """The first ``n`` candidate ids not in ``blocked``."""
    out: list[str] = []
    for item, _ in candidates:
        if item in blocked:
            continue
        out.append(item)
        if len(out) >= n:
            break
    return out
