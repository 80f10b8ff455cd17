"""The Lua scripts behind serving (:mod:`api.reader` runs them, :mod:`api.gather` reads
their inputs).

Every script touches the keys of one hash slot (``core.redis_keys``), so the same calls
serve from one Redis and from a Redis Cluster. A list takes at most four short round
trips, each one pipelined call per node: the entity's slot and the anchor item's
(``ENTITY_READ`` and plain reads, with the rate limit), the co-occurrence of the recent
items or the carters of the cart (plain reads), the carters' baskets (the cart contexts
only), and ``SERVE`` in the shared slot, which holds everything every request reads --
item metadata and stock, the popular and trending lists, the model pointer -- so all of
that is read in one call, whatever the list.

``SERVE`` takes one JSON request (built by :class:`api.gather.ServeInputs`) plus raw list
texts as further arguments, and does, inside Redis and atomically:

1. for each link of the fallback chain in order, its candidates best first: a prepared
   JSON list (``json``, its text passed in), a shared sorted set read page by page
   (``zset``: popular, trending, the newest catalog items), pre-read sorted-set entries
   (``list``: an item's co-occurrence), the merged co-occurrence of the entity's recent
   items (``session``), complements of the cart (``comp``: items in the baskets of the
   last people who carted the same items) or the entity's repeat purchases of
   consumables (``again``);
2. the filters on every candidate: excluded / anchor / cart / already chosen ids, the
   entity's purchases (except for ``again``), ``items:unavailable`` and the catalog hash
   (deleted, out of stock, absent when the catalog is required). Carts and purchases
   arrive whole (the worker keeps the newest ``cart_max`` / ``bought_max``);
3. the catalog fields of every item that passes, until ``n`` items (``take`` for links
   that a later re-rank trims) or until ``scan`` candidates were examined: from the
   item's serving row (``rows``: one ``HGET`` of one value,
   ``stream.catalog_columns.serve_row``) while the catalog columns are whole at their
   version, else from its hash.

Merchandising (:mod:`api.filters`) runs in the same pass: a request's category and
price filters (``f``) and its per-category cap (``k``) apply to every candidate before it
counts towards ``n`` -- a filtered list reads deeper into each link, up to ``scan``
candidates, and falls back through the chain inside the filter; a price band that a
sorted set ranks below that budget is read from the price index (``cols``: its key and
the columns' version, ``core.limits.PRICE_BAND_MAX``). Promotions are links of
their own at the head of the chain (``ids``: a promotion's items; a ``zset`` link with a
category ``lc``: the most popular items of that category, read from its item set when the
catalog columns are complete, ``csets``), each with its own candidate
budget (``scan``) and its share of the slots (``quota``: at most that many items of its
own, after those chosen before it).

It returns one flat array (no ``cjson.encode``: encoding floats was a sixth of the
script's cost): ``"ok"``, the model version, the trending epoch, the affinity ``lo, hi``,
the number of links ``L``, the number of chosen items, each link's ``lo, hi`` for the
chain score's normaliser (``2 * L`` values), then 11 values per chosen item: ``link,
position, raw score, id, name, price, currency, category, affinity, reason, via`` (the
reason stored with the entry in a blended list, else nil; ``via`` the entity's item that
led to it: the recent item of a session candidate, the cart item of a complement). Then
the names of the items the reasons mention (a count, then ``id, name`` pairs: each
``via`` and the request's anchors ``an``), and with ``x`` (``explain=true``) the trace:
per link ``consulted, size, written at, model version``, then the number of candidates
left out, how many are listed (at most ``EXPLAIN_DROPPED_MAX``) and an ``id, why`` pair
each (:mod:`api.explain`). Numbers other than link, position and counts travel as text
(Lua numbers reach the client truncated to integers); absent values are nil. A
``session`` link without its co-occurrence pages answers ``["need"]`` when the list
still needs it (the reader reads them and calls again). The rate limit is
``RATE_LEASE`` on its own slot, in the first round trip (:mod:`api.rate_lease`: only
when the process holds no token of the key). On one Redis, ``SERVE_ONE``
makes all of it one round trip: the same script with the rate limit and those reads
first. Scoring stays in Python (:mod:`api.ranking`), where it is unit-tested; Redis only
does what needs the data.
``tests/integration/api/test_serve_script.py`` runs the scripts on a real redis-server.

Prepared lists (``json`` links) are not decoded whole: the worker writes them best first
with plain ids, so the script matches entries one at a time as the scan needs them
(``lazy_list``), and decodes and sorts the whole list only when the text is not in that
shape or out of order within what it read.

Wrongly typed keys never fail a request: reads go through ``redis.pcall`` and a failed
read counts as empty. Catalog keys are built from the ``(prefix, suffix)`` pair that
:meth:`core.redis_keys.RedisKeys.split` derives (the shared slot's), so key names stay
defined in one module.

The Lua sources are package data in ``api/lua/`` (``gcra.lua``, ``lists.lua`` — reading
candidate lists and the id rule —, ``merch.lua`` — the category rule —, the serve
script itself in four parts read as one (``serve_request.lua``, ``serve_consider.lua``,
``serve_category.lua``, ``serve.lua``), ``entity_read.lua`` and ``entity.lua``,
``inline.lua``, ``rate_limit.lua``, ``rate_lease.lua`` and ``rate_limit_events.lua``); ``@NAME@``
placeholders in them are filled from :mod:`core.limits` at import (a bound, or a set of
words: :data:`WORD_SETS`), so Lua and Python share every bound and rule.
"""

from __future__ import annotations

import re
from importlib.resources import files

from core import limits

#: The ``@NAME@`` placeholders the Lua sources may use, and their values.
LIMITS: dict[str, int] = {
    "MAX_ID_BYTES": limits.MAX_ID_BYTES,
    "MAX_ID_LEN": limits.MAX_ID_LEN,
    "EXPLAIN_DROPPED_MAX": limits.EXPLAIN_DROPPED_MAX,
    "CATEGORY_INTERSECT_MAX": limits.CATEGORY_INTERSECT_MAX,
    "PRICE_BAND_MAX": limits.PRICE_BAND_MAX,
    "SESSION_ITEMS": limits.SESSION_ITEMS,
}

#: Placeholders filled with a Lua set (``{['word'] = true, ...}``) of a rule's words.
WORD_SETS: dict[str, str] = {
    name: "{" + ", ".join(f"['{w}'] = true" for w in words) + "}"
    for name, words in (("FLAG_FALSE", limits.FLAG_FALSE), ("FLAG_TRUE", limits.FLAG_TRUE))}

_PLACEHOLDER = re.compile(r"@([A-Z_]+)@")


def lua_source(name: str) -> str:
    """The text of ``api/lua/{name}.lua`` with its ``@NAME@`` placeholders filled from
    :data:`LIMITS`; an unknown placeholder fails at import rather than in Redis."""
    text = files("api").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")

    def fill(match: re.Match[str]) -> str:
        if match.group(1) in WORD_SETS:
            return WORD_SETS[match.group(1)]
        if match.group(1) not in LIMITS:
            raise KeyError(f"api/lua/{name}.lua: no limit named {match.group(1)}")
        return str(LIMITS[match.group(1)])

    return _PLACEHOLDER.sub(fill, text)


#: The libraries every script uses, as locals: a global is a hash lookup in the script's
#: environment on every use, a local is a register (1-2 % fewer instructions per
#: filtered request; callgrind, ``streamrec.bench.script``).
_PRELUDE = ("redis.replicate_commands()\n"
            "local redis, string, math, table, cjson = redis, string, math, table, cjson\n"
            "local tonumber, tostring, type, ipairs, pairs, pcall, unpack =\n"
            "  tonumber, tostring, type, ipairs, pairs, pcall, unpack\n")

#: GCRA check of one key: KEYS[1] = state key; ARGV = emission interval (s), burst
#: (requests). Returns ``"0"`` when allowed, else the seconds until the next request
#: would be allowed (the routes that do not serve a list use it).
RATE_LIMIT = _PRELUDE + lua_source("gcra") + lua_source("rate_limit")

#: A lease of rate-limit tokens (:mod:`api.rate_lease`): KEYS[1] = state key; ARGV =
#: emission interval (s), burst, lease size (requests). Charges the lease when it fits,
#: else as many requests as fit (at least one); returns ``[charged, wait_s]``, ``charged``
#: 0 when not even one fits (``wait_s`` then as ``RATE_LIMIT``'s).
RATE_LEASE = _PRELUDE + lua_source("gcra") + lua_source("rate_lease")

#: The serve script's own text, four files read in order as one chunk (they share its
#: locals): the request (``serve_request.lua``), one candidate's rules (``serve_consider``),
#: the category and price-band reads (``serve_category``), the chain and reply (``serve``).
_SERVE_BODY = "".join(lua_source(name) for name in
                      ("serve_request", "serve_consider", "serve_category", "serve"))

#: One recommendation list per call: ``ARGV[1]`` = the JSON request (see above), further
#: ``ARGV`` = raw list texts the request refers to by index.
SERVE = (_PRELUDE + lua_source("lists") + lua_source("merch") + "local INLINE = false\n"
         + _SERVE_BODY)

#: ``SERVE`` in one round trip, on one Redis only (it reads keys of every slot): the
#: request's ``one`` field carries the rate limit and the keys of the reads
#: :mod:`api.gather` makes beforehand on a Redis Cluster, which ``inline.lua`` makes
#: inside the script and fills in as the gather does; the reply is ``SERVE``'s (its head
#: the count charged when the request carries a lease size, :mod:`api.rate_lease`), or
#: ``["limited", wait_s]`` when the rate limit refuses (nothing else read then).
SERVE_ONE = (_PRELUDE + lua_source("gcra") + lua_source("lists") + lua_source("merch")
             + lua_source("entity_read") + lua_source("inline") + _SERVE_BODY)

#: One entity's personal and recent lists, purchases and cart (its own slot).
ENTITY_READ = _PRELUDE + lua_source("entity_read") + lua_source("entity")

#: Tracking limits, counting events (:mod:`api.tracking_limits`): KEYS = bucket keys (per
#: API key, source address, user/anonymous id); ``ARGV[1]`` = JSON ``[[interval_s, burst,
#: cost], ...]``, one per key. GCRA per bucket with ``cost`` events at once (an idle
#: bucket admits one batch larger than its burst). Returns ``{"0", 0}`` when every bucket
#: admits (all are charged, atomically), else ``{wait_s, index}`` of the bucket that waits
#: longest, and charges none.
RATE_LIMIT_EVENTS = _PRELUDE + lua_source("gcra") + lua_source("rate_limit_events")
