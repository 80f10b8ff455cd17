"""The Lua scripts behind serving: one Redis round trip per recommendation request.

``SERVE`` takes one JSON request (built by :class:`api.reader.Reader`) and does, inside
Redis and atomically:

1. the per-key rate limit (GCRA, ``lua/gcra.lua``, shared with ``RATE_LIMIT``) — over
   the limit, nothing else runs;
2. for each link of the fallback chain in order, its candidates best first: a prepared
   JSON list (``json``), a sorted set read page by page (``zset``), the merged
   co-occurrence of the entity's recent items (``session``), complements of the cart
   (``comp``: items in the baskets of the last people who carted the same items) or the
   entity's repeat purchases of consumables (``again``);
3. the filters on every candidate: excluded / anchor / cart / already chosen ids, the
   entity's purchases (except for ``again``), ``items:unavailable`` and the catalog hash
   (deleted, out of stock, absent when the catalog is required). Carts and purchases are
   sorted sets by time, trimmed by the worker: small ones are read whole, a cart over
   ``SERVE_CART_READ_MAX`` items only as its newest anchors (candidates are checked
   against it one by one), so a huge cart costs what a small one does;
4. the catalog fields of every item that passes, until ``n`` items (``take`` for links
   that a later re-rank trims) or until ``scan`` candidates were examined.

Merchandising (:mod:`api.filters`) runs in the same pass: a request's category and
price filters (``f``) and its per-category cap (``k``) apply to every candidate before it
counts towards ``n`` -- a filtered list reads deeper into each link, up to ``scan``
candidates, and falls back through the chain inside the filter. Promotions are links of
their own at the head of the chain (``ids``: a promotion's items; a ``zset`` link with a
category ``lc``: the most popular items of that category), each with its own candidate
budget (``scan``) and its share of the slots (``take``).

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
(Lua numbers reach the client truncated to integers); absent values are nil. Over the
rate limit the reply is ``["limited", seconds]``. Scoring stays in Python
(:mod:`api.ranking`), where it is unit-tested; Redis only does what needs the data.
``tests/integration/api/test_serve_script.py`` runs the script on a real redis-server.

Prepared lists (``json`` links) are not decoded whole: the worker writes them best first
with plain ids, so the script matches entries one at a time as the scan needs them
(``lazy_list``), and decodes and sorts the whole list only when the text is not in that
shape or out of order within what it read.

Wrongly typed keys never fail a request: reads go through ``redis.pcall`` and a failed
read counts as empty. Keys are built from ``(prefix, suffix)`` pairs that
:meth:`core.redis_keys.RedisKeys.split` derives, so key names stay defined in one
module. Everything runs on one Redis server (no cluster slots), like the rest of
streamrec.

The Lua sources are package data in ``api/lua/`` (``gcra.lua``, ``lists.lua`` — reading
candidate lists and the id rule —, ``merch.lua`` — the category rule —, ``serve.lua``,
``rate_limit.lua`` and ``rate_limit_events.lua``); ``@NAME@`` placeholders in them are filled from
:mod:`core.limits` at import, so Lua and Python share every bound.
"""

from __future__ import annotations

import re
from importlib.resources import files

from core import limits

#: The ``@NAME@`` placeholders the Lua sources may use, and their values.
LIMITS: dict[str, int] = {
    "MAX_ID_BYTES": limits.MAX_ID_BYTES,
    "SERVE_BOUGHT_READ_MAX": limits.SERVE_BOUGHT_READ_MAX,
    "SERVE_CART_READ_MAX": limits.SERVE_CART_READ_MAX,
    "EXPLAIN_DROPPED_MAX": limits.EXPLAIN_DROPPED_MAX,
    "CATEGORY_INTERSECT_MAX": limits.CATEGORY_INTERSECT_MAX,
}

_PLACEHOLDER = re.compile(r"@([A-Z_]+)@")


def lua_source(name: str) -> str:
    """The text of ``api/lua/{name}.lua`` with its ``@NAME@`` placeholders filled from
    :data:`LIMITS`; an unknown placeholder fails at import rather than in Redis."""
    text = files("api").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")

    def fill(match: re.Match[str]) -> str:
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

#: One recommendation list per call: ``ARGV[1]`` = the JSON request (see above).
SERVE = (_PRELUDE + lua_source("gcra") + lua_source("lists") + lua_source("merch")
         + lua_source("serve"))

#: Tracking limits, counting events (:mod:`api.tracking_limits`): KEYS = bucket keys (per
#: API key, source address, user/anonymous id); ``ARGV[1]`` = JSON ``[[interval_s, burst,
#: cost], ...]``, one per key. GCRA per bucket with ``cost`` events at once (an idle
#: bucket admits one batch larger than its burst). Returns ``{"0", 0}`` when every bucket
#: admits (all are charged, atomically), else ``{wait_s, index}`` of the bucket that waits
#: longest, and charges none.
RATE_LIMIT_EVENTS = _PRELUDE + lua_source("gcra") + lua_source("rate_limit_events")
