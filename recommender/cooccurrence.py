"""Streaming item-to-item co-occurrence ("shoppers who touched this also touched ...").

Each new interaction pairs its item with the entity's most recent other items, in both
directions, and the worker adds those weights to per-item sorted sets. It is the session
fallback between retrains and for items too new to have factors.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

#: Pair weight falls as ``1 / (1 + POSITION_DECAY · rank)`` with the partner's recency
#: rank: the most recent partner counts fully, the 11th half, the 21st a third. Items
#: touched in quick succession are likelier related than items from the same long
#: history, but older items still say something, so the decay is gentle (hyperbolic).
POSITION_DECAY = 0.1


def cooccurrence_pairs(
    item_id: str, recent_items: Sequence[str], *, weight: float, window: int
) -> list[tuple[str, str, float]]:
    """Return the symmetric co-occurrence increments caused by one interaction.

    Parameters
    ----------
    item_id
        The item of the new event.
    recent_items
        The entity's recent items, newest first (e.g.
        :meth:`recommender.history.History.recent_items`). ``item_id`` itself and repeats
        are skipped, so it does not matter whether the new event is already included.
    weight
        The event's weight (use :func:`recommender.weights.popularity_weight`, never
        negative); ``<= 0`` yields no pairs.
    window
        Most partners (``Settings.cooc_window``); ``<= 0`` yields no pairs.

    Returns
    -------
    list of tuple
        ``(a, b, w)`` increments: for each partner both ``(item_id, partner, w)`` and
        ``(partner, item_id, w)``, with ``w = weight / (1 + POSITION_DECAY · rank)`` where
        ``rank`` is 0 for the most recent partner.
    """
    pairs: list[tuple[str, str, float]] = []
    if weight <= 0.0 or window <= 0:
        return pairs
    taken = {item_id}
    rank = 0
    for other in recent_items:
        if other in taken:
            continue
        taken.add(other)
        w = weight / (1.0 + POSITION_DECAY * rank)
        pairs.append((item_id, other, w))
        pairs.append((other, item_id, w))
        rank += 1
        if rank >= window:
            break
    return pairs


def normalize_cooc(
    cooc: npt.ArrayLike, *, count: float, partner_counts: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """Rescale raw co-occurrence weights to cosine-like scores.

    Raw co-occurrence favours items that are popular everywhere; dividing by
    ``sqrt(count · partner_count)`` (the geometric mean of the two items' own weights)
    ranks partners by how specifically they go with the item instead.

    Parameters
    ----------
    cooc
        Raw co-occurrence weights of one item with each partner.
    count
        The item's own total weight (e.g. its ``popular`` score).
    partner_counts
        Each partner's total weight, aligned with ``cooc``.

    Returns
    -------
    numpy.ndarray
        Normalised scores; 0 where either count is not positive.
    """
    raw = np.asarray(cooc, dtype=np.float64)
    denom = np.sqrt(np.maximum(count, 0.0) * np.maximum(np.asarray(partner_counts, float), 0.0))
    out = np.zeros(np.broadcast(raw, denom).shape, dtype=np.float64)
    np.divide(raw, denom, out=out, where=denom > 0.0)
    return out
