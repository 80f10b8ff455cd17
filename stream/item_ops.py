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
from recommender.batch_step import CART_TYPES, Increments
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
                       newcomer_budget=settings.abuse_newcomer_budget,
                       budget_shares=settings.topic_partitions)


def _gated(items: list[str], op: Op, on: bool, **opts: Any) -> Op:
    """``op`` with its options: run only for catalogued ``items`` (when ``on``), plus
    ``opts`` (see the module notes)."""
    if on:
        opts["c"] = items
    return [opts, *op] if opts else op


#: Items whose per-item keys :func:`_item_keys` keeps (a burst's items repeat, as do
#: the co-occurrence partners of its events).
ITEM_KEYS_CACHED = 32768


@lru_cache(maxsize=8)
def _builders(prefix: str) -> RedisKeys:
    return RedisKeys(prefix)


@lru_cache(maxsize=ITEM_KEYS_CACHED)
def _item_keys(prefix: str, item: str) -> tuple[str, str, str, str]:
    """The stats, users, users HLL and co-occurrence keys of an item, from the builders
    of :class:`RedisKeys` (each names the item's bucket tag: a CRC-32 of the id), kept
    per item: the per-event path built them anew for every event and partner."""
    keys = _builders(prefix)
    return (keys.item_stats(item), keys.item_users(item), keys.item_users_hll(item),
            keys.item_cooc(item))


def event_ops(
    event: TopicEvent,
    *,
    entity: str,
    counted: Increments | None,
    keys: RedisKeys,
    policy: AbusePolicy | None = None,
    bounds: StateBounds | None = None,
    partition: int = 0,
    landmark: tuple[float, float] | None = None,
) -> EventOps:
    """What one event changes in Redis (:func:`_event_ops`; ``partition``: the
    ``events`` partition it was read from, whose share of the newcomer budget it draws
    on; ``landmark``: the trending ``(t0, half-life)`` its increment was computed
    against, see :func:`_score_ops`). A forwarded copy (``event.forwarded``) keeps only
    the always-applied effects on its entity (the identified user's cart, purchases,
    basket, and the user as a recent carter of the item): its counted effects, and the
    item's buyers, belong to the
    original, which was counted on the anonymous id's partition, and the copy never
    claims the event id, so a replay that reads the copy first still counts the
    original as the live run did (the same distinct users, attribution, scores)."""
    ops = _event_ops(event, entity=entity, counted=counted, keys=keys, policy=policy,
                     bounds=bounds, partition=partition, landmark=landmark)
    if event.forwarded:  # the anonymous id is active: its link to the user lives on
        bounds = bounds or StateBounds()
        always = [*ops.always, ["EXPIRE", keys.user_anons(entity), str(bounds.links_ttl_s)]]
        return EventOps(event_id=ops.event_id, hour=ops.hour, always=always,
                        trims=ops.trims, item=ops.item, copy=True)
    return ops


def _event_ops(
    event: TopicEvent,
    *,
    entity: str,
    counted: Increments | None,
    keys: RedisKeys,
    policy: AbusePolicy | None = None,
    bounds: StateBounds | None = None,
    partition: int = 0,
    landmark: tuple[float, float] | None = None,
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
    event carries its ``partition``'s share of it (``policy.budget_share()`` per window,
    :mod:`recommender.abuse` rule 5) and its increments are scaled by what the writer's
    script grants of that share. With ``bounds.require_catalog``
    nothing is written under the key of an item the catalog does not hold.
    """
    bounds = bounds or StateBounds()
    gate = bounds.require_catalog
    ops = EventOps(event_id=seen_member(event.dedupe_namespace, event.event_id),
                   hour=hour_of(event.ts), item=event.item_id)
    if event.type in ("identify", "forget"):
        return ops
    items = [event.item_id] if event.item_id else []
    if event.type == "impression":  # each item shown counts once per event
        items = list(dict.fromkeys(event.item_ids or items))
    for item in items:  # the options of _gated, inline: most events have one item
        op: Op = ["HINCRBY", _item_keys(keys.p, item)[0], event.type, "1"]
        ops.guarded.append([{"c": [item]}, *op] if gate else op)
    if event.recommendation_id:
        context, origin = parse_recommendation_id(event.recommendation_id)
        ops.guarded.append(["HINCRBY", keys.attribution(origin), event.type, "1"])
        ops.guarded.append(["HINCRBY", keys.attribution_context(context), event.type, "1"])
    # A view (most events of a burst) moves no cart and buys nothing: no lifetime text.
    carts = event.type in CART_TYPES
    ttl = str(bounds.ttl_s(event.user_id is None)) if carts else ""
    if event.item_id and carts:
        ops.always.extend(_cart_ops(event.type, entity, event.item_id, event.order_ts, keys,
                                    ttl=ttl, bounds=bounds, buyer=not event.forwarded))
    if counted is None:  # no item, or a type that moves no score
        return ops
    item = counted.item
    _, users, users_hll, _ = _item_keys(keys.p, item)
    cap = bounds.distinct_exact_max
    # The estimate is fed only once the exact set is full (its readers look at it only
    # then; the script seeds it with the set's members as it fills, and a HyperLogLog
    # depends on which ids it holds, not when they came): a Redis call per event fewer,
    # and no HyperLogLog for the items under the cap.
    ops.guarded.append([{"n": cap, "h": users_hll, "c": [item]} if gate
                        else {"n": cap, "h": users_hll}, "SADD", users, entity])
    if event.type == "purchase":
        bought = keys.user_bought(entity)
        ops.always += [["ZADD", bought, "GT", _f(event.order_ts), item],
                       ["ZREMRANGEBYRANK", bought, "0", str(-bounds.bought_max - 1)],
                       ["EXPIRE", bought, ttl]]
    if counted.popular <= 0:  # discounted to nothing by the abuse policy
        return ops
    scaled = counted.newcomer_window is not None and policy is not None
    if scaled:
        assert policy is not None and counted.newcomer_window is not None
        ops.budget = [keys.item_newcomers(item, counted.newcomer_window, partition),
                      policy.budget_share(), int(2 * policy.window_s) + 1, counted.popular,
                      item if gate else False]
    _score_ops(ops, counted, keys, gate=gate, scaled=scaled, bounds=bounds,
               landmark=landmark)
    return ops


def _score_ops(ops: EventOps, counted: Increments, keys: RedisKeys, *, gate: bool,
               scaled: bool, bounds: StateBounds,
               landmark: tuple[float, float] | None = None) -> None:
    """The popularity, trending and co-occurrence increments (with their options: the
    catalog gate, the newcomer-budget scale) and the trims they call for. Built inline:
    an event pairs with up to ``2 × cooc_window`` partners, and this was the largest
    share of the worker's per-event cost.

    With ``landmark`` (the ``(t0, half-life)`` the trending increment was computed
    against), the trending op carries ``{"l": [t0 key, t0, half-life]}``: the writer's
    script rescales it to the landmark Redis holds when it runs, so a rebase by another
    worker between this batch's read of ``t0`` and its write cannot make it 2^50 times
    too large."""
    item = counted.item
    guarded = ops.guarded
    opts: dict[str, Any] = {"s": 1} if scaled else {}
    popular, trending = _shared_keys(keys.p)
    trend = opts if landmark is None else _landmark_opts(keys.p, landmark, scaled)
    for key, value, own in ((popular, counted.popular, opts),
                            (trending, counted.trending, trend)):
        op: Op = ["ZINCRBY", key, repr(float(value)), item]
        guarded.append([{**own, "c": [item]}, *op] if gate else [own, *op] if own else op)
    trims = ops.trims
    trims[popular] = trims[trending] = bounds.ranked_items_max
    cooc_max = bounds.cooc_max
    # Pairs come in twos, (item, partner, w) then (partner, item, w): the item's own key
    # and the weight's text are made once for both.
    own_key = _item_keys(keys.p, item)[3]
    last_w, text = None, ""
    for a, b, w in counted.cooc:
        if w is not last_w:
            last_w, text = w, repr(float(w))
        key = own_key if a == item else _item_keys(keys.p, a)[3]
        if gate:
            guarded.append([{**opts, "c": [a, b]}, "ZINCRBY", key, text, b])
        elif opts:
            guarded.append([opts, "ZINCRBY", key, text, b])
        else:
            guarded.append(["ZINCRBY", key, text, b])
        trims[key] = cooc_max


@lru_cache(maxsize=8)
def _shared_keys(prefix: str) -> tuple[str, str]:
    """The popularity and trending keys under ``prefix`` (made once, not per event)."""
    keys = _builders(prefix)
    return keys.popular, keys.trending


@lru_cache(maxsize=4)
def _landmark_opts(prefix: str, landmark: tuple[float, float], scaled: bool
                   ) -> dict[str, Any]:
    """The trending op's options for the landmark ``(t0, half-life)`` (``{"s": 1}`` too
    when ``scaled``). One dict for every event of a batch, never changed once built (ops
    are only serialised): a dict and a list fewer per event alive until the batch is
    written, which the worker's garbage collector paid for in more collections."""
    t0, half_life_s = landmark
    return {**({"s": 1} if scaled else {}),
            "l": [_builders(prefix).trending_epoch, t0, half_life_s]}


def _add(key: str, gone: str, ts: str, member: str) -> Op:
    """Add ``member`` at time ``ts`` unless it was removed at that time or later (a
    redelivered or late addition never undoes a newer removal); a score only moves on."""
    return [{"after": gone}, "ZADD", key, "GT", ts, member]


def _remove(key: str, gone: str, ts: str, member: str, keep: int) -> Op:
    """Remove ``member`` unless it was added after ``ts``, and remember the removal (the
    newest ``keep`` removals) for :func:`_add`."""
    return [{"gone": [gone, ts, keep]}, "ZREM", key, member]


def identify_ops(event: TopicEvent, keys: RedisKeys, bounds: StateBounds) -> EventOps:
    """An applied ``identify``: the user remembers the anonymous id (``u:{user}:anons``,
    at most ``FORGET_ANONS_MAX``), so forgetting the user forgets it too. The set lives
    ``bounds.links_ttl_s`` after its last write, and each event of the anonymous id
    forwarded to the user writes it again (:func:`event_ops`): the user's forget finds
    the anonymous id as long as the table keeps its history (``anonymous_ttl_s`` after
    its last event, :mod:`stream.history_expiry`)."""
    ops = EventOps(event_id=seen_member(event.dedupe_namespace, event.event_id),
                   hour=hour_of(event.ts), item=event.item_id)
    user, anon = event.user_id or "", event.anonymous_id or ""
    ops.always += [[{"n": FORGET_ANONS_MAX}, "SADD", keys.user_anons(user), anon],
                   ["EXPIRE", keys.user_anons(user), str(bounds.links_ttl_s)]]
    return ops


def _cart_ops(etype: str, entity: str, item: str, ts: float, keys: RedisKeys, *, ttl: str,
              bounds: StateBounds, buyer: bool = True) -> list[Op]:
    """Cart, basket and carter bookkeeping: state scored by event time, the same whatever
    order the events are applied in (a replay, a rebalance's redelivery, a late event).
    A purchase makes the entity one of the item's buyers (the distinct buyers of the
    repeat-purchase rate) unless ``buyer`` is false: a forwarded copy, whose original
    counted the anonymous id as the buyer (one shopper, not two).

    The basket (an entity's recent carted/purchased items) and the carters (an item's
    recent carting entities) are the two halves of a bipartite graph the API walks to
    find complements: items in the baskets of the people who carted this item. The cart
    keeps its newest ``bounds.cart_max`` items; entity keys expire ``ttl`` seconds after
    this write. Removals are remembered (``*_gone``), so an older addition applied after
    them does not bring the item back.
    """
    if etype not in CART_TYPES:  # a view: no key built (most events of a burst)
        return []
    gate = bounds.require_catalog
    at = _f(ts)
    cart, basket = keys.user_cart(entity), keys.user_basket(entity)
    cart_gone, basket_gone = keys.user_cart_gone(entity), keys.user_basket_gone(entity)
    carters, carters_gone = keys.item_carters(item), keys.item_carters_gone(item)
    keep = 2 * bounds.cart_max
    if etype == "add_to_cart" or etype == "purchase":
        ops = [
            _add(basket, basket_gone, at, item),
            ["ZREMRANGEBYRANK", basket, "0", str(-BASKET_SIZE - 1)],
            ["EXPIRE", basket, ttl],
            _gated([item], _add(carters, carters_gone, at, entity)[1:], gate,
                   after=carters_gone),
            ["ZREMRANGEBYRANK", carters, "0", str(-CARTERS_KEPT - 1)],
        ]
        if etype == "add_to_cart":
            ops += [_add(cart, cart_gone, at, item),
                    ["ZREMRANGEBYRANK", cart, "0", str(-bounds.cart_max - 1)],
                    ["EXPIRE", cart, ttl]]
        else:
            ops += [_remove(cart, cart_gone, at, item, keep), ["EXPIRE", cart_gone, ttl]]
            if buyer:
                ops += [_gated([item], ["SADD", keys.item_buyers(item), entity], gate,
                               n=bounds.distinct_exact_max, h=keys.item_buyers_hll(item))]
        return ops
    if etype == "remove_from_cart":
        return [
            _remove(cart, cart_gone, at, item, keep), ["EXPIRE", cart_gone, ttl],
            _remove(basket, basket_gone, at, item, 2 * BASKET_SIZE),
            ["EXPIRE", basket_gone, ttl],
            _gated([item], _remove(carters, carters_gone, at, entity, 2 * CARTERS_KEPT)[1:],
                   gate, gone=[carters_gone, at, 2 * CARTERS_KEPT]),
        ]
    return []


def added_members(event: TopicEvent, *, entity: str, counted: Increments | None,
                  keys: RedisKeys) -> list[tuple[str, str]]:
    """``(member, key)``: the item sets and carter lists (and, for an ``identify``, the
    user's anonymous ids) to which the ops of :func:`event_ops` or :func:`identify_ops`
    of an applied event add an id. The forget sweep must leave these alone when the id
    came back after its forget (``stream.forget.Forgetting.claim``)."""
    if event.type == "identify":
        if event.user_id and event.anonymous_id:
            return [(event.anonymous_id, keys.user_anons(event.user_id))]
        return []
    out: list[tuple[str, str]] = []
    item = event.item_id
    if item and event.type in ("add_to_cart", "purchase"):
        out.append((entity, keys.item_carters(item)))
        if event.type == "purchase" and not event.forwarded:
            out.append((entity, keys.item_buyers(item)))
    elif item and event.type == "remove_from_cart":
        out.append((entity, keys.item_carters_gone(item)))
    if counted is not None and not event.forwarded:
        out.append((entity, keys.item_users(counted.item)))
    return out
