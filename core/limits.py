"""Every bound on client-supplied values and on served lists, in one place.

Schemas, routes, the fast path, the Lua serving script (its text is formatted from these)
and the worker all read the same numbers, so a limit cannot differ between the regular
routes and the fast path, or between Python and Lua.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

#: Largest id in characters (API.md: 1..256): the bound of ids in paths and query
#: parameters; ids that are written (events, catalog) obey :func:`id_problem` too.
MAX_ID_LEN = 256
#: ``n`` of every recommendation endpoint (API.md: 1..100, default 10).
MIN_N = 1
MAX_N = 100
DEFAULT_N = 10
#: Most events in one ``POST /v1/events`` and items in one ``POST /v1/items`` (API.md); the
#: settings' ``max_batch_*`` defaults, and what clients split their batches to.
MAX_BATCH_EVENTS = 500
MAX_BATCH_ITEMS = 1000
#: Largest request body the API takes by default (the default of ``Settings.max_body_bytes``,
#: ``STREAMREC_MAX_BODY_BYTES``; larger is a 413), and what clients size their requests to.
MAX_BODY_BYTES = 1_048_576
#: Longest request URL (path and query) in bytes: the most the HTTP parser (httptools, its
#: URL offsets are 16-bit) can read; longer is a 414 (``api/http_protocol.py``).
MAX_URL_BYTES = 65_535
#: Largest request head (request line and header lines together) in bytes; larger is a
#: 431, refused while it arrives, so no head is buffered whole (``api/http_protocol.py``).
MAX_HEAD_BYTES = 131_072
#: Seconds a request's head and body have to arrive in, counted from the connection's
#: start or the request's first byte; later is a 408 and the connection is closed
#: (``api/http_protocol.py``), so a client that stops sending holds no buffer for ever.
REQUEST_READ_TIMEOUT_S = 30.0
#: Longest page context name (``context=home``) and channel name.
MAX_CONTEXT_LEN = 64
#: Most ids in one ``exclude`` query parameter.
MAX_EXCLUDE = 1000
#: Most items named by one impression event.
MAX_IMPRESSION_ITEMS = 100
#: Recent items of a session whose co-occurrence lists are merged (worker and API).
SESSION_ITEMS = 10

#: Merchandising parameters of the recommendation endpoints (API.md "Merchandising"):
#: categories one ``category`` filter may name, and the longest (the catalog's bound).
#: The largest price a catalog item or a purchase may carry (``schemas.common.Price``);
#: a filter's ``price_min``/``price_max`` may be any finite number from 0 (one above
#: every price is a valid filter: no bound, or nothing).
MAX_FILTER_CATEGORIES = 20
MAX_CATEGORY_LEN = MAX_ID_LEN
MAX_PRICE = 1e12
#: The largest units-on-hand count a catalog write may carry (``stock``).
MAX_STOCK = 10**12
#: Candidates a request may examine across its whole chain, plus its ``exclude`` ids (at
#: a larger ``n``: 30 per item + 200, ``api.reader``): filters and the serving rules
#: apply before truncation, so the serve script reads as deep into each source as it must
#: to find ``n`` items that pass, up to this bound.
FILTER_SCAN_MAX = 3000
#: A category filter on a sorted set (popular, trending, co-occurrence) reads the
#: intersection with its categories' item sets (``ZINTER``) when they hold at most this
#: many items together, instead of scanning the sorted set (``api/lua/serve_consider.lua``).
CATEGORY_INTERSECT_MAX = 2000
#: A price filter that the candidate budget left short on a sorted set (popular,
#: trending, the newest items: its band ranks below the first ``FILTER_SCAN_MAX``) reads
#: the band's items from the worker's price index when it holds at most this many items,
#: and examines them (at most this many more candidates per request) best first
#: (``api/lua/serve_category.lua``); a wider band stays as the scan left it.
PRICE_BAND_MAX = 2000
#: An item hash's ``in_stock`` / ``deleted`` text, trimmed and lowercased, that means no
#: / yes (any other text: the field's default, in stock and not deleted): the serve
#: script's ``falsy`` / ``truthy`` (``api/lua/serve_request.lua``, rendered from these)
#: and the serving rows the worker fills from the hashes (``stream.catalog_columns``).
FLAG_FALSE = ("0", "false", "no", "off")
FLAG_TRUE = ("1", "true", "yes", "on")
#: Dropped candidates an ``explain=true`` trace lists (the total is counted beyond).
EXPLAIN_DROPPED_MAX = 50
#: Promotions: stored at most, item ids one names, candidates the serve script examines
#: for a category promotion, candidates it examines for all the active promotions of one
#: list (an item promotion costs its item count: many small promotions all run, at most
#: five category ones), and how often an API process re-reads them unasked (seconds; a
#: write by any process is seen at the next list: api.promotions).
PROMOTIONS_MAX = 100
PROMOTION_ITEMS_MAX = 100
PROMOTION_SCAN_MAX = 300
PROMOTION_SCAN_TOTAL = 5 * PROMOTION_SCAN_MAX
PROMOTIONS_CACHE_S = 1.0
#: Served lists an API process keeps in its near cache (``api.near_cache``) by default.
SERVE_CACHE_ENTRIES = 50_000
#: Largest ``events`` message a producer of ours writes: the API splits a request's
#: envelope beyond it (one event alone larger is a 413), and the worker splits the
#: forwards of identified histories it sends to one user (Kafka's default message limit
#: is 1 MB, and a batch's forwards for one user can exceed it).
MAX_MESSAGE_BYTES = 512 * 1024
#: Anonymous ids remembered per user as identified as it (forgetting the user forgets
#: them too); identifies beyond are still applied, only not remembered for forgetting.
FORGET_ANONS_MAX = 1000


def links_ttl_s(entity_ttl_s: int, anonymous_ttl_s: int) -> int:
    """How long a user's set of identified anonymous ids (``u:{user}:anons``) lives after
    its last write (an identify, or an anonymous id's event forwarded to the user): as long
    as the longest-lived state it points to, so forgetting the user finds every anonymous
    id whose history or keys are still kept (those expire ``anonymous_ttl_s`` after the
    anonymous id's last event, and each such event refreshes the set)."""
    return max(entity_ttl_s, anonymous_ttl_s)

#: Largest id (user, anonymous, item, event, recommendation id) in UTF-8 bytes: 256
#: characters (:data:`MAX_ID_LEN`, API.md's bound, counted in code points) of at most 4
#: bytes each. The serve script's ``valid_id`` counts characters only beyond 256 bytes.
MAX_ID_BYTES = 4 * MAX_ID_LEN
#: Control characters no id may contain: C0 (U+0000-U+001F), DEL and C1 (U+0080-U+009F).
#: The serve script's ``valid_id`` rejects exactly these (as bytes: 0x00-0x1F, 0x7F and
#: the UTF-8 pairs 0xC2 0x80-0x9F).
CONTROL_CHARS = re.compile("[\x00-\x1f\x7f-\x9f]")


def id_problem(value: str) -> str | None:
    """Why ``value`` is not a valid id (non-empty, at most :data:`MAX_ID_LEN` characters
    as API.md states, valid Unicode, no control characters), or None when it is. The one
    id rule of the API.

    Characters are code points (Python's ``len``), so a 256-character id in any script
    is valid (until 2026-12-03 the bound was 256 UTF-8 bytes, which refused non-ASCII ids
    the contract allows). A lone surrogate (``"\ud800"``) cannot be stored as UTF-8:
    refused here rather than failing at Redis."""
    if not value:
        return "an id must not be empty"
    if len(value) <= MAX_ID_LEN and value.isascii() and value.isprintable():
        return None  # the common case, without encoding or a regex (per event, hot)
    if len(value) > MAX_ID_LEN:
        return f"an id is at most {MAX_ID_LEN} characters, got {len(value)}"
    if CONTROL_CHARS.search(value):
        return "an id must not contain control characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "an id must be valid Unicode text (no lone surrogates)"
    return None


#: The latest event time (epoch seconds) a loaded file may give: 9999-12-31T23:59:59Z, the
#: last instant an ISO-8601 ``timestamp`` can carry.
MAX_EVENT_TS = 253402300799.0

#: ``context`` objects of tracking events: nesting depth (the object itself is level 1)
#: and size as compact JSON.
MAX_CONTEXT_DEPTH = 8
MAX_CONTEXT_BYTES = 4096
#: ``properties`` of catalog items: nesting depth (the object itself is level 1) and size
#: as compact JSON. Stored per item in Redis and shown by the admin lookup; never read
#: while serving.
MAX_PROPERTIES_DEPTH = 8
MAX_PROPERTIES_BYTES = 16384
#: Nesting depth of a whole request body (every JSON route, ``api.body.read_json``): far
#: above what any schema needs (an event's context at depth 8 sits at depth 11), far below
#: what would exhaust Python's recursion (pydantic, ``orjson.dumps``' 254 levels).
MAX_JSON_DEPTH = 32


def json_depth(value: Any, limit: int | None = None) -> int:
    """Nesting depth of a parsed JSON value: a scalar is 0, an object or array one more
    than its deepest member. Iterative, so a client's 1000-level body cannot exhaust the
    interpreter's recursion; with ``limit``, stops at the first level beyond it and
    returns ``limit + 1``."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            node = node.values()
        elif not isinstance(node, list):
            continue
        depth += 1
        if depth > deepest:
            deepest = depth
            if limit is not None and depth > limit:
                return depth
        stack.extend((child, depth) for child in node if isinstance(child, (dict, list)))
    return deepest


def json_bound_problem(value: Any, name: str, max_depth: int, max_bytes: int) -> str | None:
    """What makes the JSON value ``name`` too deep or too large (as compact JSON), or
    None: the one check of an event's ``context`` and an item's ``properties``."""
    if json_depth(value, max_depth) > max_depth:
        return f"{name} is nested more than {max_depth} levels deep; at most {max_depth} " \
               "are accepted"
    try:
        size = len(orjson.dumps(value))
    except TypeError as exc:  # not JSON (only reachable from Python callers)
        return f"{name} is not JSON: {exc}"
    if size > max_bytes:
        return f"{name} is {size} bytes as JSON; at most {max_bytes} are accepted"
    return None
#: Default of ``Settings.max_future_skew_s``: how far ahead of the server clock a client
#: timestamp may be (the schemas use it when no setting is passed in).
DEFAULT_MAX_FUTURE_S = 300.0
#: Shortest API key accepted at startup.
MIN_API_KEY_LEN = 16

#: Experiment ids and variant names: they travel inside recommendation ids and Redis key
#: names, so letters, digits, ``_`` and ``-`` only, 1..64 of them.
MAX_EXPERIMENT_NAME_LEN = 64
EXPERIMENT_NAME_RE = rf"^[A-Za-z0-9_-]{{1,{MAX_EXPERIMENT_NAME_LEN}}}$"
#: Variants of one experiment, and experiments defined at once (each running one is
#: checked per recommendation request and per stream batch).
MAX_VARIANTS = 10
MAX_EXPERIMENTS = 50
#: Variant weights are positive and sum to 1 within this.
WEIGHT_SUM_TOLERANCE = 1e-9

#: Leased rate-limit tokens (``api.rate_lease``): an API process charges up to a lease of
#: requests at once to a key's shared GCRA bucket and admits them locally, so most
#: requests of a busy key need no Redis call for the limit. A lease is at most
#: ``RATE_LEASE_BURST_SHARE`` of the burst (a held lease is budget the other processes
#: cannot use: an eighth keeps their under-admission small; a limit below 16 requests/s
#: never leases more than one, today's exact check) and at most ``RATE_LEASE_MAX`` (the
#: tokens one expiry may lose). Its size follows the requests the process saw in the last
#: ``RATE_LEASE_WINDOW_S`` (one per request at low rates); unspent tokens are dropped
#: ``RATE_LEASE_S`` after it was asked for (a held token admits a request at most that
#: late, so any window admits at most the limit plus one lease per process, and a
#: process that goes quiet gives its share back within that time).
#: ``RATE_LEASE_KEYS_MAX``: keys whose lease a process remembers (least recently used
#: dropped first; a dropped lease's tokens are lost, never over-admitted).
RATE_LEASE_BURST_SHARE = 0.125
RATE_LEASE_MAX = 64
RATE_LEASE_WINDOW_S = 0.05
RATE_LEASE_S = 0.1
RATE_LEASE_KEYS_MAX = 4096
