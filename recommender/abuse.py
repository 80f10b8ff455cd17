"""Manipulation resistance: how much one event may move the global lists.

Popular, trending and co-occurrence are sums over everybody's events, so whoever sends
the most events wins them — one script replaying 10,000 views, or a few hundred fresh
anonymous ids in a burst. This module decides the *weight multiplier* of an event's
contribution to those sums from the sender's own remembered history (the worker keeps it
per entity anyway), with three rules:

1. **One unit per item, type and window.** An entity adds to an item's score at most once
   per event type per window (``window_s``, event time): the 2nd..10,000th view of the
   same item in the same hour adds nothing.
2. **At most ``max_per_window`` contributions per window.** An entity that touched that
   many distinct (item, type) pairs in the window adds nothing more until the next one, so
   sweeping the catalogue does not scale either.
3. **New ids weigh less.** The multiplier grows linearly from ``min_trust`` for an id seen
   for the first time to 1 once the id's remembered history spans ``ramp_s``. A burst of
   fresh ids moves the lists by ``min_trust`` each, while shoppers who were around before
   count fully. Purchases are exempt from this rule (they cost money; rules 1 and 2 still
   apply).

Everything is decided from event times and the entity's entries *ordered before* the event
(``(ts, event_id)``, the history's own order), never from wall-clock time or from what has
already been applied, so redelivery, crash recovery and replays reach the same decision.
Exact per-item counts (``i:{item}:stats``) are never capped: they report what happened.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

#: One remembered event: ``(event_id, item_id, event_type, ts)`` (as in ``History``).
Entry = tuple[str, str, str, float]


@dataclass(frozen=True)
class AbusePolicy:
    """The knobs of :func:`contribution` (the worker fills them from settings).

    Attributes
    ----------
    window_s
        Length of a counting window in event-time seconds.
    max_per_window
        Most distinct (item, type) contributions of one entity per window.
    ramp_s
        History span (seconds) after which an entity counts fully.
    min_trust
        Multiplier of an entity seen for the first time, in ``(0, 1]``.
    exempt_types
        Event types the new-id discount does not apply to.
    """

    window_s: float = 3600.0
    max_per_window: int = 100
    ramp_s: float = 3600.0
    min_trust: float = 0.05
    exempt_types: frozenset[str] = frozenset({"purchase"})

    def __post_init__(self) -> None:
        if not self.window_s > 0:
            raise ValueError("window_s must be positive")
        if self.max_per_window < 1:
            raise ValueError("max_per_window must be at least 1")
        if self.ramp_s < 0:
            raise ValueError("ramp_s must not be negative")
        if not 0 < self.min_trust <= 1:
            raise ValueError("min_trust must be in (0, 1]")


def trust(age_s: float, *, ramp_s: float, min_trust: float) -> float:
    """Return the multiplier of an entity whose history spans ``age_s`` seconds.

    Parameters
    ----------
    age_s
        Event time of this event minus that of the entity's oldest remembered event.
    ramp_s
        Span at which the multiplier reaches 1 (0: everyone counts fully).
    min_trust
        Multiplier at ``age_s == 0``.

    Returns
    -------
    float
        ``min_trust + (1 - min_trust) * min(1, age_s / ramp_s)``, in ``[min_trust, 1]``.
    """
    if ramp_s <= 0:
        return 1.0
    frac = min(1.0, max(0.0, age_s) / ramp_s)
    return min_trust + (1.0 - min_trust) * frac


def window_of(ts: float, window_s: float) -> int:
    """Index of the counting window holding event time ``ts``."""
    return math.floor(ts / window_s)


def contribution(
    *,
    event_id: str,
    item_id: str,
    event_type: str,
    ts: float,
    prior: Iterable[Entry],
    policy: AbusePolicy,
) -> float:
    """Return the multiplier (0..1) of one event's effect on popular/trending/co-occurrence.

    Parameters
    ----------
    event_id, item_id, event_type, ts
        The event being applied.
    prior
        The entity's remembered entries. Only those ordered before the event by
        ``(ts, event_id)`` are considered, so the event itself (when redelivered and
        already remembered) and later events never influence the decision.
    policy
        Caps and trust ramp.

    Returns
    -------
    float
        0 when a cap applies (see the module notes), else the entity's trust multiplier.
    """
    key = (ts, event_id)
    window = window_of(ts, policy.window_s)
    oldest = ts
    pairs: set[tuple[str, str]] = set()
    for e_id, e_item, e_type, e_ts in prior:
        if (e_ts, e_id) >= key:
            continue
        oldest = min(oldest, e_ts)
        if window_of(e_ts, policy.window_s) == window:
            pairs.add((e_item, e_type))
    if (item_id, event_type) in pairs or len(pairs) >= policy.max_per_window:
        return 0.0
    if event_type in policy.exempt_types:
        return 1.0
    return trust(ts - oldest, ramp_s=policy.ramp_s, min_trust=policy.min_trust)
