"""The tracking key where a browser cannot send a header: ``?key=`` or a body ``"key"``.

A request a page sends while it goes away (the browser SDK's keepalive ``fetch``, or
``navigator.sendBeacon`` where that is missing) cannot set ``X-API-Key`` without a
preflight, so ``POST /v1/events`` and ``POST /v1/identify`` also take the
key as the ``key`` query parameter or as a top-level ``"key"`` field of the JSON body
(in that order; the header, when present, wins). Only tracking keys may travel that way:
an unknown key is a 401, a read or admin key a 403 (:meth:`KeyRing.check_tracking_only`).
No other route looks at either. After the role check the key is authenticated like a
header key, and the request is charged per event against the same per-client tracking
limits (:mod:`api.tracking_limits`) whichever way the key travelled.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import Depends, Query, Request, Security

from api.auth import Role
from api.deps import api_key_header, services_of
from api.errors import Unauthorized
from api.tracking_limits import Client

#: Name of the query parameter and of the body field.
KEY_FIELD = "key"
#: The proxy header uvicorn takes the client address from (``proxy_headers``).
FORWARDED_FOR = "x-forwarded-for"


async def _body_key(request: Request) -> str | None:
    """The body's top-level ``"key"`` string, if the body is a JSON object with one; a
    ``"key"`` that is not a non-empty string is a 401 saying so (not "missing key")."""
    try:
        payload = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        return None  # the route answers the parse error
    if not isinstance(payload, dict) or KEY_FIELD not in payload:
        return None
    value = payload[KEY_FIELD]
    if not isinstance(value, str) or not value:
        raise Unauthorized(f'the body\'s "{KEY_FIELD}" must be a non-empty string '
                           f"(a tracking key), got {type(value).__name__} {str(value)[:40]!r}")
    return value


async def tracking_access(
    request: Request,
    header_key: Annotated[str | None, Security(api_key_header)],
    key: Annotated[str | None, Query(
        max_length=1024,
        description="tracking key, for requests that cannot set headers (a page's keepalive "
                    "fetch or `sendBeacon` while it goes away); "
                    "tracking keys only, X-API-Key wins when both are sent")] = None,
) -> Client:
    """Admit tracking (or admin) keys from the header, or tracking keys from ``?key=`` or
    the body (401/403 otherwise); who is sending, for the per-client limits the ingestor
    charges per event."""
    keyring = services_of(request).keyring
    presented = header_key
    if not presented and keyring.enabled:
        presented = key or await _body_key(request)
        if presented:
            keyring.check_tracking_only(presented)
    ident, admin = keyring.authenticate(presented, Role.TRACKING)
    return Client(key_id=ident, admin=admin,
                  address=request.client.host if request.client else None,
                  forwarded=FORWARDED_FOR in request.headers)


#: The tracking routes' dependency: the admitted client.
TrackingClient = Annotated[Client, Depends(tracking_access)]


def without_key(payload: Any) -> Any:
    """The parsed body without its ``"key"`` field (a credential, not part of the event)."""
    if isinstance(payload, dict) and KEY_FIELD in payload:
        payload = {k: v for k, v in payload.items() if k != KEY_FIELD}
    return payload
