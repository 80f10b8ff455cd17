"""Pure serving logic: fallback chains as data and the chain score of a served list.

No I/O here; ``api.reader`` runs the serve script (:mod:`api.serve_script`, which reads,
filters and decodes the lists inside Redis) and scores its reply with these.

Chain score
-----------
Scores of different sources are not comparable (ALS dot products, co-occurrence
weights, popularity counts), so a list served from a fallback chain is ordered by
*source rank first, then by the source's own order*. With ``band = len(chain) - 1 -
source_index`` (the first source of the chain gets the highest band), an item at
``position`` in its source's list (0 = best, counted before filtering) with raw score
``raw`` gets::

    score = band + 0.5 * norm(raw) + 0.5 / (1 + position)

where ``norm`` maps the source's first page onto [0, 1] (min-max; 1.0 when all equal;
clamped). Within a band the value lies in (band, band + 1] and is strictly decreasing
(``norm`` never increases down the list, the position term always decreases), so a
chain's list is strictly descending and an earlier source always ranks above a later one.
The last link, the newest catalog items, is left out of ``len(chain)`` and so takes
band -1, (-1, 0]: adding it moved no other score.
Single-source lists (``/v1/popular``, ``/v1/trending``: their source, then the newest
items) report raw scores instead, 0 for the newest items.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from core.scored_lists import finite_float
from schemas.api import Source

SourceKind = Literal["user_recs", "session", "item_similar", "item_cooc", "popular",
                     "trending", "complements", "buy_again", "promoted", "new_items"]


@dataclass(frozen=True)
class SourceSpec:
    """One link of a fallback chain: where candidates come from and what they are called.

    ``reason`` is shown on each item and names the list's origin for attribution;
    ``source`` is the list-level ``source`` of API.md (``complement`` items belong to a
    ``similar`` list, ``buy_again`` items to a ``personalized`` one). ``rerank`` links
    are re-ordered by the shopper's own affinity (the product context).
    """

    kind: SourceKind
    reason: str
    source: Source
    rerank: bool = False


PERSONALIZED = SourceSpec("user_recs", "personalized", "personalized")
SESSION = SourceSpec("session", "session", "session")
SIMILAR_MODEL = SourceSpec("item_similar", "similar", "similar")
SIMILAR_COOC = SourceSpec("item_cooc", "similar", "similar")
POPULAR = SourceSpec("popular", "popular", "popular")
TRENDING = SourceSpec("trending", "trending", "trending")
COMPLEMENTS = SourceSpec("complements", "complement", "similar")
BUY_AGAIN = SourceSpec("buy_again", "buy_again", "personalized")
#: The last link of every chain: the newest catalog items (``RedisKeys.new_items``), so
#: an item no event has ranked yet is served when the links before it run short (a new
#: shop, a category without events). Read only then; its items score below all others
#: (0 in single-source lists) and a list of only these is a ``popular`` one.
NEW_ITEMS = SourceSpec("new_items", "new", "popular")

#: ``GET /v1/items/{id}/similar``: the model's neighbours, then streaming co-occurrence.
SIMILAR_CHAIN: tuple[SourceSpec, ...] = (SIMILAR_MODEL, SIMILAR_COOC, POPULAR, NEW_ITEMS)
POPULAR_CHAIN: tuple[SourceSpec, ...] = (POPULAR, NEW_ITEMS)
TRENDING_CHAIN: tuple[SourceSpec, ...] = (TRENDING, NEW_ITEMS)
USER_CHAIN: tuple[SourceSpec, ...] = (PERSONALIZED, SESSION, POPULAR, NEW_ITEMS)

#: Page contexts of the user endpoint and their fallback chains (data, not ifs).
#: ``product``: the viewed item's neighbours, re-ranked by the shopper's affinity, then
#: the home chain. ``cart``: complements of what is in the cart (items the last people
#: who carted the same items also carted or bought), then the home chain. ``checkout``:
#: consumables bought before ("buy again", by repeat-purchase rate), complements, then
#: personal and popular lists.
CONTEXT_CHAINS: dict[str, tuple[SourceSpec, ...]] = {
    "home": USER_CHAIN,
    "product": (SourceSpec("item_similar", "similar", "similar", rerank=True),
                SourceSpec("item_cooc", "similar", "similar", rerank=True), *USER_CHAIN),
    "cart": (COMPLEMENTS, *USER_CHAIN),
    "checkout": (BUY_AGAIN, COMPLEMENTS, PERSONALIZED, POPULAR, NEW_ITEMS),
}
#: Contexts whose cart items are never recommended (the shopper has them already).
CART_CONTEXTS = frozenset({"cart", "checkout"})


def user_chain(context: str | None, item_id: str | None) -> tuple[str, tuple[SourceSpec, ...]]:
    """``(effective context, chain)`` of the user endpoint.

    Unknown or absent contexts are served as ``home`` (API.md lists open-ended page
    names); ``product`` without an ``item_id`` has nothing to be similar to, so it is
    ``home`` as well.
    """
    if context == "product" and not item_id:
        return "home", USER_CHAIN
    if context in CONTEXT_CHAINS:
        return context, CONTEXT_CHAINS[context]
    return "home", USER_CHAIN


def rerank_score(band: int, norm: float, position: int, affinity: float) -> float:
    """Chain score of a re-ranked link: half its own order, half the shopper's affinity
    (``affinity`` in [0, 1], 0 when the item is not in the shopper's personal list).
    Stays in ``(band, band + 1]`` like :func:`chain_score`."""
    return band + 0.5 * (0.5 * norm + 0.5 / (1 + position)) + 0.5 * affinity


def decay_factor(now: float, epoch: str | bytes | None, half_life_s: float) -> float:
    """Forward-decay display factor ``2 ** (-(now - t0) / half_life)`` (1.0 without t0)."""
    t0 = finite_float(epoch.decode() if isinstance(epoch, bytes) else epoch)
    if t0 is None:
        return 1.0
    exponent = -(now - t0) / half_life_s
    return 2.0 ** max(-1000.0, min(1000.0, exponent))


class Normalizer:
    """Min-max scaling of one source's scores onto [0, 1], fixed by its first page."""

    __slots__ = ("lo", "span")

    def __init__(self, scores: Sequence[float]) -> None:
        self.lo = min(scores) if scores else 0.0
        hi = max(scores) if scores else 0.0
        self.span = hi - self.lo

    def __call__(self, raw: float) -> float:
        if self.span <= 0:
            return 1.0 if raw >= self.lo else 0.0
        return min(1.0, max(0.0, (raw - self.lo) / self.span))


def chain_score(band: int, norm: float, position: int) -> float:
    """Final score of an item of a chain's list (see the module docstring)."""
    return band + 0.5 * norm + 0.5 / (1 + position)
