"""The Redis effects of one tracking event, as data (built here, applied by RedisWriter).

Every argument is a string: Redis truncates Lua numbers to integers when they are passed
to commands, so floats must travel as text.
"""

from __future__ import annotations

from core.attribution import parse_recommendation_id
from core.redis_keys import RedisKeys
from core.settings import Settings
from recommender.abuse import AbusePolicy
from recommender.batch_step import Increments
from schemas import TopicEvent
from stream.redis_writer import EventOps, hour_of

#: Carted/purchased items remembered per entity, and entities per item (complements).
BASKET_SIZE = 30
CARTERS_KEPT = 200


def _f(x: float) -> str:
    return repr(float(x))


def abuse_policy(settings: Settings) -> AbusePolicy:
    """The manipulation-resistance policy configured by ``STREAMREC_ABUSE_*``."""
    return AbusePolicy(window_s=settings.abuse_window_s,
                       max_per_window=settings.abuse_max_per_window,
                       ramp_s=settings.abuse_trust_ramp_s, min_trust=settings.abuse_min_trust)


def event_ops(
    event: TopicEvent,
    *,
    entity: str,
    counted: Increments | None,
    keys: RedisKeys,
) -> EventOps:
    """What one event changes in Redis.

    Guarded (counted once per event id): per-item type counts, distinct users, and the
    event's ``counted`` increments (:func:`recommender.batch_step.count_event`:
    popularity, forward-decayed trending, co-occurrence with the entity's recent items,
    all scaled by the abuse policy), attribution (by the context and origin the event's
    ``recommendation_id`` names).
    Always applied (idempotent by nature): the purchase set, the cart and the basket of
    the entity, the item's buyers and recent carters (for complements and the
    repeat-purchase rate, read by the API's cart and checkout contexts).

    The abuse policy never touches the exact per-item counts and distinct users.
    """
    ops = EventOps(event_id=event.event_id, hour=hour_of(event.ts))
    if event.type == "identify":
        return ops
    items = [event.item_id] if event.item_id else []
    if event.type == "impression":
        items = list(event.item_ids or items)
    for item in items:
        ops.guarded.append(["HINCRBY", keys.item_stats(item), event.type, "1"])
    if event.recommendation_id:
        context, origin = parse_recommendation_id(event.recommendation_id)
        ops.guarded.append(["HINCRBY", keys.attribution(origin), event.type, "1"])
        ops.guarded.append(["HINCRBY", keys.attribution_context(context), event.type, "1"])
    if event.item_id:
        ops.always.extend(_cart_ops(event.type, entity, event.item_id, event.ts, keys))
    if counted is None:  # no item, or a type that moves no score
        return ops
    item = counted.item
    ops.guarded.append(["SADD", keys.item_users(item), entity])
    if event.type == "purchase":
        ops.always.append(["SADD", keys.user_bought(entity), item])
    if counted.popular <= 0:  # discounted to nothing by the abuse policy
        return ops
    ops.guarded.append(["ZINCRBY", keys.popular, _f(counted.popular), item])
    ops.guarded.append(["ZINCRBY", keys.trending, _f(counted.trending), item])
    for a, b, w in counted.cooc:
        ops.guarded.append(["ZINCRBY", keys.item_cooc(a), _f(w), b])
    return ops


def _cart_ops(etype: str, entity: str, item: str, ts: float, keys: RedisKeys) -> list[list[str]]:
    """Cart, basket and carter bookkeeping: idempotent state, scored by event time.

    The basket (an entity's recent carted/purchased items) and the carters (an item's
    recent carting entities) are the two halves of a bipartite graph the API walks to
    find complements: items in the baskets of the people who carted this item.
    """
    if etype == "add_to_cart" or etype == "purchase":
        ops = [
            ["ZADD", keys.user_basket(entity), _f(ts), item],
            ["ZREMRANGEBYRANK", keys.user_basket(entity), "0", str(-BASKET_SIZE - 1)],
            ["ZADD", keys.item_carters(item), _f(ts), entity],
            ["ZREMRANGEBYRANK", keys.item_carters(item), "0", str(-CARTERS_KEPT - 1)],
        ]
        if etype == "add_to_cart":
            ops.append(["SADD", keys.user_cart(entity), item])
        else:
            ops.append(["SREM", keys.user_cart(entity), item])
            ops.append(["SADD", keys.item_buyers(item), entity])
        return ops
    if etype == "remove_from_cart":
        return [
            ["SREM", keys.user_cart(entity), item],
            ["ZREM", keys.user_basket(entity), item],
            ["ZREM", keys.item_carters(item), entity],
        ]
    return []
