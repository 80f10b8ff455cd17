"""What a recommendation list needs from outside the shared slot, read before ``SERVE``.

The serve script runs in the shared slot (``core.redis_keys``); everything else a link
needs is read here first, in as few round trips as the chain allows, each one pipelined
call per node:

1. the entity's slot (``ENTITY_READ``: personal and recent lists, purchases, cart) and
   the anchor item's bucket (its model neighbours and co-occurrence);
2. the carters of the cart's items (``comp``), the counts of the purchased items
   (``again``);
3. the carters' baskets (``comp``).

A chain that needs none of them (popular, trending) goes straight to ``SERVE``. The
co-occurrence of the recent items (``session``) is read only when ``SERVE`` reaches that
link with the list still short (it answers ``need``; the links before it usually fill
the list: one round trip saved for most shoppers). The
results travel into the request as data; list texts as extra script arguments
(``ARGV[i]``, referred to by index), so the script parses the worker's lists lazily as
before.

That is the Redis Cluster's way. On one Redis (the default) every key is in reach of one
script, so :func:`serve_one` sends the keys instead and ``SERVE_ONE`` makes the same
reads inside Redis, with the rate limit: one round trip for every list. The personal
list's text then never travels to the API and back: ~15 % less API CPU per request,
~10 % less Redis CPU (docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson

from api.ranking import CART_CONTEXTS, SourceSpec
from api.serve_script import ENTITY_READ, SERVE, SERVE_ONE
from core.limits import SESSION_ITEMS, id_problem
from core.redis_client import Call, Lua, command
from core.redis_keys import RedisKeys
from core.settings import Settings

ENTITY = Lua(ENTITY_READ)
SERVE_LUA = Lua(SERVE)
SERVE_ONE_LUA = Lua(SERVE_ONE)
#: One round trip: calls in, replies out (a pipelined connection or a cluster client).
Batch = Callable[[list[Call]], Awaitable[list[Any]]]
#: ``SERVE_ONE``'s rate limit: key, seconds per request, burst, optionally a lease size.
RateArgs = tuple[Any, ...]
#: Cart items whose complements are merged, and recent carters read per cart item.
COMPLEMENT_ANCHORS = 5
COMPLEMENT_CARTERS = 50
#: Purchased items considered for "buy again".
BUY_AGAIN_MAX = 200


def _text(raw: Any) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def _pairs(flat: Any) -> list[list[str]]:
    """``[[member, score text], ...]`` of a ``ZREVRANGE … WITHSCORES`` reply."""
    if not flat:
        return []
    if isinstance(flat[0], list | tuple):
        return [[_text(m), repr(float(s))] for m, s in flat]
    return [[_text(flat[i]), _text(flat[i + 1])] for i in range(0, len(flat) - 1, 2)]


_BUCKETED: dict[tuple[str, str], list[str | int]] = {}


def _parts(keys: RedisKeys, builder: str) -> list[str | int]:
    """``keys.bucketed(builder)``, built once per key prefix."""
    found = _BUCKETED.get((keys.p, builder))
    if found is None:
        found = _BUCKETED[(keys.p, builder)] = keys.bucketed(builder)
    return found


def valid_ids(values: Any, limit: int) -> list[str]:
    """The first ``limit`` distinct valid ids of a list (the serve script's id rule)."""
    out: list[str] = []
    for value in values if isinstance(values, list) else ():
        if isinstance(value, str) and id_problem(value) is None and value not in out:
            out.append(value)
            if len(out) >= limit:
                break
    return out


class ServeInputs:
    """The reads of one request and the ``SERVE`` arguments they fill (see module)."""

    def __init__(self, request: dict[str, Any], chain: Sequence[SourceSpec], *,
                 entity: str | None, anchor: str | None, context: str,
                 keys: RedisKeys, settings: Settings) -> None:
        self.request = request
        self.chain = chain
        self.entity = entity
        self.anchor = anchor
        self.keys = keys
        self.settings = settings
        self.by_kind: dict[str, list[dict[str, Any]]] = {}
        for link in request["src"]:
            self.by_kind.setdefault(link["k"], []).append(link)
        self.kinds = set(self.by_kind)
        self.texts: list[str] = []
        self.cart_context = context in CART_CONTEXTS
        self._recent: list[str] = []
        self._recent_raw: Any = None
        self._bought: list[str] = []
        self._anchors: list[str] = []
        self._carters: list[str] = []
        self._carter_of: list[str] = []

    def _arg(self, raw: Any) -> int | None:
        """Pass a list text as ``ARGV[i]``; its index (None for a missing list)."""
        if not isinstance(raw, str | bytes) or not raw:
            return None
        self.texts.append(_text(raw))
        return len(self.texts) + 1

    def _links(self, kind: str) -> list[dict[str, Any]]:
        return self.by_kind.get(kind, [])

    # -- round trip 1 --------------------------------------------------------------------
    def _entity_keys(self, entity: str) -> tuple[list[str], list[str]]:
        """``ENTITY_READ``'s keys, and per key whether the request needs it (``"1"``)."""
        k, req = self.keys, self.request
        want = [bool(self._links("user_recs")) or "boost" in req,
                "session" in self.kinds, True, self.cart_context]
        return ([k.user_recs(entity), k.user_recent(entity), k.user_bought(entity),
                 k.user_cart(entity)], ["1" if w else "0" for w in want])

    def first(self) -> list[Call]:
        """The entity's slot and the anchor item's reads."""
        k, calls = self.keys, []
        req = self.request
        if self.entity:
            keys, want = self._entity_keys(self.entity)
            calls.append(ENTITY.call(keys, [*want, self.settings.bought_max,
                                            self.settings.cart_max,
                                            "1" if req.get("x") else "0"]))
        if self._links("item_similar"):
            calls.append(command("GET", k.item_similar(self.anchor or "")))
        if self._links("item_cooc"):
            calls.append(command("ZREVRANGE", k.item_cooc(self.anchor or ""), 0,
                                 int(req["scan"]) - 1, "WITHSCORES"))
        return calls

    def take_first(self, replies: Sequence[Any]) -> None:
        """Fill the request from round trip 1."""
        at, req = 0, self.request
        recs = None
        if self.entity:
            recs, recent, bought, cart, *times = replies[0]
            at = 1
            if times:  # explain: a link's age is that of its newest input
                for kind, newest in (("again", times[0]), ("comp", times[1])):
                    for link in self._links(kind) if newest else ():
                        link["w"] = _text(newest)
            req["bought"] = self._bought = [_text(i) for i in bought or ()]
            if self.cart_context:
                req["cart"] = [_text(i) for i in cart or ()]
            self._recent_raw = recent
        index = self._arg(recs)
        if "boost" in req:
            req["boost"] = index
        for link in self._links("user_recs"):
            link.update(k="json", arg=index)
        for link in self._links("item_similar"):
            link.update(k="json", arg=self._arg(replies[at]))
            at += 1
        for link in self._links("item_cooc"):
            link.update(k="list", items=_pairs(replies[at]))
            at += 1

    # -- round trip 2 --------------------------------------------------------------------
    def session(self) -> list[Call]:
        """Co-occurrence of the recent items (when ``SERVE`` asked for them)."""
        if isinstance(self._recent_raw, str | bytes):
            try:
                self._recent = valid_ids(orjson.loads(self._recent_raw), SESSION_ITEMS)
            except orjson.JSONDecodeError:
                self._recent = []
        page = int(self.request["page"])
        return [command("ZREVRANGE", self.keys.item_cooc(i), 0, page - 1, "WITHSCORES")
                for i in self._recent]

    def take_session(self, replies: Sequence[Any]) -> None:
        """Fill the session links."""
        pages = [_pairs(r) for r in replies]
        for link in self._links("session"):
            link["pages"] = pages
            link["via"] = self._recent  # the recent item of each page (explain's via)

    def second(self) -> list[Call]:
        """Carters of the cart, purchased items' counts."""
        k, calls = self.keys, []
        if "comp" in self.kinds:
            cart = self.request.get("cart") or []
            self._anchors = valid_ids(list(self.request.get("anchors") or []) + cart,
                                      COMPLEMENT_ANCHORS)
            calls += [command("ZREVRANGE", k.item_carters(a), 0, COMPLEMENT_CARTERS - 1)
                      for a in self._anchors]
        if "again" in self.kinds:
            for item in valid_ids(self._bought, BUY_AGAIN_MAX):
                calls += [command("HGET", k.item_stats(item), "purchase"),
                          command("SCARD", k.item_buyers(item)),
                          command("PFCOUNT", k.item_buyers_hll(item))]
        return calls

    def take_second(self, replies: Sequence[Any]) -> None:
        """Fill the request from round trip 2."""
        at = 0
        if "comp" in self.kinds:
            per_anchor = replies[at:at + len(self._anchors)]
            at += len(self._anchors)
            self._carters, self._carter_of = [], []
            for anchor, carters in zip(self._anchors, per_anchor, strict=True):
                for who in carters or ():
                    self._carters.append(_text(who))
                    self._carter_of.append(anchor)
        if "again" in self.kinds:
            bought = valid_ids(self._bought, BUY_AGAIN_MAX)
            items = [[item, *(_text(v) if v is not None else "0"
                              for v in replies[at + 3 * n:at + 3 * n + 3])]
                     for n, item in enumerate(bought)]
            for link in self._links("again"):
                link["items"] = items

    # -- round trip 3 --------------------------------------------------------------------
    def third(self) -> list[Call]:
        """The carters' baskets."""
        return [command("ZRANGE", self.keys.user_basket(who), 0, -1) for who in self._carters]

    def take_third(self, replies: Sequence[Any]) -> None:
        """Fill the request from round trip 3."""
        baskets = [[_text(i) for i in basket or ()] for basket in replies]
        for link in self._links("comp"):
            link["baskets"] = baskets
            link["from"] = self._carter_of  # the cart item of each basket (explain's via)

    # -- one round trip (one Redis) ------------------------------------------------------
    def one_args(self, rate: RateArgs | None) -> list[Any]:
        """``SERVE_ONE``'s arguments: the request with the rate limit ``rate`` (key,
        seconds per request, burst, and optionally a lease size: charge up to that many
        requests, :mod:`api.rate_lease`) and the keys of the reads (``api/lua/inline.lua``)."""
        k, req = self.keys, self.request
        one: dict[str, Any] = {"cooc": _parts(k, "item_cooc")}
        if rate is not None:
            one["rl"] = [rate[0], repr(rate[1]), repr(rate[2]), *rate[3:4]]
        if self.entity:
            keys, want = self._entity_keys(self.entity)
            one["ent"] = {"keys": keys, "want": want, "bm": self.settings.bought_max,
                          "cm": self.settings.cart_max, "cart": self.cart_context}
        if "comp" in self.kinds:
            one["comp"] = {"na": COMPLEMENT_ANCHORS, "nc": COMPLEMENT_CARTERS,
                           "carters": _parts(k, "item_carters"),
                           "basket": _parts(k, "user_basket")}
        if "again" in self.kinds:
            one["again"] = {"max": BUY_AGAIN_MAX, "stats": _parts(k, "item_stats"),
                            "buyers": _parts(k, "item_buyers"),
                            "hll": _parts(k, "item_buyers_hll")}
        for link in self._links("item_similar"):
            link["key"] = k.item_similar(self.anchor or "")
        for link in self._links("item_cooc"):
            link["key"] = k.item_cooc(self.anchor or "")
        req["one"] = one
        return [orjson.dumps(req)]

    def serve_args(self) -> list[Any]:
        """``SERVE``'s arguments: the JSON request, then the list texts."""
        return [orjson.dumps(self.request), *self.texts]


async def serve_list(batch: Batch, inputs: ServeInputs, shared: list[str], *,
                     limit: Call | None = None,
                     on_limit: Callable[[Any], None] = lambda wait: None) -> list[Any]:
    """``SERVE``'s reply for ``inputs`` after their reads; ``shared`` are the shared-slot
    keys it reads (the first routes it). The rate limit ``limit`` runs in the first round
    trip and ``on_limit`` gets its reply (raise there to stop)."""
    limits = [limit] if limit is not None else []
    first = inputs.first()
    if not first:  # nothing outside the shared slot: one round trip
        replies = await batch([*limits, SERVE_LUA.call(shared, inputs.serve_args())])
        if limits:
            on_limit(replies[0])
        return list(replies[-1])
    replies = await batch([*limits, *first])
    if limits:
        on_limit(replies[0])
    inputs.take_first(replies[len(limits):])
    for reads, take in ((inputs.second, inputs.take_second),
                        (inputs.third, inputs.take_third)):
        calls = reads()
        if calls:
            take(await batch(calls))
    reply = (await batch([SERVE_LUA.call(shared, inputs.serve_args())]))[0]
    if reply[0] == "need":  # the session link was reached with the list still short
        calls = inputs.session()
        inputs.take_session(await batch(calls) if calls else [])
        reply = (await batch([SERVE_LUA.call(shared, inputs.serve_args())]))[0]
    return list(reply)


async def serve_one(batch: Batch, inputs: ServeInputs, shared: list[str], *,
                    rate: RateArgs | None,
                    on_limit: Callable[[Any], None] = lambda wait: None) -> list[Any]:
    """:func:`serve_list` in one round trip on one Redis: ``SERVE_ONE`` checks the rate
    limit ``rate`` (with a lease size: charges up to that many requests, and the reply's
    head is the count charged) and makes the reads itself;
    ``on_limit`` gets the wait when the limit refused (raise there to stop)."""
    reply = (await batch([SERVE_ONE_LUA.call(shared, inputs.one_args(rate))]))[0]
    if reply[0] == "limited":
        on_limit(reply[1])
    return list(reply)
