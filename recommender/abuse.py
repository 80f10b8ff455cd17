"""Manipulation resistance: how much one event may move the global lists.

Popular, trending and co-occurrence are sums over everybody's events, so whoever sends
the most events wins them — one script replaying 10,000 views, or a few hundred fresh
anonymous ids in a burst. This module decides the *weight multiplier* of an event's
contribution to those sums from the sender's own remembered history (the worker keeps it
per entity anyway). Every decision uses the **server's receive time** of the events
(``TopicEvent.receive_time``), never the client's timestamp: a client may date its events
any age back (backfills), so an id whose first view claims to be a day old is still a
new id, and 200 views "spread over 20 hours" that all arrived now fall in one window.

1. **One unit per item, type and window.** An entity adds to an item's score at most once
   per event type per window (``window_s``): the 2nd..10,000th view of the same item in
   the same hour adds nothing. So one entity adds at most the sum of the type weights
   (view + click + cart + purchase, the purchase with its quantity capped, see 4) to one
   item per window.
2. **At most ``max_per_window`` contributions per window.** An entity that touched that
   many distinct (item, type) pairs in the window adds nothing more until the next one, so
   sweeping the catalogue does not scale either.
3. **New ids weigh less.** The multiplier grows linearly from ``min_trust`` for an id seen
   for the first time to 1 once the id's remembered history spans ``ramp_s``. Purchases
   get no exemption (a forged purchase costs nothing).
4. **Quantity is capped.** A purchase counts as at most ``max_quantity`` units
   (``1 + ln q`` of them, :func:`recommender.weights.popularity_weight`).
5. **Newcomers share a budget.** All not yet fully trusted ids *together* add at most
   ``newcomer_budget`` weight to one item per window; 300 fresh ids add what a handful of
   established shoppers would. The budget is split into ``budget_shares`` equal shares,
   one per partition of the ``events`` topic (the worker sets it to the topic's
   partition count): a newcomer event draws on its own partition's share only. The
   events of one item come from many partitions (the topic is keyed by entity), and
   which partition's event reaches Redis first changes from run to run and between one
   worker and several; within one partition, the log order decides, the same in every
   run. So a replay gives the state the live run gave, while the shares together stay
   within the budget. The shares are kept by the writer in Redis
   (``i:{item}:newcomers:{w}:{partition}``, charged in log order); this module only says
   which events draw on them (:func:`assess`, ``trust < 1``) and how large a share is
   (:meth:`AbusePolicy.budget_share`).

Rules 1-3 are decided from the entity's entries *ordered before* the event by
``(receive time, event_id)``, never from wall-clock time or from what has already been
applied, so redelivery, crash recovery and replays reach the same decision.
Exact per-item counts (``i:{item}:stats``) are never capped: they report what happened.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

#: One remembered event: ``(event_id, item_id, event_type, ts, received)`` (as in
#: ``History``); a 4-tuple counts its ``ts`` as its receive time.
Entry = tuple[str, str, str, float, float]


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
        Event types the new-id discount does not apply to (none by default).
    max_quantity
        Most units of one purchase that count (rule 4).
    newcomer_budget
        Weight all not fully trusted ids together may add to one item per window
        (rule 5); 0 switches the budget off.
    budget_shares
        Equal shares the budget is split into, one per ``events`` partition (rule 5).
    """

    window_s: float = 3600.0
    max_per_window: int = 100
    ramp_s: float = 3600.0
    min_trust: float = 0.05
    exempt_types: frozenset[str] = frozenset()
    max_quantity: int = 10
    newcomer_budget: float = 3.0
    budget_shares: int = 1

    def __post_init__(self) -> None:
        if not self.window_s > 0:
            raise ValueError("window_s must be positive")
        if self.max_per_window < 1:
            raise ValueError("max_per_window must be at least 1")
        if self.ramp_s < 0:
            raise ValueError("ramp_s must not be negative")
        if not 0 < self.min_trust <= 1:
            raise ValueError("min_trust must be in (0, 1]")
        if self.max_quantity < 1:
            raise ValueError("max_quantity must be at least 1")
        if self.newcomer_budget < 0:
            raise ValueError("newcomer_budget must not be negative")
        if self.budget_shares < 1:
            raise ValueError("budget_shares must be at least 1")

    def budget_share(self) -> float:
        """Weight the newcomers of one ``events`` partition may add to one item per
        window (rule 5): ``newcomer_budget / budget_shares``."""
        return self.newcomer_budget / self.budget_shares

    def quantity(self, quantity: int | None) -> int | None:
        """The units of a purchase that count (rule 4)."""
        return None if quantity is None else min(int(quantity), self.max_quantity)


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


def _received(entry: Sequence[Any]) -> float:
    return float(entry[4]) if len(entry) > 4 else float(entry[3])


def assess(
    *,
    event_id: str,
    item_id: str,
    event_type: str,
    received: float,
    prior: Iterable[Sequence[Any]],
    policy: AbusePolicy,
    first_received: float | None = None,
    trusted: bool = False,
) -> tuple[float, float]:
    """Return ``(multiplier, trust)`` of one event's effect on popular/trending/co-occurrence.

    Parameters
    ----------
    event_id, item_id, event_type
        The event being applied.
    received
        Its server receive time (epoch seconds): windows and ages are measured on it.
    prior
        The entity's receipts (``Entry``; the batch step passes ``History.receipts``, see
        :func:`note_receipt`). Only those ordered before the event by ``(receive time,
        event_id)`` are considered, so the event itself (when redelivered and already
        remembered) and later events never influence the decision.
    policy
        Caps and trust ramp.
    first_received
        The entity's first receive time ever (``History.first_received``), its age's
        origin; None: the oldest of ``prior`` ordered before the event.
    trusted
        An operator's backfill (``TopicEvent.backfill``): full trust whatever the id's
        age (rules 3 and 5 do not apply; the caps of rules 1 and 2 still do), since the
        ids of a shop's imported history are all new to the worker.

    Returns
    -------
    tuple of float
        The multiplier — 0 when a cap applies (rules 1-2), else the trust — and the trust
        itself (below 1: the event draws on the item's newcomer budget, rule 5).
    """
    key = (received, event_id)
    window = window_of(received, policy.window_s)
    oldest = received
    pairs: set[tuple[str, str]] = set()
    for entry in prior:
        e_received = _received(entry)
        if (e_received, entry[0]) >= key:
            continue
        oldest = min(oldest, e_received)
        if window_of(e_received, policy.window_s) == window:
            pairs.add((entry[1], entry[2]))
    if first_received is not None:
        oldest = min(received, first_received)
    level = trust(received - oldest, ramp_s=policy.ramp_s, min_trust=policy.min_trust)
    if trusted or event_type in policy.exempt_types:
        level = 1.0
    if (item_id, event_type) in pairs or len(pairs) >= policy.max_per_window:
        return 0.0, level
    return level, level


def contribution(
    *,
    event_id: str,
    item_id: str,
    event_type: str,
    ts: float,
    prior: Iterable[Sequence[Any]],
    policy: AbusePolicy,
) -> float:
    """Return the multiplier (0..1) of :func:`assess` alone; ``ts`` is the event's receive
    time (for records and simulations where event and receive time are one)."""
    return assess(event_id=event_id, item_id=item_id, event_type=event_type, received=ts,
                  prior=prior, policy=policy)[0]


def note_receipt(receipts: list[Entry], entry: Sequence[Any], *, window_s: float,
                 max_pairs: int) -> bool:
    """Remember an applied event for rules 1-2, in place; True when ``receipts`` changed.

    ``receipts`` (sorted by ``(receive time, event_id)``) keep, for the entity's latest
    window only, the first event of each (item, type) pair, at most ``max_pairs`` pairs:
    all :func:`assess` needs, whatever the events claim as their time. (The history's
    entries cannot serve: they are kept by claimed time, so events dated far back drop
    out at once and would never be seen as repeats.) An event of an earlier window than
    the latest remembered one (clock skew between API processes) is not kept.
    """
    event_id, item, etype = str(entry[0]), str(entry[1]), str(entry[2])
    received = _received(entry)
    window = window_of(received, window_s)
    if receipts:
        latest = window_of(max(_received(r) for r in receipts), window_s)
        if window < latest:
            return False
        if window > latest:
            receipts.clear()
    key = (received, event_id)
    for at, r in enumerate(receipts):
        if r[0] == event_id:
            return False
        if (r[1], r[2]) == (item, etype):
            if (_received(r), r[0]) <= key:
                return False
            del receipts[at]  # this event is the pair's first after all
            break
    else:
        if len(receipts) >= max_pairs:
            return False
    receipts.append((event_id, item, etype, received, received))
    receipts.sort(key=lambda r: (r[4], r[0]))
    return True
