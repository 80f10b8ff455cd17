"""The item-level state of the evaluator's worker replay: what Redis holds for the worker.

The worker turns each event's counted increments
(:func:`recommender.batch_step.count_event`) into ``ZINCRBY`` operations that a Lua
script applies once per event id; :class:`ItemCounts` applies the same increments to
arrays and dicts, once per event id, and answers the reads the worker and the API make
(the heads of ``popular``, ``trending`` and an item's co-occurrence list).
"""

from __future__ import annotations

import numpy as np

from recommender.batch_step import Increments
from recommender.idmap import IdMap
from recommender.topn import top_n
from recommender.trending import FORGET_BELOW, needs_rebase, rebase_factor

Scored = tuple[str, float]


class ScoreCounter:
    """A growable item → score array (stands in for a Redis sorted set)."""

    def __init__(self, items: IdMap) -> None:
        self.items = items
        self.values = np.zeros(1024, dtype=np.float64)

    def add(self, item: str, amount: float) -> None:
        """``ZINCRBY``."""
        i = self.items.add(item)
        if i >= self.values.size:
            grown = np.zeros(max(2 * self.values.size, i + 1), dtype=np.float64)
            grown[: self.values.size] = self.values
            self.values = grown
        self.values[i] += amount

    def top(self, n: int) -> list[Scored]:
        """The ``n`` best positive scores, best first."""
        size = len(self.items)
        vals = self.values[:size]
        idx, top = top_n(np.where(vals > 0, vals, -np.inf), n)
        ids = self.items.ids_of(idx)
        return list(zip(ids, (float(v) for v in top[idx >= 0]), strict=True))


class ItemCounts:
    """Popularity, forward-decayed trending and co-occurrence, counted once per event id.

    Parameters
    ----------
    trending_half_life_s
        ``Settings.trending_half_life_s`` (the epoch is rebased as the worker does).
    """

    def __init__(self, trending_half_life_s: float) -> None:
        self.half_life_s = trending_half_life_s
        self.items = IdMap()
        self.popular = ScoreCounter(self.items)
        self.trending = ScoreCounter(self.items)
        self.cooc: dict[str, dict[str, float]] = {}
        self.seen: set[str] = set()
        self.t0: float | None = None
        self._cooc_top: dict[str, list[Scored]] = {}

    def epoch(self, batch_max_ts: float, batch_min_ts: float) -> float:
        """The trending reference time of a batch: set from the first batch, moved
        forward (rescaling every score) when the batch is too far ahead of it."""
        hl = self.half_life_s
        if self.t0 is None:
            self.t0 = float(int(batch_min_ts))
        if needs_rebase(batch_max_ts, self.t0, hl):
            new_t0 = float(int(batch_max_ts))
            values = self.trending.values
            values *= rebase_factor(self.t0, new_t0, hl)
            values[values < FORGET_BELOW] = 0.0  # as the worker's rebase drops them
            self.t0 = new_t0
        return self.t0

    def count(self, event_id: str, counted: Increments | None) -> None:
        """Apply one event's increments, unless its id was counted before."""
        if event_id in self.seen:
            return
        self.seen.add(event_id)
        if counted is None or counted.popular <= 0:
            return
        self.popular.add(counted.item, counted.popular)
        self.trending.add(counted.item, counted.trending)
        for a, b, w in counted.cooc:
            partners = self.cooc.setdefault(a, {})
            partners[b] = partners.get(b, 0.0) + w
            self._cooc_top.pop(a, None)

    def cooc_top(self, item: str, n: int) -> list[Scored]:
        """The item's co-occurrence partners, best first (``ZREVRANGE item_cooc``)."""
        cached = self._cooc_top.get(item)
        if cached is None or len(cached) < n:
            partners = self.cooc.get(item, {})
            cached = sorted(partners.items(), key=lambda p: -p[1])[: max(n, 1)]
            self._cooc_top[item] = cached
        return cached[:n]
