"""The Redis effects of one tracking event, as data (built here, applied by RedisWriter).

Every argument is a string: Redis truncates Lua numbers to integers when they are passed
to commands, so floats must travel as text. An op may start with an options object that
the writer's script reads (``stream.redis_writer``): ``{"c": [items]}`` runs it only when
every item is in the catalog (``require_catalog``), ``{"s": 1}`` scales its increment by
the event's share of the item's newcomer budget, ``{"n": cap}`` adds to a set only while
it holds fewer than ``cap`` members.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from core.attribution import parse_recommendation_id
from core.limits import FORGET_ANONS_MAX
from core.redis_keys import RedisKeys, seen_member
from core.settings import Settings
from recommender.abuse import AbusePolicy
from recommender.batch_step import Increments
from schemas import TopicEvent
from stream.bounds import StateBounds
from stream.redis_writer import EventOps, Op, hour_of

#: Carted/purchased items remembered per entity, and entities per item (complements).
BASKET_SIZE = 30
CARTERS_KEPT = 200


def _f(x: float) -> str:
    return repr(float(x))


def abuse_policy(settings: Settings) -> AbusePolicy:
    """The manipulation-resistance policy configured by ``STREAMREC_ABUSE_*``."""
    return AbusePolicy(window_s=settings.abuse_window_s,
                       max_per_window=settings.abuse_max_per_window,
                       ramp_s=settings.abuse_trust_ramp_s, min_trust=settings.abuse_min_trust,
                       max_quantity=settings.abuse_max_quantity,
                       newcomer_budget=settings.abuse_newcomer_budget)


def _gated(items: list[str], op: Op, on: bool, **opts: Any) -> Op:
    """``op`` with its options: run only for catalogued ``items`` (when ``on``), plus
    ``opts`` (see the module notes)."""
    if on:
        opts["c"] = items
    return [opts, *op] if opts else op


@lru_cache(maxsize=8)
def _item_keys(prefix: str) -> dict[str, tuple[str, str]]:
    """``(head, tail)`` of the per-item keys an event touches (``RedisKeys.split``): the
    per-event path concatenates strings instead of calling a builder per key."""
    keys = RedisKeys(prefix)
    return {name: keys.split(name) for name in
            ("item_stats", "item_users", "item_users_hll", "item_cooc")}


def event_ops(
    event: TopicEvent,
    *,
    entity: str,
    counted: Increments | None,
    keys: RedisKeys,
    policy: AbusePolicy | None = None,
    bounds: StateBounds | None = None,
) -> EventOps:
    """What one event changes in Redis.

    Guarded (counted once per event id within its namespace, ``seen_member``): per-item
    type counts, distinct users, the event's ``counted`` increments
    (:func:`recommender.batch_step.count_event`: popularity, forward-decayed trending,
    co-occurrence with the entity's recent items, all scaled by the abuse policy on the
    receive time), attribution (by the context and origin the event's
    ``recommendation_id`` names). Always applied (idempotent by nature): the purchases,
    cart and basket of the entity (trimmed, and expiring ``bounds.ttl_s`` after this
    write), the item's buyers and recent carters (for complements and the
    repeat-purchase rate, read by the API's cart and checkout contexts).

    The abuse policy never touches the exact per-item counts and distinct users. When
    the increments draw on the item's newcomer budget (``counted.newcomer_window``), the
    event carries the budget (``policy.newcomer_budget`` per window) and its increments
    are scaled by the share the writer's script grants. With ``bounds.require_catalog``
    nothing is written under the key of an item the catalog does not hold.
    """
    bounds = bounds or StateBounds()
    gate = bounds.require_catalog
    ops = EventOps(event_id=seen_member(event.dedupe_namespace, event.event_id),
                   hour=hour_of(event.ts))
    if event.type in ("identify", "forget"):
        return ops
    k = _item_keys(keys.p)
    items = [event.item_id] if event.item_id else []
    if event.type == "impression":  # each item shown counts once per event
        items = list(dict.fromkeys(event.item_ids or items))
    head, tail = k["item_stats"]
    for item in items:
        ops.guarded.append(_gated([item], ["HINCRBY", head + item + tail, event.type, "1"],
                                  gate))
    if event.recommendation_id:
        context, origin = parse_recommendation_id(event.recommendation_id)
        ops.guarded.append(["HINCRBY", keys.attribution(origin), event.type, "1"])
        ops.guarded.append(["HINCRBY", keys.attribution_context(context), event.type, "1"])
    ttl = str(bounds.ttl_s(event.user_id is None))
    if event.item_id:
        ops.always.extend(_cart_ops(event.type, entity, event.item_id, event.order_ts, keys,
                                    ttl=ttl, bounds=bounds))
    if counted is None:  # no item, or a type that moves no score
        return ops
    item = counted.item
    head, tail = k["item_users"]
    ops.guarded.append(_gated([item], ["SADD", head + item + tail, entity], gate,
                              n=bounds.distinct_exact_max))
    head, tail = k["item_users_hll"]
    ops.guarded.append(_gated([item], ["PFADD", head + item + tail, entity], gate))
    if event.type == "purchase":
        bought = keys.user_bought(entity)
        ops.always += [["ZADD", bought, _f(event.order_ts), item],
                       ["ZREMRANGEBYRANK", bought, "0", str(-bounds.bought_max - 1)],
                       ["EXPIRE", bought, ttl]]
    if counted.popular <= 0:  # discounted to nothing by the abuse policy
        return ops
    scaled = counted.newcomer_window is not None and policy is not None
    if scaled:
        assert policy is not None and counted.newcomer_window is not None
        ops.budget = [keys.item_newcomers(item, counted.newcomer_window),
                      policy.newcomer_budget, int(2 * policy.window_s) + 1, counted.popular,
                      item if gate else False]
    _score_ops(ops, counted, keys, k["item_cooc"], gate=gate, scaled=scaled, bounds=bounds)
    return ops


def _score_ops(ops: EventOps, counted: Increments, keys: RedisKeys,
               cooc_key: tuple[str, str], *, gate: bool, scaled: bool,
               bounds: StateBounds) -> None:
    """The popularity, trending and co-occurrence increments (with their options: the
    catalog gate, the newcomer-budget scale) and the trims they call for. Built inline:
    an event pairs with up to ``2 × cooc_window`` partners, and this was the largest
    share of the worker's per-event cost."""
    item = counted.item
    guarded = ops.guarded
    opts: dict[str, Any] = {"s": 1} if scaled else {}
    for key, value in ((keys.popular, counted.popular), (keys.trending, counted.trending)):
        op: Op = ["ZINCRBY", key, repr(float(value)), item]
        guarded.append([{**opts, "c": [item]}, *op] if gate else [opts, *op] if opts else op)
    trims = ops.trims
    trims[keys.popular] = trims[keys.trending] = bounds.ranked_items_max
    head, tail = cooc_key
    cooc_max = bounds.cooc_max
    for a, b, w in counted.cooc:
        key = head + a + tail
        op = ["ZINCRBY", key, repr(float(w)), b]
        guarded.append([{**opts, "c": [a, b]}, *op] if gate else [opts, *op] if opts else op)
        trims[key] = cooc_max


def identify_ops(event: TopicEvent, keys: RedisKeys, bounds: StateBounds) -> EventOps:
    """An applied ``identify``: the user remembers the anonymous id (``u:{user}:anons``,
    at most ``FORGET_ANONS_MAX``), so forgetting the user forgets it too."""
    ops = EventOps(event_id=seen_member(event.dedupe_namespace, event.event_id),
                   hour=hour_of(event.ts))
    user, anon = event.user_id or "", event.anonymous_id or ""
    ops.always += [[{"n": FORGET_ANONS_MAX}, "SADD", keys.user_anons(user), anon],
                   ["EXPIRE", keys.user_anons(user), str(bounds.ttl_s(False))]]
    return ops


def _cart_ops(etype: str, entity: str, item: str, ts: float, keys: RedisKeys, *, ttl: str,
              bounds: StateBounds) -> list[Op]:
    """Cart, basket and carter bookkeeping: idempotent state, scored by event time.

    The basket (an entity's recent carted/purchased items) and the carters (an item's
    recent carting entities) are the two halves of a bipartite graph the API walks to
    find complements: items in the baskets of the people who carted this item. The cart
    keeps its newest ``bounds.cart_max`` items; entity keys expire ``ttl`` seconds after
    this write.
    """
    gate = bounds.require_catalog
    cart, basket = keys.user_cart(entity), keys.user_basket(entity)
    if etype == "add_to_cart" or etype == "purchase":
        ops = [
            ["ZADD", basket, _f(ts), item],
            ["ZREMRANGEBYRANK", basket, "0", str(-BASKET_SIZE - 1)],
            ["EXPIRE", basket, ttl],
            _gated([item], ["ZADD", keys.item_carters(item), _f(ts), entity], gate),
            ["ZREMRANGEBYRANK", keys.item_carters(item), "0", str(-CARTERS_KEPT - 1)],
        ]
        if etype == "add_to_cart":
            ops += [["ZADD", cart, _f(ts), item],
                    ["ZREMRANGEBYRANK", cart, "0", str(-bounds.cart_max - 1)],
                    ["EXPIRE", cart, ttl]]
        else:
            ops.append(["ZREM", cart, item])
            ops.append(_gated([item], ["SADD", keys.item_buyers(item), entity], gate,
                              n=bounds.distinct_exact_max))
            ops.append(_gated([item], ["PFADD", keys.item_buyers_hll(item), entity], gate))
        return ops
    if etype == "remove_from_cart":
        return [
            ["ZREM", cart, item],
            ["ZREM", basket, item],
            ["ZREM", keys.item_carters(item), entity],
        ]
    return []
