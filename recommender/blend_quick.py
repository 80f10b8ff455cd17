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

__all__ = ["QuickItem", "quick_entries", "quick_list"]

#: One item of a stored blended list: ``(id, fused score, reason)``.
QuickItem = tuple[str, float, str]
PERSONAL, SIMILAR = REASONS["personal"], REASONS["similar"]
_SCORE = itemgetter(1)


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
    entries, _ = quick_entries(stored, neighbours, exclude=exclude, n=n, weights=weights)
    return [(e[0], e[1], e[2]) for e in entries]


def quick_entries(stored: Sequence[Sequence[Any]], neighbours: Sequence[str], *,
                  exclude: Collection[str], n: int,
                  weights: BlendWeights = DEFAULT_WEIGHTS
                  ) -> tuple[list[list[Any]], list[list[Any]]]:
    """:func:`quick_list` as ``[id, score, reason]`` lists, reusing the stored entries
    that stay as they are, and which of the entries have a new score.

    The worker serialises the answer as it read it: a stored ``[id, float, reason]``
    entry whose item gains nothing is the same list object (its score was rounded by
    ``stream.redis_writer.dumps_list`` when it was written, and rounding a rounded score
    gives it back bit for bit), so only the second answer's entries (the neighbours'
    gains, and entries stored in another shape) need rounding. The first level runs for
    every event of a worker whose re-folds wait; building a tuple per entry, then
    rounding, zipping and serialising the whole list again, was a third of its cost
    (py-spy of the held phase and ``/tmp`` micro-benchmarks, 2026-12-06).

    Parameters
    ----------
    stored, neighbours, exclude, n, weights
        As :func:`quick_list`.

    Returns
    -------
    entries : list of list
        :func:`quick_list`'s items, in its order, as ``[id, score, reason]`` lists.
    fresh : list of list
        The entries (the same objects) whose score is not a stored one, also those the
        length cut: the caller rounds their scores before it serialises ``entries``.
    """
    if n <= 0:
        return [], []
    gains: dict[str, float] = {}
    for item in neighbours:
        if item not in exclude and item not in gains:
            gains[item] = weights.similar / (weights.rank_offset + len(gains) + 1)
    entries: list[Any] = []
    fresh: list[list[Any]] = []
    listed: set[str] = set()
    for entry in stored:
        item = entry[0]
        if item in exclude or item in listed:
            continue
        listed.add(item)
        if item in gains:
            new = [item, float(entry[1]) + gains[item], entry[2] if len(entry) > 2 else PERSONAL]
        elif len(entry) == 3 and type(entry[1]) is float:
            entries.append(entry)  # as stored: its score is rounded already
            continue
        else:
            new = [item, float(entry[1]), entry[2] if len(entry) > 2 else PERSONAL]
        entries.append(new)
        fresh.append(new)
    added = [[item, 0.0 + gain, SIMILAR] for item, gain in gains.items() if item not in listed]
    entries.extend(added)
    fresh.extend(added)
    entries.sort(key=_SCORE, reverse=True)  # stable: ties keep first-seen order
    del entries[n:]
    return entries, fresh
