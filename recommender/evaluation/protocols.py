"""Splits: seeded per-entity holdout, synthetic clocks for untimed data, checkpoints."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from recommender.evaluation.events import Event


@dataclass(frozen=True)
class Holdout:
    """A per-entity holdout split.

    Attributes
    ----------
    train
        Events kept for training (one per held-in interaction).
    test
        Held-out items per entity.
    """

    train: list[Event]
    test: dict[str, set[str]]


def holdout_split(events: Sequence[Event], *, fraction: float, seed: int,
                  min_items: int = 5) -> Holdout:
    """Hold out a seeded ``fraction`` of each entity's distinct items.

    Entities with fewer than ``min_items`` distinct items keep everything (too little to
    split); others hold out ``floor(fraction · n)`` items chosen uniformly at random, and
    all their events on those items go to the test side.

    Parameters
    ----------
    events
        Prepared events.
    fraction
        Share of each entity's items held out (``0.2`` for leave-20%-out).
    seed
        Seed of the choice (the same seed gives the same split).
    min_items
        Smallest number of distinct items an entity needs to be split.

    Returns
    -------
    Holdout
        Training events in input order and the held-out items.
    """
    rng = np.random.default_rng(seed)
    items: dict[str, list[str]] = {}
    for ev in events:
        bucket = items.setdefault(str(ev["entity"]), [])
        if ev["item_id"] not in bucket:
            bucket.append(str(ev["item_id"]))
    test: dict[str, set[str]] = {}
    for entity in sorted(items):
        distinct = items[entity]
        take = math.floor(fraction * len(distinct)) if len(distinct) >= min_items else 0
        if take > 0:
            chosen = rng.choice(len(distinct), size=take, replace=False)
            test[entity] = {distinct[int(i)] for i in chosen}
    train = [ev for ev in events if ev["item_id"] not in test.get(str(ev["entity"]), ())]
    return Holdout(train, test)


def synthetic_clock(events: Sequence[Event], *, seed: int, events_per_second: float,
                    start_ts: float = 0.0) -> list[dict[str, Any]]:
    """Give untimed events a seeded replay order and whole-second timestamps.

    ``events_per_second`` events share each second, the way a live shop's events with
    one-second timestamps arrive; the worker's batching and retrain timer then run on this
    clock.

    Parameters
    ----------
    events
        Prepared events (any order).
    seed
        Seed of the shuffle.
    events_per_second
        Arrival rate of the synthetic stream.
    start_ts
        Time of the first event.

    Returns
    -------
    list of dict
        Shuffled copies with ``ts`` set.
    """
    order = np.random.default_rng(seed).permutation(len(events))
    return [
        {**events[int(j)], "ts": start_ts + float(math.floor(pos / events_per_second))}
        for pos, j in enumerate(order)
    ]


def checkpoints(start_ts: float, end_ts: float, *, count: int) -> list[float]:
    """Evenly spaced checkpoint times in ``[start_ts, end_ts)``.

    Checkpoint ``j`` is at ``start_ts + j · (end_ts − start_ts) / count``, so a test window
    as long as the spacing covers the whole period, and shorter windows cover a regular
    sample of it.

    Parameters
    ----------
    start_ts, end_ts
        The evaluation period.
    count
        Checkpoints wanted.

    Returns
    -------
    list of float
        ``count`` increasing times (empty for an empty period).
    """
    if count <= 0 or end_ts <= start_ts:
        return []
    step = (end_ts - start_ts) / count
    return [start_ts + j * step for j in range(count)]
