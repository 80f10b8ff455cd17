"""An ASGI fast path for the four recommendation ``GET``s.

Profiling under load showed the hot endpoints spending most of their CPU in Starlette
routing and FastAPI's per-request dependency solving, not in serving. This middleware
answers the *well-formed, authorised* requests of those endpoints directly: it parses
the path and query itself, checks the key, calls the same :class:`api.reader.Reader`
and writes the same orjson body. Everything else — any parameter it does not accept
exactly as FastAPI would, a missing/wrong key, another path or method — falls through
unchanged to the FastAPI routes, which stay the canonical (and documented) handlers and
produce every error answer. So the contract has one implementation of each error and
two of the success path, and ``tests/integration/test_fastpath.py`` checks the two
agree.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from api.auth import Role
from api.deps import MAX_EXCLUDE, Services
from api.errors import ApiError, RateLimited, error_response
from api.ranking import MAX_ID_LEN, POPULAR_CHAIN, SIMILAR_CHAIN, TRENDING_CHAIN, user_chain
from api.reader import ListQuery

_N = re.compile(r"[0-9]{1,3}")
_JSON_HEADERS = [(b"content-type", b"application/json")]


class _Route:
    """What ``scope["route"]`` needs for the metrics middleware's route label."""

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path


_USER = _Route("/v1/users/{user_id}/recommendations")
_SIMILAR = _Route("/v1/items/{item_id}/similar")
_POPULAR = _Route("/v1/popular")
_TRENDING = _Route("/v1/trending")


def _query(scope: Scope) -> dict[str, Any] | None:
    """The query parameters the endpoints read, or None to let FastAPI decide."""
    raw = scope.get("query_string", b"")
    params: dict[str, Any] = {"n": 10, "exclude": []}
    if not raw:
        return params
    for name, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
        if name == "n":
            if not _N.fullmatch(value) or not 1 <= int(value) <= 100:
                return None
            params["n"] = int(value)
        elif name == "exclude":
            params["exclude"].append(value)
        elif name in ("context", "item_id", "user_id"):
            if len(value) > (64 if name == "context" else MAX_ID_LEN):
                return None
            if name != "context" and not value:
                return None
            params[name] = value
    return params


def _exclude(values: list[str]) -> frozenset[str] | None:
    """``api.deps.parse_exclude`` without raising: None when FastAPI would refuse."""
    parts = [part for value in values for part in value.split(",") if part]
    if len(parts) > MAX_EXCLUDE or any(len(part) > MAX_ID_LEN for part in parts):
        return None
    ids = {p for part in parts for p in (part, part.strip())}
    ids.discard("")
    return frozenset(ids)


class FastPathMiddleware:
    """Answer well-formed recommendation ``GET``s without the framework's routing."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        query = self._match(scope)
        services: Services | None = getattr(scope["app"].state, "services", None)
        if query is None or services is None:
            await self.app(scope, receive, send)
            return
        key = None
        for name, value in scope["headers"]:
            if name == b"x-api-key":
                key = value.decode("latin-1")
                break
        try:
            rate = services.rate_check(Role.READ, services.keyring.check(key, Role.READ))
        except ApiError:
            await self.app(scope, receive, send)  # 401/403 from the canonical handler
            return
        try:
            body = await services.reader.recommend(replace(query, rate=rate))
        except RateLimited as exc:
            response = error_response(exc.status_code, exc.code, exc.message,
                                      headers=exc.headers)
            await response(scope, receive, send)
            return
        payload = orjson.dumps(body)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [*_JSON_HEADERS,
                                (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})

    @staticmethod
    def _match(scope: Scope) -> ListQuery | None:
        path: str = scope["path"]
        if path == "/v1/popular" or path == "/v1/trending":
            params = _query(scope)
            exclude = _exclude(params["exclude"]) if params is not None else None
            if params is None or exclude is None:
                return None
            popular = path == "/v1/popular"
            scope["route"] = _POPULAR if popular else _TRENDING
            return ListQuery(POPULAR_CHAIN if popular else TRENDING_CHAIN, params["n"],
                             exclude=exclude, blend=False,
                             context="popular" if popular else "trending")
        parts = path.split("/")
        # ["", "v1", "users", id, "recommendations"] / ["", "v1", "items", id, "similar"]
        if len(parts) != 5 or parts[1] != "v1" or not 0 < len(parts[3]) <= MAX_ID_LEN:
            return None
        if parts[2] == "users" and parts[4] == "recommendations":
            params = _query(scope)
            exclude = _exclude(params["exclude"]) if params is not None else None
            if params is None or exclude is None:
                return None
            item_id = params.get("item_id")
            effective, chain = user_chain(params.get("context"), item_id)
            scope["route"] = _USER
            return ListQuery(chain, params["n"], entity=parts[3],
                             anchor=item_id if effective != "home" else None,
                             exclude=exclude, context=effective)
        if parts[2] == "items" and parts[4] == "similar":
            params = _query(scope)
            exclude = _exclude(params["exclude"]) if params is not None else None
            if params is None or exclude is None:
                return None
            scope["route"] = _SIMILAR
            return ListQuery(SIMILAR_CHAIN, params["n"], entity=params.get("user_id"),
                             anchor=parts[3], exclude=exclude, context="similar")
        return None
