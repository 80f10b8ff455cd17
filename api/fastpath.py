"""An ASGI fast path for the four recommendation ``GET``s (and their ``HEAD``), in front
of the whole app.

Profiling under load showed the hot endpoints spending most of their CPU in the
framework rather than in serving: Starlette routing and FastAPI's per-request dependency
solving first, then the middleware layers every request passes (server-error catcher,
telemetry, body limits, metrics, each wrapping ``send``). :class:`FastPath` answers the
*well-formed, authorised* requests of those endpoints before any of that: it parses the
path and query itself, checks the key, calls the same :class:`api.reader.Reader`, writes
the same orjson body and records the same metrics. Everything else — any parameter it
does not accept exactly as FastAPI would, a missing/wrong key, another path or method, an
unexpected error — falls through unchanged to the FastAPI app, whose routes stay the
canonical (and documented) handlers and produce every error answer but the 429.

With CORS configured the CORS middleware owns the response headers, so the fast path
then runs innermost instead (:class:`FastPathMiddleware`, inside CORS and metrics), as it
did before it moved to the front. So the
contract has one implementation of each error and two of the success path, and
``tests/integration/api/test_fastpath.py`` checks the two agree.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from api.auth import Role
from api.deps import Services
from api.errors import ApiError, RateLimited, error_response
from api.filters import PARAMS as MERCH_PARAMS
from api.filters import FallThrough, parse_fast
from api.list_query import ListQuery
from api.metrics import Metrics
from api.ranking import POPULAR_CHAIN, SIMILAR_CHAIN, TRENDING_CHAIN, user_chain
from api.utf8_guard import undecodable
from core.limits import DEFAULT_N, MAX_CONTEXT_LEN, MAX_EXCLUDE, MAX_ID_LEN, MAX_N, MIN_N

log = logging.getLogger("streamrec.api")

_N = re.compile(rf"[0-9]{{1,{len(str(MAX_N))}}}")
_JSON_HEADERS = [(b"content-type", b"application/json")]


class _RouteLabel:
    """What ``scope["route"]`` needs for the metrics middleware's route label."""

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path


_USER = "/v1/users/{user_id}/recommendations"
_SIMILAR = "/v1/items/{item_id}/similar"
_POPULAR = "/v1/popular"
_TRENDING = "/v1/trending"


def _query(scope: Scope) -> dict[str, Any] | None:
    """The query parameters the endpoints read, or None to let FastAPI decide."""
    raw = scope.get("query_string", b"")
    params: dict[str, Any] = {"n": DEFAULT_N, "exclude": [], "merch": None}
    if not raw:
        return params
    merch: dict[str, list[str]] = {}
    for name, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
        if name == "n":
            if not _N.fullmatch(value) or not MIN_N <= int(value) <= MAX_N:
                return None
            params["n"] = int(value)
        elif name == "exclude":
            params["exclude"].append(value)
        elif name in ("context", "item_id", "user_id"):
            if len(value) > (MAX_CONTEXT_LEN if name == "context" else MAX_ID_LEN):
                return None
            if name != "context" and not value:
                return None
            params[name] = value
        elif name in MERCH_PARAMS:
            merch.setdefault(name, []).append(value)
    if merch:
        try:
            params["merch"] = parse_fast(merch)
        except FallThrough:
            return None
    return params


def _exclude(values: list[str]) -> frozenset[str] | None:
    """``api.deps.parse_exclude`` without raising: None when FastAPI would refuse."""
    parts = [part for value in values for part in value.split(",") if part]
    if len(parts) > MAX_EXCLUDE or any(len(part) > MAX_ID_LEN for part in parts):
        return None
    ids = {p for part in parts for p in (part, part.strip())}
    ids.discard("")
    return frozenset(ids)


class FastPath:
    """Answers well-formed recommendation ``GET``s (and ``HEAD``s) of ``app`` without the
    framework."""

    def __init__(self, app: FastAPI, metrics: Metrics | None) -> None:
        """``metrics``: record requests here (in front of the app), or None when the
        app's ``MetricsMiddleware`` sees them (innermost placement)."""
        self.app = app
        self.metrics = metrics
        self._counters: dict[tuple[str, str, int], Any] = {}
        self._timers: dict[tuple[str, str], Any] = {}

    async def answer(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Answer the request and return True, or return False having sent nothing."""
        if scope["type"] != "http":
            return False
        method = scope["method"]
        if (method != "GET" and method != "HEAD") or undecodable(scope):
            return False  # (a URL that is not UTF-8: api.utf8_guard's 422)
        match = self._match(scope)
        services: Services | None = getattr(self.app.state, "services", None)
        if match is None or services is None:
            return False
        route, query = match
        key = None
        for name, value in scope["headers"]:
            if name == b"x-api-key":
                key = value.decode("latin-1")
                break
        metrics = self.metrics
        if metrics is None:
            scope["route"] = _RouteLabel(route)  # for the metrics middleware
        else:
            metrics.in_flight.inc()
        start = time.perf_counter()
        try:
            try:
                rate = services.rate_check(Role.READ, services.keyring.check(key, Role.READ))
            except ApiError:
                return False  # 401/403 from the canonical handler
            try:
                body = await services.reader.recommend(
                    replace(query, rate=rate, probe=method == "HEAD"))
            except RateLimited as exc:
                response = error_response(exc.status_code, exc.code, exc.message,
                                          headers=exc.headers)
                await response(scope, receive, send)
                self._done(method, route, exc.status_code, start)
                return True
            except Exception:
                log.exception("fast path failed; the routes answer instead")
                return False
            payload = orjson.dumps(body)
            await send({"type": "http.response.start", "status": 200,
                        "headers": [*_JSON_HEADERS,
                                    (b"content-length", str(len(payload)).encode())]})
            # (a HEAD's body is the server's to drop, as for the routes: api.methods)
            await send({"type": "http.response.body", "body": payload})
            self._done(method, route, 200, start)
            return True
        finally:
            if metrics is not None:
                metrics.in_flight.dec()

    def _done(self, method: str, route: str, status: int, start: float) -> None:
        """What ``api.metrics.MetricsMiddleware`` records, with the label children cached."""
        if self.metrics is None:
            return
        counter = self._counters.get((method, route, status))
        if counter is None:
            counter = self.metrics.requests.labels(method, route, str(status))
            self._counters[(method, route, status)] = counter
        timer = self._timers.get((method, route))
        if timer is None:
            timer = self._timers[(method, route)] = self.metrics.latency.labels(method, route)
        counter.inc()
        timer.observe(time.perf_counter() - start)

    @staticmethod
    def _match(scope: Scope) -> tuple[str, ListQuery] | None:
        path: str = scope["path"]
        if path == "/v1/popular" or path == "/v1/trending":
            params = _query(scope)
            exclude = _exclude(params["exclude"]) if params is not None else None
            if params is None or exclude is None:
                return None
            popular = path == "/v1/popular"
            return (_POPULAR if popular else _TRENDING,
                    ListQuery(POPULAR_CHAIN if popular else TRENDING_CHAIN, params["n"],
                              exclude=exclude, raw_scores=True,
                              context="popular" if popular else "trending",
                              merch=params["merch"]))
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
            return _USER, ListQuery(chain, params["n"], entity=parts[3],
                                    anchor=item_id if effective != "home" else None,
                                    exclude=exclude, context=effective,
                                    merch=params["merch"])
        if parts[2] == "items" and parts[4] == "similar":
            params = _query(scope)
            exclude = _exclude(params["exclude"]) if params is not None else None
            if params is None or exclude is None:
                return None
            return _SIMILAR, ListQuery(SIMILAR_CHAIN, params["n"],
                                       entity=params.get("user_id"), anchor=parts[3],
                                       exclude=exclude, context="similar",
                                       merch=params["merch"])
        return None


class FastPathMiddleware:
    """The fast path as an innermost middleware (used when CORS is configured)."""

    def __init__(self, app: ASGIApp, fast_path: FastPath) -> None:
        self.app = app
        self.fast_path = fast_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not await self.fast_path.answer(scope, receive, send):
            await self.app(scope, receive, send)
