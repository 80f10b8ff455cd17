"""The retrain of the evaluator's worker replay: train as ``stream/retrain.py`` does,
keep what it would publish.

:func:`fit_model` trains ALS on every event so far exactly as the worker's retrain does
and returns a :class:`Retrain`: the :class:`~recommender.model.FoldInModel` the worker
would hot-swap to (the one model type fold-in uses), plus what the retrain writes into
Redis for serving — every trained user's list and every item's neighbour list, computed
lazily per asked user or item (the same lists, without computing them all).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from recommender.als import train_als
from recommender.evaluation.events import Event
from recommender.idmap import IdMap
from recommender.interactions import Interactions, build_matrix
from recommender.model import FoldInModel
from recommender.topn import top_n

Scored = tuple[str, float]
#: ``(item_factors, limit) -> rows or None``: which items refolded entities are ranked
#: against (:func:`recommender.model.candidate_rows`, as the worker chooses them).
PoolRows = Callable[[npt.NDArray[np.float32], int], "npt.NDArray[np.int64] | None"]


@dataclass(frozen=True)
class AlsParams:
    """ALS hyper-parameters (``Settings.als_*``) and the recency decay of the weights.

    ``decay_half_life_s=None`` means the production default,
    :data:`recommender.weights.DECAY_HALF_LIFE_S`.
    """

    factors: int = 128
    iterations: int = 6
    #: Conjugate-gradient steps per solve (``Settings.als_cg_steps``).
    cg_steps: int = 3
    regularization: float = 10.0
    alpha: float = 20.0
    decay_half_life_s: float | None = None
    #: Seed of the initial factors (``Settings.als_seed``).
    seed: int = 0


@dataclass
class Retrain:
    """One retrain's output: the model it publishes and the lists it writes.

    Attributes
    ----------
    model
        The published model (its version is the retrain's sequence number).
    user_map
        Row ids of the training matrix.
    user_factors
        The trained users' factors (their lists are what the retrain writes).
    matrix
        The training weights (users' lists exclude their training items).
    n_events
        Events that went into the matrix.
    seconds
        Wall time of matrix building plus training.
    """

    model: FoldInModel
    user_map: IdMap
    user_factors: npt.NDArray[np.float32]
    matrix: sp.csr_matrix
    n_events: int
    seconds: float
    _unit: npt.NDArray[np.float32] | None = field(default=None, repr=False)
    _valid: npt.NDArray[np.bool_] | None = field(default=None, repr=False)
    _similar: dict[int, list[Scored]] = field(default_factory=dict, repr=False)

    def user_list(self, row: int, n: int) -> list[Scored]:
        """The list a retrain writes for its user ``row`` (as ``recommend_batch`` does)."""
        scores = self.user_factors[row] @ self.model.item_factors.T
        start, stop = self.matrix.indptr[row], self.matrix.indptr[row + 1]
        idx, vals = top_n(scores, n, exclude=self.matrix.indices[start:stop])
        return self._scored(idx, vals)

    def _unit_factors(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
        if self._unit is None or self._valid is None:
            factors = self.model.item_factors
            norms = np.linalg.norm(factors, axis=1)
            unit = np.zeros_like(factors)
            ok = norms > 0
            unit[ok] = factors[ok] / norms[ok, None]
            self._unit, self._valid = unit, ok
        return self._unit, self._valid

    def prefetch_similar(self, items: Iterable[str], n: int, *, chunk: int = 256) -> None:
        """Compute the neighbour lists of many items at once (one matrix product per
        chunk instead of one vector product per item); same lists as :meth:`similar`."""
        todo = sorted({i for i in (self.model.item_map.index(x) for x in items)
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
        i = self.model.item_map.index(item)
        if i is None:
            return []
        cached = self._similar.get(i)
        if cached is not None:
            return cached[:n]
        self.prefetch_similar([item], n)
        return self._similar[i][:n]

    def _scored(self, idx: npt.NDArray[np.int64], vals: npt.NDArray[np.floating]) -> list[Scored]:
        ids = self.model.item_map.ids_of(idx)
        return list(zip(ids, (float(v) for v in vals[idx >= 0]), strict=True))


def fit_model(events: Iterable[Event] | Interactions, params: AlsParams, *, version: int = 0,
              min_events: int = 1,
              pool: Callable[[npt.NDArray[np.float32]], npt.NDArray[np.int64] | None]
              | None = None) -> Retrain | None:
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
        Sequence number to record (the model's version is its text).
    min_events
        Return ``None`` below this many usable events (``retrain_min_events``).
    pool
        ``item_factors -> rows``: the items refolded entities are ranked against (the
        worker's ``foldin_candidates`` pool); ``None`` ranks all items.

    Returns
    -------
    Retrain or None
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
                    cg_steps=params.cg_steps,
                    regularization=params.regularization, alpha=params.alpha,
                    random_state=params.seed)
    model = FoldInModel.build(str(version), data.item_map, als.item_factors,
                              regularization=als.regularization, alpha=als.alpha)
    seconds = time.perf_counter() - started
    if pool is not None:
        model = replace(model, pool=pool(model.item_factors))
    return Retrain(model=model, user_map=data.user_map, user_factors=als.user_factors,
                   matrix=data.matrix, n_events=data.n_events, seconds=seconds)
