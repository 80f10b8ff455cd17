"""The items of a recommendation answer, from the serve script's flat reply
(:data:`api.serve_script.SERVE`): scored the way :mod:`api.ranking` scores each link,
with the reason a shopper reads, best first and at most ``n``."""

from __future__ import annotations

import time
from typing import Any

from api.explain import reason_text
from api.list_query import ListQuery
from api.promotions import PROMOTED
from api.ranking import Normalizer, SourceSpec, chain_score, decay_factor, rerank_score
from core.attribution import ORIGINS

#: Per-item reasons a worker-blended list may carry (``[id, score, reason]``, the names of
#: ``recommender.refresh.REASONS``) that the API shows; anything else stored there is
#: replaced by the link's own reason. Only the fallback snapshot says ``fallback``.
STORED_REASONS = frozenset(ORIGINS) - {"fallback", "holdout"}
#: Links whose items were found from the request's anchor (their reason names it).
ANCHORED = frozenset({"item_similar", "item_cooc"})


def scored_items(query: ListQuery, chain: tuple[SourceSpec, ...], reply: list[Any],
                 section: tuple[int, int], names: dict[str, str], half_life_s: float
                 ) -> tuple[list[dict[str, Any]], list[SourceSpec]]:
    """The answer's items (scored, best first, at most ``n``) from the reply's items
    section ``[first, end)``, with the link each came from."""
    first, end = section
    affinity = Normalizer((float(reply[3]), float(reply[4])))
    norms = [Normalizer((float(reply[i]), float(reply[i + 1]))) for i in range(7, first, 2)]
    # The newest items, the last link, take band -1 ((-1, 0]): every other link keeps
    # the band it had before that link existed, so existing scores did not move.
    top = len(chain) - 1 - (chain[-1].kind == "new_items")
    scale = 1.0
    if query.raw_scores and reply[2]:
        scale = decay_factor(time.time(), reply[2], half_life_s)
    anchor_name = names.get(query.anchor) if query.anchor else None
    items: list[dict[str, Any]] = []
    links: list[SourceSpec] = []
    for at in range(first, end, 11):
        link, position, raw_text, item_id, name, price, currency, category, aff, why, via = (
            reply[at:at + 11])
        spec = chain[link - 1]
        raw_score = float(raw_text)
        if query.raw_scores:  # the newest items' raw score is a time: below all, 0
            score = 0.0 if spec.kind == "new_items" else raw_score * scale
        elif spec.rerank and aff is not None:
            score = rerank_score(top - link + 1, norms[link - 1](raw_score), position,
                                 affinity(float(aff)))
        elif spec.rerank and query.entity:
            score = rerank_score(top - link + 1, norms[link - 1](raw_score), position, 0.0)
        else:
            score = chain_score(top - link + 1, norms[link - 1](raw_score), position)
        reason = why if why in STORED_REASONS else spec.reason
        anchored = not via and spec.kind in ANCHORED
        named = names.get(via) if via else (anchor_name if anchored else None)
        items.append({
            "item_id": item_id, "score": score, "reason": reason,
            "reason_text": reason_text(reason, name=named, category=category,
                                       anchored=anchored),
            "name": name, "price": float(price) if price is not None else None,
            "currency": currency, "category": category, "in_stock": True,
        })
        links.append(spec)
    if query.raw_scores and PROMOTED in links:
        # Raw scores of different sources do not compare: promoted items lead.
        promoted = [i for i, spec in enumerate(links) if spec is PROMOTED]
        best = max((items[i]["score"] for i in range(len(items)) if i not in promoted),
                   default=0.0)
        for rank, i in enumerate(promoted):
            items[i]["score"] = best + len(promoted) - rank
    if len(items) > 1:
        order = sorted(range(len(items)), key=lambda i: -items[i]["score"])
        items = [items[i] for i in order[:query.n]]
        links = [links[i] for i in order[:query.n]]
    return items, links
