"""Anonymous histories an older worker wrote: their cart, from Redis, for the identify.

Since the seventeenth session an anonymous id's history follows its cart
(:attr:`recommender.history.History.cart`), and an ``identify`` hands over every cart
item whose ``add_to_cart`` the capped history no longer holds. A table value written
by an older version has no cart: the history starts one with the id's next cart event,
so a shopper who carted before the upgrade, viewed more than ``history_max`` items and
logged in after it would reach the user with the cart items the history still holds,
and lose the others.

The cart that older worker kept is in Redis (``u:{E}:{id}:cart`` and ``cart_gone``,
scored by event time as :meth:`History._track_cart` keeps them), so the first batch
that reads such a value gives it that cart before its step; the value written back
carries it and its expiry stamp (:mod:`stream.history_expiry`), which is how a value of
this version is told from an older one (:func:`is_legacy`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.redis_keys import RedisKeys
from schemas import TopicEvent
from stream.history_expiry import PARTITION


def is_legacy(value: Any) -> bool:
    """Whether ``value`` (a history table value) was written before values carried their
    expiry stamp, and with it their cart."""
    return isinstance(value, dict) and PARTITION not in value


def _anonymous_entities(batch: Sequence[tuple[TopicEvent, int]]) -> list[str]:
    """The anonymous ids with an event in ``batch`` (an ``identify`` is the anonymous
    id's event), in order, once each."""
    found = {ev.entity: None for ev, _ in batch
             if not ev.forwarded and (ev.user_id is None or ev.type == "identify")}
    return list(found)


async def legacy_carts(redis: Any, keys: RedisKeys, batch: Sequence[tuple[TopicEvent, int]],
                       get: Any) -> dict[str, dict[str, Any]]:
    """Entity → its stored history with ``cart`` and ``uncart`` from Redis, for every
    anonymous id of ``batch`` whose stored value (``get(entity)``) is legacy; one
    pipelined read of two keys per such id, nothing when there is none."""
    legacy = {e: v for e in _anonymous_entities(batch) if is_legacy(v := get(e))}
    if not legacy:
        return {}
    pipe = redis.pipeline(transaction=False)
    for entity in legacy:
        pipe.zrange(keys.user_cart(entity), 0, -1, withscores=True)
        pipe.zrange(keys.user_cart_gone(entity), 0, -1, withscores=True)
    replies = await pipe.execute()
    out: dict[str, dict[str, Any]] = {}
    for n, (entity, value) in enumerate(legacy.items()):
        cart, gone = replies[2 * n], replies[2 * n + 1]
        out[entity] = {**value, "cart": [[_text(i), float(t)] for i, t in cart],
                       "uncart": [[_text(i), float(t)] for i, t in gone]}
    return out


def _text(member: Any) -> str:
    return member.decode() if isinstance(member, bytes) else str(member)
