"""Why a list is what it is: shopper-readable reasons and the ``explain=true`` trace.

Every served item keeps its machine ``reason`` (``personalized``, ``session``,
``similar``, ``complement``, ``buy_again``, ``popular``, ``trending``, ``promoted``,
``new`` (the newest catalog items), ``fallback``): clients and the attribution report
(``core.attribution``: the origin in the ``recommendation_id`` is the first item's
reason) rely on those codes, and API.md names ``"reason": "promoted"``. The text a
shopper can read is the extra field ``reason_text`` (:func:`reason_text`), naming the
item that led to the recommendation when the serve script knows it ("because you
viewed Espresso beans", "bought together with Milk frother", "trending in coffee").

The trace (:func:`trace_of`) comes from the tail of the serve script's reply
(:mod:`api.serve_script`): the links of the chain that were read, with their size, age
and model version, and the candidates left out with why (``out_of_stock``, ``deleted``,
``purchased``, ``in_cart``, ``excluded``, ``filtered``, ``capped``), at most
``core.limits.EXPLAIN_DROPPED_MAX`` of them (``dropped_total`` counts all).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

#: Text of each reason when no item or category can be named.
GENERIC: dict[str, str] = {
    "personalized": "picked for you from what you viewed",
    "session": "because of what you viewed recently",
    "similar": "similar to items you viewed",
    "complement": "often bought together with items in your cart",
    "buy_again": "you bought this before",
    "popular": "popular right now",
    "trending": "trending now",
    "promoted": "featured by the shop",
    "fallback": "popular right now",
    "new": "new arrival",
}
#: Text of a reason found from the request's own item (``/similar``, ``context=product``)
#: when that item has no name: the shopper did not necessarily view anything else.
ANCHORED_GENERIC: dict[str, str] = {"similar": "similar to this item"}
#: Reasons whose text names the item that led to the recommendation: its template.
_VIA: dict[str, str] = {
    "session": "because you viewed {}",
    "similar": "similar to {}",
    "complement": "bought together with {}",
}
#: Reasons whose text names the item's category.
_IN_CATEGORY: dict[str, str] = {"popular": "popular in {}", "trending": "trending in {}",
                                "new": "new in {}"}
#: The trace's name of each kind of link (``api.ranking.SourceKind``).
SOURCE_NAMES: dict[str, str] = {
    "user_recs": "personalized", "session": "session", "item_similar": "similar",
    "item_cooc": "co-occurrence", "popular": "popular", "trending": "trending",
    "complements": "complements", "buy_again": "buy_again", "promoted": "promotion",
    "new_items": "new_items",
}


def reason_text(reason: str, *, name: str | None = None, category: str | None = None,
                anchored: bool = False) -> str:
    """What a shopper reads for an item of ``reason``: ``name`` is the item that led to it
    (recent, anchor or cart item; None when unknown or unnamed), ``category`` the item's
    own category (its last dot-separated part is named); ``anchored``: it was found from
    the request's item (whose name, when it has one, is ``name``)."""
    if name:
        template = _VIA.get(reason)
        if template is not None:
            return template.format(name)
    if category:
        template = _IN_CATEGORY.get(reason)
        if template is not None:  # a shopper reads the leaf: "headphones", not the path
            leaf = category.rsplit(".", 1)[-1].replace("_", " ").strip()
            return template.format(leaf or category)
    if anchored and reason in ANCHORED_GENERIC:
        return ANCHORED_GENERIC[reason]
    return GENERIC.get(reason, GENERIC["popular"])


def names_of(reply: Sequence[Any], at: int) -> tuple[dict[str, str], int]:
    """The ``id → name`` pairs of the reply starting at ``at`` (a count, then pairs; ids
    without a catalog name are left out) and the index after them."""
    count = int(reply[at])
    names = {}
    for i in range(at + 1, at + 1 + 2 * count, 2):
        if reply[i + 1]:
            names[reply[i]] = reply[i + 1]
    return names, at + 1 + 2 * count


def trace_of(reply: Sequence[Any], at: int, link_names: Sequence[str],
             now: float | None = None) -> dict[str, Any]:
    """The ``trace`` object of an answer from the reply's explain tail at ``at``:
    ``{"sources": [{name, size, age_s, model_version}], "dropped": [{item_id, why}],
    "dropped_total"}``; ``link_names`` names each link of the chain in order."""
    now = time.time() if now is None else now
    sources = []
    for i, name in enumerate(link_names):
        consulted, size, written, version = reply[at + 4 * i:at + 4 * i + 4]
        if not consulted:
            continue
        age = round(max(0.0, now - float(written)), 3) if written else None
        sources.append({"name": name, "size": int(size or 0), "age_s": age,
                        "model_version": version if isinstance(version, str) else None})
    at += 4 * len(link_names)
    total, listed = int(reply[at]), int(reply[at + 1])
    dropped = [{"item_id": reply[i], "why": reply[i + 1]}
               for i in range(at + 2, at + 2 + 2 * listed, 2)]
    return {"sources": sources, "dropped": dropped, "dropped_total": total}


def link_name(kind: str, promotion_id: str | None = None) -> str:
    """A link's name in the trace (``promotion:{id}`` for a promotion)."""
    name = SOURCE_NAMES.get(kind, kind)
    return f"{name}:{promotion_id}" if promotion_id else name


def via_names(names: Mapping[str, str], via: str | None, anchor: str | None) -> str | None:
    """The name an item's reason mentions: its ``via`` item's, else the anchor's."""
    if via:
        return names.get(via)
    if anchor:
        return names.get(anchor)
    return None
