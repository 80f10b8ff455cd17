"""What a recommendation endpoint asks :class:`api.reader.Reader` for: the chain, size,
shopper, anchor, exclusions, merchandising and the rate-limit check of one list."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from api.filters import Merch
from api.ranking import SourceSpec

#: A JSON response body of the recommendation endpoints (``schemas.RecommendationList``).
ListBody = dict[str, Any]


@dataclass(frozen=True)
class RateCheck:
    """One request's rate-limit check: state key, seconds per request, burst size."""

    key: str
    interval_s: float
    burst: float


@dataclass(frozen=True)
class ListQuery:
    """What a recommendation endpoint asks the reader for."""

    chain: tuple[SourceSpec, ...]
    n: int
    entity: str | None = None  # user/anonymous id: personal sources, purchases, cart
    anchor: str | None = None  # item the similar/complement sources start from
    exclude: frozenset[str] = field(default_factory=frozenset)
    raw_scores: bool = False  # True: report the source's scores (single-source lists)
    context: str = "home"  # page context: chooses the chain, names the list
    rate: RateCheck | None = None
    merch: Merch | None = None  # filters, category cap, explain (api.filters)
    #: A ``HEAD``: RFC 9110's safe method, with no side effect beyond the rate limit; no
    #: experiment enrolment or exposure (a link checker's or prefetcher's HEAD is not an
    #: answer an entity received, which is what a report's entities count).
    probe: bool = False
