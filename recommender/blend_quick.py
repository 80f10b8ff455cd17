"""The first freshness level: a stored blended list updated for a new event, cheaply.

Rebuilding an entity's list (fold-in, every source's candidates, the blend) costs a few
hundred µs; while the worker is behind that re-fold waits and is coalesced per entity
(:class:`recommender.coalesce.Coalescer`). Meanwhile the entity's stored list reacts to
its events at once, for a few µs: the model neighbours of its newest item join the list
as the ``similar`` source of :func:`recommender.blend.blend` would add them for a newest
item (rank fusion, weight ``similar``, no recency discount), and every item the entity
has touched leaves it, as the re-fold's exclusion rule says. The re-fold later replaces
this list with the exact one (replays never take this path: their lists never wait).

Pure: plain containers in and out, no I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from recommender.blend import DEFAULT_WEIGHTS, BlendWeights

__all__ = ["QuickItem", "quick_list"]

#: One item of a stored blended list: ``(id, fused score, reason)``.
QuickItem = tuple[str, float, str]


def quick_list(stored: Sequence[QuickItem], neighbours: Sequence[str], *,
               exclude: Collection[str], n: int,
               weights: BlendWeights = DEFAULT_WEIGHTS) -> list[QuickItem]:
    """An entity's stored list with its newest item's model neighbours fused in.

    Parameters
    ----------
    stored
        The entity's stored blended list, best first (empty when it has none).
    neighbours
        The model neighbours of its newest item the model knows, best first.
    exclude
        Items the entity touched (``History.item_ids``): never in the list.
    n
        List length.
    weights
        The blend's weights (``similar`` and ``rank_offset`` are read).

    Returns
    -------
    list of QuickItem
        At most ``n`` items by descending score; ties keep the stored order, then the
        neighbours' order. A neighbour new to the list shows the reason ``similar``; a
        listed one keeps its reason.
    """
    if n <= 0:
        return []
    scores: dict[str, float] = {}
    reasons: dict[str, str] = {}
    for item, score, reason in stored:
        if item not in exclude and item not in scores:
            scores[item] = float(score)
            reasons[item] = reason
    rank = 0
    seen: set[str] = set()
    for item in neighbours:
        if item in exclude or item in seen:
            continue
        seen.add(item)
        rank += 1
        scores[item] = scores.get(item, 0.0) + weights.similar / (weights.rank_offset + rank)
        reasons.setdefault(item, "similar")
    ranked = sorted(scores.items(), key=lambda p: -p[1])[:n]  # stable: first-seen ties
    return [(item, score, reasons[item]) for item, score in ranked]
