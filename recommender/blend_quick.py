"""The first freshness level: a stored blended list updated for a new event, cheaply.

Rebuilding an entity's list (fold-in, every source's candidates, the blend) costs a few
hundred µs; when the worker cannot re-fold every list at once, the re-fold waits,
coalesced per entity (:class:`recommender.coalesce.Coalescer`). Meanwhile the entity's
stored list reacts to its events at once, for tens of µs: the model neighbours of its
newest item join the list as the ``similar`` source of :func:`recommender.blend.blend`
would add them for a newest item (rank fusion, weight ``similar``, no recency discount),
and every item the entity has touched leaves it, as the re-fold's exclusion rule says.
The re-fold later replaces this list with the exact one (replays never take this path:
their lists never wait).

Pure: plain containers in and out, no I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from operator import itemgetter
from typing import Any

from recommender.blend import DEFAULT_WEIGHTS, BlendWeights
from recommender.refresh import REASONS

__all__ = ["QuickItem", "quick_list"]

#: One item of a stored blended list: ``(id, fused score, reason)``.
QuickItem = tuple[str, float, str]
PERSONAL, SIMILAR = REASONS["personal"], REASONS["similar"]


def quick_list(stored: Sequence[Sequence[Any]], neighbours: Sequence[str], *,
               exclude: Collection[str], n: int,
               weights: BlendWeights = DEFAULT_WEIGHTS) -> list[QuickItem]:
    """An entity's stored list with its newest item's model neighbours fused in.

    Parameters
    ----------
    stored
        The entity's stored blended list, best first, as stored: ``[id, score, reason]``
        entries (``[id, score]`` reads as a personal one); empty when it has none.
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
    gains: dict[str, float] = {}
    for item in neighbours:
        if item not in exclude and item not in gains:
            gains[item] = weights.similar / (weights.rank_offset + len(gains) + 1)
    out: list[QuickItem] = []
    listed: set[str] = set()
    for entry in stored:
        item = entry[0]
        if item in exclude or item in listed:
            continue
        listed.add(item)
        score = float(entry[1]) + gains[item] if item in gains else float(entry[1])
        out.append((item, score, entry[2] if len(entry) > 2 else PERSONAL))
    out.extend((item, 0.0 + gain, SIMILAR) for item, gain in gains.items()
               if item not in listed)
    out.sort(key=itemgetter(1), reverse=True)  # stable: ties keep first-seen order
    return out[:n]
