"""Top-N ranking metrics: hit rate, NDCG, recall, catalog coverage.

Every function takes one ranked list (best first) and the set of relevant items of one
evaluation case, so the same code serves single-target protocols (next click,
prequential) and set-valued ones (per-user holdout). Averaging over cases is left to
:class:`MetricSummary`, which also reports the standard error, so result tables can say
how far apart two numbers must be before the difference means anything.

Definitions (``rel`` = relevant set, ``top_k`` = the first ``k`` items of the list):

* ``HR@k`` = 1 if ``top_k ∩ rel`` is non-empty, else 0.
* ``NDCG@k`` = ``DCG / IDCG`` with binary gains, ``DCG = Σ_{i in top_k ∩ rel} 1/log2(pos_i + 1)``
  (positions from 1) and ``IDCG`` the DCG of ``min(k, |rel|)`` hits at the top
  (Järvelin & Kekäläinen 2002).
* ``Recall@k`` = ``|top_k ∩ rel| / min(k, |rel|)``: the denominator is capped at ``k`` so a
  perfect list scores 1 even when more than ``k`` items are relevant (the convention of
  Liang et al. 2018, "Variational Autoencoders for Collaborative Filtering"). With a
  single relevant item it equals ``HR@k``.
* catalog coverage@k = distinct items shown in any ``top_k`` / catalog size.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Hashable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "MetricSummary",
    "PairedDifference",
    "catalog_coverage",
    "hit_rate",
    "ndcg",
    "paired_difference",
    "recall",
    "summarize",
]


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")


def _hit_positions(ranked: Sequence[Hashable], relevant: Collection[Hashable], k: int) -> list[int]:
    """0-based positions within the first ``k`` whose item is relevant (repeats count once)."""
    seen: set[Hashable] = set()
    out: list[int] = []
    for pos, item in enumerate(ranked[:k]):
        if item in relevant and item not in seen:
            out.append(pos)
        seen.add(item)
    return out


def hit_rate(ranked: Sequence[Hashable], relevant: Collection[Hashable], k: int) -> float:
    """Return ``HR@k``: 1.0 when any relevant item is in the first ``k``, else 0.0.

    Parameters
    ----------
    ranked
        Recommended item ids, best first (may be shorter than ``k``).
    relevant
        The items that count as correct for this case.
    k
        Cut-off.

    Returns
    -------
    float
        ``1.0`` or ``0.0``; ``0.0`` when ``relevant`` is empty.
    """
    _check_k(k)
    return 1.0 if _hit_positions(ranked, relevant, k) else 0.0


def ndcg(ranked: Sequence[Hashable], relevant: Collection[Hashable], k: int) -> float:
    """Return binary-gain ``NDCG@k`` of one ranked list.

    Parameters
    ----------
    ranked
        Recommended item ids, best first. A repeated id counts at its first position only.
    relevant
        The items that count as correct.
    k
        Cut-off.

    Returns
    -------
    float
        In ``[0, 1]``; ``0.0`` when ``relevant`` is empty. For a single relevant item at
        1-based position ``p <= k`` this is ``1 / log2(p + 1)``.
    """
    _check_k(k)
    if not relevant:
        return 0.0
    dcg = sum(1.0 / math.log2(pos + 2) for pos in _hit_positions(ranked, relevant, k))
    ideal = sum(1.0 / math.log2(pos + 2) for pos in range(min(k, len(relevant))))
    return dcg / ideal


def recall(ranked: Sequence[Hashable], relevant: Collection[Hashable], k: int) -> float:
    """Return ``Recall@k`` with the denominator capped at ``k``.

    Parameters
    ----------
    ranked
        Recommended item ids, best first.
    relevant
        The items that count as correct.
    k
        Cut-off.

    Returns
    -------
    float
        ``|top_k ∩ relevant| / min(k, |relevant|)``; ``0.0`` when ``relevant`` is empty.
    """
    _check_k(k)
    if not relevant:
        return 0.0
    return len(_hit_positions(ranked, relevant, k)) / min(k, len(relevant))


def catalog_coverage(lists: Iterable[Sequence[Hashable]], catalog_size: int, k: int) -> float:
    """Return the share of the catalog that appears in at least one top-``k`` list.

    Parameters
    ----------
    lists
        Every ranked list served during an evaluation.
    catalog_size
        Number of items that could have been recommended.
    k
        Only the first ``k`` items of each list count.

    Returns
    -------
    float
        In ``[0, 1]`` (ids outside the catalog would push it above 1: callers pass lists of
        catalog items); ``0.0`` for an empty catalog.
    """
    _check_k(k)
    if catalog_size <= 0:
        return 0.0
    shown: set[Hashable] = set()
    for ranked in lists:
        shown.update(ranked[:k])
    return len(shown) / catalog_size


@dataclass(frozen=True)
class MetricSummary:
    """Mean of a per-case metric with its standard error.

    Attributes
    ----------
    mean
        Average over cases (``0.0`` for no cases).
    stderr
        Standard error of the mean, ``sd / sqrt(n)`` (``0.0`` below two cases).
    n
        Number of cases.
    """

    mean: float
    stderr: float
    n: int


def summarize(values: Iterable[float]) -> MetricSummary:
    """Average per-case values and attach the standard error of the mean.

    Parameters
    ----------
    values
        One metric value per evaluation case.

    Returns
    -------
    MetricSummary
        Mean, standard error (sample standard deviation over ``sqrt(n)``) and count.
    """
    arr = np.fromiter(values, dtype=np.float64)
    n = int(arr.size)
    if n == 0:
        return MetricSummary(0.0, 0.0, 0)
    stderr = float(arr.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    return MetricSummary(float(arr.mean()), stderr, n)


@dataclass(frozen=True)
class PairedDifference:
    """How two methods compare on the same cases.

    Attributes
    ----------
    mean
        Mean of ``a − b`` over cases.
    low, high
        Percentile-bootstrap 95 % interval of that mean (cases resampled with
        replacement, the same resample for both methods).
    a_only, b_only
        Cases where only ``a`` (only ``b``) has a positive value, e.g. a hit.
    """

    mean: float
    low: float
    high: float
    a_only: int
    b_only: int


def paired_difference(a: Sequence[float], b: Sequence[float], *, seed: int = 0,
                      resamples: int = 2000) -> PairedDifference:
    """Compare two methods' per-case values on the same cases.

    Because both methods answer the same cases, the spread of their *difference* is far
    smaller than either method's own standard error suggests; the paired bootstrap
    (Efron & Tibshirani 1993) gives an interval for the mean difference that accounts
    for this.

    Parameters
    ----------
    a, b
        Per-case values of two methods, aligned.
    seed
        Seed of the resampling.
    resamples
        Bootstrap resamples.

    Returns
    -------
    PairedDifference
        Mean difference, its 95 % interval, and the one-sided win counts.
    """
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"a and b must be aligned, got {x.shape} and {y.shape}")
    a_only = int(np.sum((x > 0) & (y <= 0)))
    b_only = int(np.sum((y > 0) & (x <= 0)))
    if x.size == 0:
        return PairedDifference(0.0, 0.0, 0.0, 0, 0)
    diff = x - y
    rng = np.random.default_rng(seed)
    means = np.empty(resamples, dtype=np.float64)
    for r in range(resamples):
        means[r] = diff[rng.integers(0, diff.size, diff.size)].mean()
    low, high = np.percentile(means, [2.5, 97.5])
    return PairedDifference(float(diff.mean()), float(low), float(high), a_only, b_only)
