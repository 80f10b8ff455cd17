"""The copies an ``identify`` hands to a user beside an anonymous history's entries.

A history keeps its newest entries only, so :meth:`recommender.history.History.handover`
stands a copy in for each purchase and cart addition the cap evicted (the user must
never get an item the anonymous id bought recommended, and gets its whole cart). A copy's
id is derived from the item (and time), the same at every identify and replay.
:func:`copies_digest` names one set of copies: a user that got that set at its last
snapshot holds every copy in it, so a switch back to it (``recommender.batch_step``)
need not send them again (identifies alternating between two linked users did, up to
``bought_max + cart_max`` copies at every switch).
"""

from __future__ import annotations

from collections.abc import Iterable
from hashlib import sha256
from typing import Any

#: Event id prefix of the purchase entries :meth:`History.handover` makes for purchases
#: the history no longer holds (they stand for a purchase counted as the original).
BOUGHT_COPY_PREFIX = "bought-copy-"

#: Event id prefix of the cart additions :meth:`History.handover` makes for items still in
#: the cart whose ``add_to_cart`` the history no longer holds.
CART_COPY_PREFIX = "cart-copy-"

#: The prefixes of both: copies that stand for an event counted as the original.
HANDOVER_COPY_PREFIXES = (BOUGHT_COPY_PREFIX, CART_COPY_PREFIX)


def _copy_id(prefix: str, key: str) -> str:
    return prefix + sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def copies_digest(copies: Iterable[tuple[Any, ...]]) -> str:
    """A name of the set of ``copies`` (entries of :meth:`History.copies`, in its order):
    equal for equal copies in every process and replay; ``""`` for none."""
    text = repr([tuple(c) for c in copies])
    return "" if text == "[]" else sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]
