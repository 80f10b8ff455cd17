"""HEAD on every ``GET`` path, and a 405 whose ``Allow`` names every method of its path.

RFC 9110 (9.3.2): a server that supports ``GET`` on a resource should support ``HEAD``
there too, answered as the ``GET`` (status and headers) without the body. FastAPI's
routes take only the methods they are declared with, so a ``HEAD`` of a ``GET`` route
reaches the router as a method the path does not take; Starlette's router then raises a
405 naming only the methods of the *first* route whose path matched (``PATCH
/v1/items/a`` said ``Allow: PUT``, though ``DELETE`` works there too).

Both are mended where that 405 is answered (:func:`api.errors.install_handlers`), so a
``GET`` pays nothing for them: :func:`allowed_methods` asks every route which methods it
takes at the request's path, and a ``HEAD`` of a path that takes ``GET`` is routed again
as that ``GET`` (:class:`HeadAsGet`). The server drops the body of an answer to a
``HEAD`` (uvicorn and httpx's ASGI transport both do, as Starlette's own ``HEAD`` routes
rely on), so the headers, ``Content-Length`` included, are the ``GET``'s. The fast path
answers its four ``GET``s' ``HEAD`` itself (:mod:`api.fastpath`).
"""

from __future__ import annotations

from typing import Any

from fastapi.middleware.asyncexitstack import AsyncExitStackMiddleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.routing import Match
from starlette.types import Receive, Scope, Send

#: The methods a path may take, in the order ``Allow`` lists them.
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
#: Scope key of a ``HEAD`` routed as its ``GET`` (:class:`HeadAsGet`): a route that has
#: side effects beyond its answer skips them (:func:`is_head`).
HEAD_KEY = "streamrec.head"


def allowed_methods(app: Any, scope: Scope) -> list[str]:
    """The methods some route of ``app`` takes at ``scope``'s path (``HEAD`` wherever
    ``GET``), in :data:`METHODS` order; empty when no route has that path."""
    routes = app.router.routes
    allowed = [method for method in METHODS
               if any(route.matches({**scope, "method": method})[0] is Match.FULL
                      for route in routes)]
    if "GET" in allowed and "HEAD" not in allowed:
        allowed.insert(allowed.index("GET") + 1, "HEAD")
    return allowed


class HeadAsGet:
    """An ASGI answer to a ``HEAD`` whose path takes ``GET``: the ``GET`` routed anew
    through the app's routes and error handlers (what sits inside the app's middleware),
    its body left for the server to drop."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Route ``scope`` as a ``GET`` (a copy: the server reads ``HEAD`` in its own)."""
        routed = ExceptionMiddleware(AsyncExitStackMiddleware(self.app.router),
                                     handlers=dict(self.app.exception_handlers))
        get = {**scope, "method": "GET", HEAD_KEY: True}
        try:
            await routed(get, receive, send)
        finally:
            if "route" in get:  # the metrics middleware labels the request by it
                scope["route"] = get["route"]


def is_head(scope: Scope) -> bool:
    """True for a ``HEAD`` that :class:`HeadAsGet` routes as its ``GET``."""
    return bool(scope.get(HEAD_KEY))
