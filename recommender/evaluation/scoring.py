"""Scoring a run: per-method tallies of the ranking metrics, the run's result, and the
blend inputs captured for tuning."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recommender.blend import BlendWeights, blend, merge_recent
from recommender.metrics import catalog_coverage, hit_rate, ndcg, recall, summarize

Scored = tuple[str, float]


@dataclass
class Captured:
    """The blend's inputs for one query (kept for tuning).

    ``session`` and ``similar`` hold the per-recent-item lists before merging, so the
    merge's recency decay can be tuned too.
    """

    personal: list[Scored]
    session: list[list[Scored]]
    similar: list[list[Scored]]
    trending: list[Scored]
    popular: list[Scored]
    exclude: set[str]
    history_size: int
    relevant: list[set[str]] = field(default_factory=list)

    def blend_inputs(self, weights: BlendWeights) -> dict[str, Any]:
        """Keyword arguments of :func:`recommender.blend.blend` for ``weights``."""
        return blend_inputs(self.personal, self.session, self.similar, self.trending,
                            self.popular, weights=weights, history_size=self.history_size)


def blend_inputs(personal: list[Scored], session: list[list[Scored]],
                 similar: list[list[Scored]], trending: list[Scored], popular: list[Scored],
                 *, weights: BlendWeights, history_size: int) -> dict[str, Any]:
    """Merge the per-item lists and name every blend input (as the API does)."""
    return {
        "personal": personal,
        "session": merge_recent(session, recency=weights.recency),
        "similar": merge_recent(similar, recency=weights.recency),
        "trending": trending,
        "popular": popular,
        "history_size": history_size,
    }


@dataclass
class Tally:
    """Per-case metric values and served lists of one method."""

    hr: list[float] = field(default_factory=list)
    ndcg: list[float] = field(default_factory=list)
    recall: list[float] = field(default_factory=list)
    shown: list[list[str]] = field(default_factory=list)

    def add(self, ranked: Sequence[str], relevant: set[str], *, k: int, k_recall: int) -> None:
        """Score one case."""
        self.hr.append(hit_rate(ranked, relevant, k))
        self.ndcg.append(ndcg(ranked, relevant, k))
        self.recall.append(recall(ranked, relevant, k_recall))


@dataclass
class RunResult:
    """What one protocol run produced.

    Attributes
    ----------
    tallies
        Per method, the per-case values.
    catalog_size
        Items in the data the run saw (coverage denominator).
    costs
        Per method, update cost details (seconds).
    info
        Protocol facts (events, cases, checkpoints, retrains ...).
    captured
        Blend inputs per query when :attr:`EvalSettings.capture` was on.
    """

    tallies: dict[str, Tally]
    catalog_size: int
    costs: dict[str, dict[str, float]]
    info: dict[str, Any]
    captured: list[Captured] = field(default_factory=list)

    def summary(self, k: int = 10, k_recall: int = 20) -> dict[str, dict[str, Any]]:
        """Means, standard errors and coverage per method."""
        out: dict[str, dict[str, Any]] = {}
        for name, tally in self.tallies.items():
            hr, nd, rc = summarize(tally.hr), summarize(tally.ndcg), summarize(tally.recall)
            out[name] = {
                f"hr@{k}": hr.mean, f"hr@{k}_se": hr.stderr,
                f"ndcg@{k}": nd.mean, f"ndcg@{k}_se": nd.stderr,
                f"recall@{k_recall}": rc.mean, f"recall@{k_recall}_se": rc.stderr,
                f"coverage@{k}": catalog_coverage(tally.shown, self.catalog_size, k),
                "cases": hr.n,
                **self.costs.get(name, {}),
            }
        return out


def score_cases(tallies: dict[str, Tally], answers: Mapping[str, list[list[str]]],
                cases: Sequence[tuple[int, set[str]]], *, k: int, k_recall: int) -> None:
    """Add one case per ``(entity position, relevant set)`` to each method's tally;
    every answered list counts once for coverage."""
    for name, lists in answers.items():
        tally = tallies[name]
        for pos, relevant in cases:
            tally.add(lists[pos], relevant, k=k, k_recall=k_recall)
        tally.shown.extend(lst[:k] for lst in lists)


def blend_ndcg(captured: Iterable[Captured], weights: BlendWeights, *, k: int = 10) -> float:
    """Mean NDCG@k of the blend with ``weights`` over captured queries (for tuning)."""
    values: list[float] = []
    for cap in captured:
        ranked = [b.item_id for b in blend(n=k, exclude=cap.exclude, weights=weights,
                                           **cap.blend_inputs(weights))]
        values.extend(ndcg(ranked, rel, k) for rel in cap.relevant)
    return float(np.mean(values)) if values else 0.0
