"""The production blend: candidate lists from every source in, one ranked top-N out.

The serving chain has five sources, in order of specificity:

``personal``
    the entity's ALS list (retrain, or fold-in after each new event);
``session``
    co-occurrence of the entity's recent items, summed over those items
    (:func:`merge_summed`): streaming, so it covers items the model has never seen;
``similar``
    the model's nearest neighbours of the recent items, summed the same way;
``trending``
    forward-decayed popularity;
``popular``
    all-time popularity.

Scores of different sources are not comparable (dot products, co-occurrence weights,
counts), so sources are fused by rank, in the manner of reciprocal rank fusion (Cormack,
Clarke & Büttcher, SIGIR 2009): an item at 1-based rank ``r`` of source ``s`` earns
``weight_s / (rank_offset + r)``, and an item's score is the sum over the sources that list
it. Agreement between sources therefore lifts an item, and a strong session signal can
outrank the tail of a weak personal list, while ``trending`` and ``popular`` with small
weights act as the fallbacks that fill the list when the specific sources run dry. The
weights were chosen on validation splits (see ``docs/quality.md``).

The function is pure and works for any hashable ids, so the API (string ids) and the
evaluator (the same string ids) call the very same code.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Generic, TypeVar

__all__ = [
    "DEFAULT_WEIGHTS",
    "SOURCES",
    "BlendWeights",
    "Blended",
    "blend",
    "merge_recent",
    "merge_summed",
]

K = TypeVar("K", bound=Hashable)

#: Source names, in fallback order (the order ties are broken in).
SOURCES: tuple[str, ...] = ("personal", "session", "similar", "trending", "popular")


@dataclass(frozen=True)
class BlendWeights:
    """Per-source weights of the rank fusion.

    Attributes
    ----------
    personal, session, similar, trending, popular
        Weight of each source (``0`` switches a source off).
    rank_offset
        ``k`` of reciprocal rank fusion: larger values flatten the rank discount, so
        deeper items of a heavily weighted source keep more of their weight.
    evidence
        Shrinks the personal weight for entities with little history: with ``h`` known
        items it is multiplied by ``h / (h + evidence)`` (``0``: no shrinkage). A model's
        list for a visitor with one click is mostly that item's neighbourhood, which the
        session source already gives more precisely.
    recency
        How much more the latest items count when the per-item lists of the ``session``
        and ``similar`` sources are merged (:func:`merge_recent`).
    """

    personal: float = 2.0
    session: float = 1.0
    similar: float = 0.5
    trending: float = 0.25
    popular: float = 0.05
    rank_offset: float = 10.0
    evidence: float = 1.0
    recency: float = 5.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value < 0:
                raise ValueError(f"{f.name} must be >= 0, got {value}")

    def of(self, source: str) -> float:
        """Return the weight of ``source`` (one of :data:`SOURCES`)."""
        if source not in SOURCES:
            raise KeyError(source)
        return float(getattr(self, source))


#: The weights production uses (chosen on the validation splits; docs/quality.md).
DEFAULT_WEIGHTS = BlendWeights()


@dataclass(frozen=True)
class Blended(Generic[K]):
    """One item of a blended list.

    Attributes
    ----------
    item_id
        The item.
    score
        Its fused score (higher is better; only the order is meaningful).
    source
        The source that contributed most to the score: the "reason" to show.
    """

    item_id: K
    score: float
    source: str


def merge_recent(lists: Iterable[Sequence[tuple[K, float]]], *,
                 recency: float = 0.0) -> list[tuple[K, float]]:
    """Merge the per-item lists of an entity's recent items, newest item first.

    The list of the ``r``-th most recent item (``r = 0`` for the newest) is scaled by
    ``1 / (1 + recency · r)`` before the scores are summed, so with ``recency > 0`` what
    goes with the item just viewed outweighs what went with items viewed long ago, as in
    decay-weighted session kNN (Ludewig & Jannach, "Evaluation of session-based
    recommendation algorithms", UMUAI 2018).

    Parameters
    ----------
    lists
        ``(item, score)`` lists, one per recent item, newest item first.
    recency
        Decay per recency rank (``0``: plain sum, :func:`merge_summed`).

    Returns
    -------
    list of tuple
        ``(item, weighted sum)`` sorted by descending score; ties keep first-seen order.
    """
    totals: dict[K, float] = {}
    for rank, pairs in enumerate(lists):
        scale = 1.0 / (1.0 + recency * rank)
        for item, score in pairs:
            totals[item] = totals.get(item, 0.0) + scale * float(score)
    return sorted(totals.items(), key=lambda p: -p[1])


def merge_summed(lists: Iterable[Sequence[tuple[K, float]]]) -> list[tuple[K, float]]:
    """Merge scored lists by summing each id's scores; best first.

    Used to turn the co-occurrence (or neighbour) lists of several recent items into one
    ``session`` (or ``similar``) candidate list. Ties keep first-seen order, so the
    result is deterministic for any id type.

    Parameters
    ----------
    lists
        ``(item, score)`` lists.

    Returns
    -------
    list of tuple
        ``(item, summed score)`` sorted by descending score.
    """
    return merge_recent(lists, recency=0.0)


def blend(
    *,
    n: int,
    personal: Sequence[tuple[K, float]] = (),
    session: Sequence[tuple[K, float]] = (),
    similar: Sequence[tuple[K, float]] = (),
    trending: Sequence[tuple[K, float]] = (),
    popular: Sequence[tuple[K, float]] = (),
    exclude: Collection[K] = (),
    weights: BlendWeights = DEFAULT_WEIGHTS,
    history_size: int | None = None,
) -> list[Blended[K]]:
    """Fuse the candidate lists of all sources into the final top-``n``.

    Parameters
    ----------
    n
        Items wanted.
    personal, session, similar, trending, popular
        Each source's ``(item, score)`` candidates, best first (the scores are not used:
        only the order is). Missing sources are empty.
    exclude
        Items never to return (already bought, already seen, asked to exclude). They are
        removed before ranks are counted, so an excluded head does not demote a source.
    weights
        Fusion weights; :data:`DEFAULT_WEIGHTS` unless tuning.
    history_size
        Distinct items the entity has interacted with (the API passes the length of its
        recent-items list); scales the personal weight by ``h / (h + evidence)``.
        ``None`` leaves it unscaled.

    Returns
    -------
    list of Blended
        At most ``n`` distinct items, best first. Items with equal scores keep the order
        of the chain (personal first) and of their source's list.
    """
    if n <= 0:
        return []
    blocked = exclude if isinstance(exclude, set | frozenset | Mapping) else set(exclude)
    offset = weights.rank_offset
    score: dict[K, float] = {}
    best: dict[K, tuple[float, str]] = {}
    by_source: Mapping[str, Sequence[tuple[K, float]]] = {
        "personal": personal,
        "session": session,
        "similar": similar,
        "trending": trending,
        "popular": popular,
    }
    for source in SOURCES:
        w = weights.of(source)
        if source == "personal" and history_size is not None and weights.evidence > 0.0:
            h = max(history_size, 0)
            w *= h / (h + weights.evidence)
        candidates = by_source[source]
        if w <= 0.0 or not candidates:
            continue
        rank = 0
        taken: set[K] = set()
        for item, _ in candidates:
            if item in blocked or item in taken:
                continue
            taken.add(item)
            rank += 1
            gain = w / (offset + rank)
            score[item] = score.get(item, 0.0) + gain
            if item not in best or gain > best[item][0]:
                best[item] = (gain, source)
    # Stable sort: equal scores keep insertion order = chain order, then source rank.
    ranked = sorted(score.items(), key=lambda p: -p[1])[:n]
    return [Blended(item, s, best[item][1]) for item, s in ranked]
