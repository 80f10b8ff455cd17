"""Merchandising parameters of the recommendation endpoints (API.md "Merchandising").

``category=a,b`` (the item's category is one of these or a sub-category of one,
dot-separated), ``price_min`` / ``price_max`` (inclusive; items without a price never
pass), ``max_per_category=K`` (at most K items of one category; the deployment default is
``Settings.max_per_category``) and ``explain=true`` (the answer gains a ``trace``,
:mod:`api.explain`). The serve script applies them to every candidate before it counts
towards ``n`` (``api/lua/merch.lua`` and ``serve_consider.lua``); this module parses them, one way
for the routes and the fast path:

* the routes declare them as query parameters (:func:`merch_params`, so they are in the
  OpenAPI document) and FastAPI parses the types; :func:`make_merch` then checks what
  types cannot (price_min > price_max, empty or too many categories) → 422;
* the fast path (:func:`parse_fast`) accepts only values it can read exactly as FastAPI
  would (plain decimals, ``true``/``false``/``1``/``0``) and hands anything else to the
  routes, whose answer is canonical.

The fallback snapshot (Redis unreachable) applies the same rules in Python
(:func:`snapshot_items`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Query

from api.errors import ValidationFailed
from core.limits import (
    FILTER_SCAN_MAX,
    MAX_CATEGORY_LEN,
    MAX_FILTER_CATEGORIES,
    MAX_N,
)

#: Query parameters of this module (the fast path collects them).
PARAMS = frozenset({"category", "price_min", "price_max", "max_per_category", "explain"})
#: What the fast path reads itself; any other spelling goes to the routes.
_PRICE = re.compile(r"[0-9]{1,13}(?:\.[0-9]{1,9})?")
_CAP = re.compile(rf"[0-9]{{1,{len(str(MAX_N))}}}")
_BOOL = {"true": True, "false": False, "1": True, "0": False}


@dataclass(frozen=True)
class Merch:
    """One request's merchandising parameters.

    ``cap`` is the request's ``max_per_category``: None = the deployment default
    (``Settings.max_per_category``), 0 = no cap (internal callers only: clients send any
    K >= 1, kept as at most MAX_N, since a cap of ``n`` or more never binds).
    """

    categories: tuple[str, ...] = ()
    price_min: float | None = None
    price_max: float | None = None
    cap: int | None = None
    explain: bool = False

    @property
    def filtered(self) -> bool:
        """True when a category or price filter applies."""
        return bool(self.categories) or self.price_min is not None or self.price_max is not None


#: No cap, whatever the deployment default (the fallback snapshot's own list).
UNCAPPED = Merch(cap=0)


def _problem(loc: str, msg: str, kind: str = "value_error") -> ValidationFailed:
    return ValidationFailed(msg, detail=[{"type": kind, "loc": ["query", loc], "msg": msg}])


def split_categories(values: Iterable[str]) -> tuple[str, ...]:
    """``category`` values (comma-separated, repeatable) → distinct categories in order.

    Raises ``ValidationFailed`` when none is named, too many are, or one is too long.
    """
    parts = [p.strip() for value in values for p in value.split(",")]
    found = tuple(dict.fromkeys(p for p in parts if p))
    if not found:
        raise _problem("category", "category names no category (e.g. category=shoes,bags)")
    if len(found) > MAX_FILTER_CATEGORIES:
        raise _problem("category", f"category names at most {MAX_FILTER_CATEGORIES} "
                                   "categories", "too_long")
    if any(len(c) > MAX_CATEGORY_LEN for c in found):
        raise _problem("category", f"a category is at most {MAX_CATEGORY_LEN} characters",
                       "string_too_long")
    return found


def make_merch(categories: Sequence[str] | None = None, price_min: float | None = None,
               price_max: float | None = None, cap: int | None = None,
               explain: bool = False) -> Merch | None:
    """The parameters as one :class:`Merch` (None when none is given), checked across
    fields; ``ValidationFailed`` (422) names what is wrong."""
    cats = split_categories(categories) if categories is not None else ()
    for name, value in (("price_min", price_min), ("price_max", price_max)):
        # any finite bound from 0 is a valid one (above every price: no bound, or nothing)
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise _problem(name, f"{name} must be a finite number, at least 0")
    if price_min is not None and price_max is not None and price_min > price_max:
        raise _problem("price_min", "price_min must not exceed price_max")
    if cap is not None and cap < 1:
        raise _problem("max_per_category", "max_per_category must be at least 1")
    if cap is not None:
        cap = min(cap, MAX_N)  # K >= n caps nothing: a valid request, not an error
    if not cats and price_min is None and price_max is None and cap is None and not explain:
        return None
    return Merch(cats, price_min, price_max, cap, explain)


class FallThrough(Exception):
    """The fast path leaves this request to the routes."""


def parse_fast(raw: Mapping[str, list[str]]) -> Merch | None:
    """:func:`make_merch` from raw query values (the last one of a repeated scalar wins,
    as in FastAPI); raises :class:`FallThrough` for anything the routes must decide."""
    try:
        def last(name: str) -> str | None:
            values = raw.get(name)
            return values[-1] if values else None

        pmin, pmax, cap, explain = (last(n) for n in ("price_min", "price_max",
                                                        "max_per_category", "explain"))
        for text in (pmin, pmax):
            if text is not None and not _PRICE.fullmatch(text):
                raise FallThrough
        if cap is not None and not _CAP.fullmatch(cap):
            raise FallThrough
        if explain is not None and explain not in _BOOL:
            raise FallThrough
        return make_merch(raw.get("category"),
                          float(pmin) if pmin is not None else None,
                          float(pmax) if pmax is not None else None,
                          int(cap) if cap is not None else None,
                          _BOOL[explain] if explain is not None else False)
    except ValidationFailed as exc:
        raise FallThrough from exc


async def merch_params(
    category: Annotated[
        list[str] | None,
        Query(description="only items whose category is one of these or a sub-category "
                          "(dot-separated: `electronics` matches `electronics.audio`, not "
                          f"`electronicsx`); comma-separated, repeatable, at most "
                          f"{MAX_FILTER_CATEGORIES}", examples=["shoes,bags"]),
    ] = None,
    price_min: Annotated[
        float | None,
        Query(ge=0, allow_inf_nan=False,
              description="only items priced at least this (items without a price never "
                          "pass a price filter)", examples=[10]),
    ] = None,
    price_max: Annotated[
        float | None,
        Query(ge=0, allow_inf_nan=False,
              description="only items priced at most this", examples=[50]),
    ] = None,
    max_per_category: Annotated[
        int | None,
        Query(ge=1, description="at most this many items of one category (any K >= 1; "
                                "one of n or more caps nothing; default: the "
                                "deployment's STREAMREC_MAX_PER_CATEGORY, 0 = none)",
              examples=[2]),
    ] = None,
    explain: Annotated[
        bool,
        Query(description="add a `trace`: the sources read (size, age, model version) "
                          "and the candidates left out, with why"),
    ] = False,
) -> Merch | None:
    """The merchandising parameters of a recommendation route (``async``: no thread
    hand-off)."""
    return make_merch(category, price_min, price_max, max_per_category, explain)


MerchDep = Annotated[Merch | None, Depends(merch_params)]


def effective_cap(merch: Merch | None, default_cap: int) -> int:
    """The cap a list is served with: the request's, else the deployment's (0 = none)."""
    if merch is not None and merch.cap is not None:
        return merch.cap
    return default_cap


def script_fields(merch: Merch | None, default_cap: int, scan: int, excluded: int,
                  columns: Sequence[Any] = ()) -> dict[str, Any]:
    """The serve script's request fields for these parameters: ``f`` (filters), ``k``
    (cap), ``x`` (explain), a deeper ``scan`` for filtered or capped lists, and ``cols``
    (the catalog columns' keys: category hash, price hash, completeness marker, the
    ``(prefix, suffix)`` of the category item sets, then the price index and the marker's
    value once it is whole)."""
    fields: dict[str, Any] = {}
    cap = effective_cap(merch, default_cap)
    if cap:
        fields["k"] = cap
    if merch is not None:
        if merch.filtered:
            f: dict[str, Any] = {}
            if merch.categories:
                f["cat"] = list(merch.categories)
            if merch.price_min is not None:
                f["pmin"] = merch.price_min
            if merch.price_max is not None:
                f["pmax"] = merch.price_max
            fields["f"] = f
            if columns:
                fields["cols"] = list(columns)
        if merch.explain:
            fields["x"] = True
    if cap or (merch is not None and merch.filtered):
        fields["scan"] = max(scan, FILTER_SCAN_MAX + excluded)
    return fields


def category_matches(category: object, categories: Sequence[str]) -> bool:
    """The category rule of API.md (``merch.lua``'s ``cat_ok`` in Python)."""
    if not isinstance(category, str) or not category:
        return False
    return any(category == c or category.startswith(c + ".") for c in categories)


def passes(item: Mapping[str, Any], merch: Merch) -> bool:
    """Whether a served item (``RecommendationItem`` fields) passes the filters."""
    if merch.categories and not category_matches(item.get("category"), merch.categories):
        return False
    if merch.price_min is not None or merch.price_max is not None:
        price = item.get("price")
        if not isinstance(price, int | float):
            return False
        if merch.price_min is not None and price < merch.price_min:
            return False
        if merch.price_max is not None and price > merch.price_max:
            return False
    return True


def snapshot_items(items: Iterable[dict[str, Any]], n: int, blocked: frozenset[str],
                   merch: Merch | None, default_cap: int) -> list[dict[str, Any]]:
    """Up to ``n`` of ``items`` (in order) that are not ``blocked`` and pass the filters
    and the cap: the serve script's rules, for the fallback snapshot."""
    cap = effective_cap(merch, default_cap)
    per_category: dict[str, int] = {}
    out = []
    for item in items:
        if item["item_id"] in blocked or (merch is not None and not passes(item, merch)):
            continue
        category = item.get("category")
        if cap and category:
            if per_category.get(category, 0) >= cap:
                continue
            per_category[category] = per_category.get(category, 0) + 1
        out.append(item)
        if len(out) >= n:
            break
    return out
