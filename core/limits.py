"""Every bound on client-supplied values and on served lists, in one place.

Schemas, routes, the fast path, the Lua serving script (its text is formatted from these)
and the worker all read the same numbers, so a limit cannot differ between the regular
routes and the fast path, or between Python and Lua.
"""

from __future__ import annotations

#: Largest id (user, anonymous, item, recommendation) in characters (API.md: 1..256).
MAX_ID_LEN = 256
#: ``n`` of every recommendation endpoint (API.md: 1..100, default 10).
MIN_N = 1
MAX_N = 100
DEFAULT_N = 10
#: Most events in one ``POST /v1/events`` and items in one ``POST /v1/items`` (API.md); the
#: settings' ``max_batch_*`` defaults, and what clients split their batches to.
MAX_BATCH_EVENTS = 500
MAX_BATCH_ITEMS = 1000
#: Longest page context name (``context=home``) and channel name.
MAX_CONTEXT_LEN = 64
#: Most ids in one ``exclude`` query parameter.
MAX_EXCLUDE = 1000
#: Most items named by one impression event.
MAX_IMPRESSION_ITEMS = 100
#: Most events in one ``POST /v1/events`` and items in one ``POST /v1/items`` (API.md):
#: the documented request schemas and the defaults of the ``max_batch_*`` settings.
MAX_BATCH_EVENTS = 500
MAX_BATCH_ITEMS = 1000
#: Recent items of a session whose co-occurrence lists are merged (worker and API).
SESSION_ITEMS = 10
