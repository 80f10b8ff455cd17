"""How much each kind of event says about a shopper's interest in an item.

Two tables, because the two consumers need different things:

* :data:`EVENT_WEIGHTS` feeds the per-user interaction matrix (ALS, fold-in). A
  ``remove_from_cart`` is real negative evidence there: it cancels part of the earlier
  ``add_to_cart`` for that user and item. Sums are clamped at zero downstream, so a user
  never ends up "disliking" an item into negative confidence.
* :data:`POPULARITY_WEIGHTS` feeds global counters (popular, trending, co-occurrence).
  Those are monotone counters updated by increments; a negative increment would let a
  burst of removals push an item below items nobody touched, so removals count 0 there.

``impression`` weighs 0 in both: being shown an item is something the site did, not
something the shopper did. Treating it as a weak positive would make the recommender
reinforce its own output; treating it as a negative ("shown but not clicked") needs
position-aware modelling we do not do yet. So for now impressions are ignored by the
models and only used for attribution. ``identify`` and any unknown type also weigh 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

#: Weight of one event of each type in the user × item interaction matrix.
EVENT_WEIGHTS: dict[str, float] = {
    "view": 1.0,
    "click": 1.0,
    "add_to_cart": 3.0,
    "purchase": 6.0,
    "remove_from_cart": -2.0,
    "impression": 0.0,
}

#: Weight of one event of each type in global, increment-only scores: never negative.
POPULARITY_WEIGHTS: dict[str, float] = {
    **EVENT_WEIGHTS,
    "remove_from_cart": 0.0,
}

#: Event types whose weight grows with the ``quantity`` field.
QUANTITY_TYPES: frozenset[str] = frozenset({"purchase"})

#: Half-life, in seconds, of an event's weight relative to the same entity's newest event
#: (see :func:`recency_decay`). ``math.inf`` switches decay off.
DECAY_HALF_LIFE_S: float = math.inf


def _scaled(table: Mapping[str, float], event_type: str, quantity: int | None) -> float:
    base = table.get(event_type, 0.0)
    if base == 0.0 or event_type not in QUANTITY_TYPES or quantity is None or quantity <= 1:
        return base
    return base * (1.0 + math.log(quantity))


def event_weight(event_type: str, quantity: int | None = None) -> float:
    """Return the interaction-matrix weight of one event.

    Buying ten of something is stronger evidence than buying one, but not ten times
    stronger (bulk buys of consumables would otherwise dominate a user's profile), so a
    purchase weighs ``w * (1 + ln(quantity))``: 1 → 6.0, 2 → 10.2, 10 → 19.8. Other types
    ignore ``quantity``.

    Parameters
    ----------
    event_type
        The event's ``type`` (``view``, ``purchase``, ...).
    quantity
        Units bought; ``None`` or values below 2 count as one unit.

    Returns
    -------
    float
        The weight; ``0.0`` for impressions, ``identify`` and unknown types.
    """
    return _scaled(EVENT_WEIGHTS, event_type, quantity)


def popularity_weight(event_type: str, quantity: int | None = None) -> float:
    """Return the weight of one event in popular / trending / co-occurrence scores.

    Same as :func:`event_weight` except that nothing is negative (see the module notes),
    so these scores can be maintained by increments alone.

    Parameters
    ----------
    event_type
        The event's ``type``.
    quantity
        Units bought; only purchases use it (sub-linearly).

    Returns
    -------
    float
        A weight ``>= 0``.
    """
    return _scaled(POPULARITY_WEIGHTS, event_type, quantity)


def recency_decay(ts: float, newest_ts: float, half_life_s: float | None = None) -> float:
    """Return the time-decay factor of an event, relative to the entity's newest event.

    An entity's interests drift, so older events should say less about what it wants now.
    The decay is measured from the entity's *own* newest event rather than from the wall
    clock: a returning user's profile is then not uniformly shrunk (ALS confidences are not
    scale-free), a user's row depends only on its own events (the retrain and the worker's
    fold-in agree), and replays give the same weights. Events at or after ``newest_ts``
    count fully.

    Parameters
    ----------
    ts
        The event's time, epoch seconds.
    newest_ts
        The time of the entity's newest event.
    half_life_s
        Age at which a weight halves; ``None`` means :data:`DECAY_HALF_LIFE_S`, and an
        infinite or non-positive value means no decay.

    Returns
    -------
    float
        ``2 ** (-(newest_ts - ts) / half_life_s)``, in ``(0, 1]``.
    """
    hl = DECAY_HALF_LIFE_S if half_life_s is None else half_life_s
    if not math.isfinite(hl) or hl <= 0.0 or ts >= newest_ts:
        return 1.0
    return float(2.0 ** (-(newest_ts - ts) / hl))
