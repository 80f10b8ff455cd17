"""Hyper-parameter search on validation splits only.

Two searches, both scored by NDCG@10 on the validation side of every dataset and chosen
by the *geometric mean over datasets of the score relative to that dataset's best
candidate*, so no single dataset decides and the chosen values are a compromise that
works everywhere:

* :func:`search_als` — ALS factors, regularisation, confidence slope and iterations
  (coordinate descent from the current values over a small grid per parameter), scored
  by the full-retrain ALS method;
* :func:`search_blend` — the blend weights, scored on captured blend inputs (the
  candidate lists every source gave for every validation query), so trying a weight
  vector costs only the fusion itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import fields, replace
from typing import TypeVar

from recommender.blend import BlendWeights
from recommender.evaluation.replay_model import AlsParams
from recommender.evaluation.scoring import Captured, blend_ndcg

P = TypeVar("P", AlsParams, BlendWeights)

#: Where the ALS search starts: the values production had before tuning.
ALS_SEARCH_START = AlsParams(factors=64, iterations=15, regularization=0.05, alpha=2.0)

#: Values tried per ALS parameter, in search order.
ALS_GRID: dict[str, tuple[float, ...]] = {
    "factors": (32, 64, 96, 128),
    "alpha": (2.0, 5.0, 10.0, 20.0, 40.0, 80.0),
    "regularization": (0.01, 0.1, 1.0, 10.0),
    "iterations": (10, 15, 25),
}

#: Where the blend search starts: the weights first written, before any data was seen.
BLEND_SEARCH_START = BlendWeights(personal=1.0, session=1.0, similar=0.5, trending=0.1,
                                  popular=0.05, rank_offset=10.0, evidence=0.0, recency=0.0)

#: Values tried per blend weight, in search order.
BLEND_GRID: dict[str, tuple[float, ...]] = {
    "evidence": (0.0, 1.0, 3.0, 10.0, 30.0),
    "recency": (0.0, 0.5, 1.0, 2.0, 5.0, 10.0),
    "personal": (0.25, 0.5, 1.0, 2.0),
    "session": (0.25, 0.5, 1.0, 2.0, 4.0),
    "similar": (0.0, 0.1, 0.25, 0.5, 1.0),
    "trending": (0.0, 0.05, 0.1, 0.25, 0.5),
    "popular": (0.0, 0.05, 0.1, 0.25, 0.5),
    "rank_offset": (1.0, 5.0, 10.0, 30.0, 60.0),
}

#: A dataset's validation scorer: parameters in, NDCG@10 out.
Scorer = Callable[[AlsParams], float]


def relative_score(scores: Mapping[str, float], best: Mapping[str, float]) -> float:
    """Geometric mean over datasets of ``score / best`` (``0`` if any score is zero)."""
    ratios = [scores[d] / best[d] for d in scores if best.get(d, 0.0) > 0.0]
    if not ratios or min(ratios) <= 0.0:
        return 0.0
    return math.exp(sum(math.log(r) for r in ratios) / len(ratios))


def _coordinate_descent(
    start: P,
    grid: Mapping[str, Sequence[float]],
    evaluate: Callable[[P], dict[str, float]],
    *,
    rounds: int,
    log: Callable[[str], None] | None,
) -> tuple[P, list[tuple[P, dict[str, float]]]]:
    tried: dict[P, dict[str, float]] = {}

    def get(p: P) -> dict[str, float]:
        if p not in tried:
            tried[p] = evaluate(p)
            if log:
                log(f"{p} -> {tried[p]}")
        return tried[p]

    current = start
    get(current)
    for _ in range(rounds):
        changed = False
        for name, values in grid.items():
            for value in values:
                get(replace(current, **{name: value}))  # type: ignore[arg-type]
            best = {d: max(s[d] for s in tried.values()) for d in tried[current]}
            ranked = sorted(tried, key=lambda p: -relative_score(tried[p], best))
            candidates = [p for p in ranked if all(
                getattr(p, f.name) == getattr(current, f.name)
                for f in fields(p) if f.name != name)]
            if candidates and candidates[0] != current:
                current = candidates[0]
                changed = True
        if not changed:
            break
    return current, list(tried.items())


def search_als(
    scorers: Mapping[str, Scorer],
    *,
    start: AlsParams,
    grid: Mapping[str, Sequence[float]] | None = None,
    rounds: int = 2,
    log: Callable[[str], None] | None = None,
) -> tuple[AlsParams, list[tuple[AlsParams, dict[str, float]]]]:
    """Coordinate-descent search of the ALS hyper-parameters.

    Parameters
    ----------
    scorers
        Per dataset, a function giving the validation NDCG@10 of full-retrain ALS.
    start
        The starting point (the current production values).
    grid
        Values tried per parameter, in search order; defaults to :data:`ALS_GRID`.
    rounds
        Passes over the whole grid (stops early when one changes nothing).
    log
        Called with one line per evaluated configuration.

    Returns
    -------
    tuple
        The chosen parameters and every ``(parameters, scores per dataset)`` tried.
    """
    grid = grid or ALS_GRID

    def evaluate(p: AlsParams) -> dict[str, float]:
        return {name: scorer(p) for name, scorer in scorers.items()}

    return _coordinate_descent(start, grid, evaluate, rounds=rounds, log=log)


def search_blend(
    captured: Mapping[str, Sequence[Captured]],
    *,
    start: BlendWeights,
    grid: Mapping[str, Sequence[float]] | None = None,
    rounds: int = 3,
    log: Callable[[str], None] | None = None,
) -> tuple[BlendWeights, list[tuple[BlendWeights, dict[str, float]]]]:
    """Coordinate-descent search of the blend weights on captured validation queries.

    Parameters
    ----------
    captured
        Per dataset, the blend inputs of its validation queries.
    start
        Starting weights.
    grid
        Values tried per weight, in search order; defaults to :data:`BLEND_GRID`.
    rounds
        Passes over the whole grid.
    log
        Called with one line per evaluated weight vector.

    Returns
    -------
    tuple
        The chosen weights and every ``(weights, NDCG@10 per dataset)`` tried.
    """
    grid = grid or BLEND_GRID

    def evaluate(w: BlendWeights) -> dict[str, float]:
        return {name: blend_ndcg(caps, w) for name, caps in captured.items()}

    return _coordinate_descent(start, grid, evaluate, rounds=rounds, log=log)


def best_per_dataset(results: Iterable[tuple[object, Mapping[str, float]]]) -> dict[str, float]:
    """The best score each dataset reached over all tried configurations."""
    best: dict[str, float] = {}
    for _, scores in results:
        for d, s in scores.items():
            best[d] = max(best.get(d, 0.0), s)
    return best
