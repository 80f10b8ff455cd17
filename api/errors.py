"""Domain errors of the API and their one JSON shape.

Routes and helpers raise the small ``ApiError`` hierarchy below; ``install_handlers``
maps it, FastAPI's validation errors, Starlette's HTTP errors (404, 405, ...) and any
unexpected exception to ``{"error": {"code", "message"}, "detail": [...]}``
(``schemas.ErrorBody``), so every client sees one shape.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.methods import HeadAsGet, allowed_methods

log = logging.getLogger("streamrec.api")

#: Machine-readable codes of plain HTTP statuses (404 from routing, 405, ...).
STATUS_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    431: "request_header_fields_too_large",
    500: "internal_error",
    503: "unavailable",
}

#: Largest ``input`` echoed back in a validation error entry (bytes of JSON).
_MAX_ECHOED_INPUT = 512


class JsonResponse(JSONResponse):
    """A JSON response rendered with orjson."""

    def render(self, content: Any) -> bytes:
        """The body as orjson writes it (faster than the standard library's encoder)."""
        return orjson.dumps(content)


class ApiError(Exception):
    """Base of every error the API raises on purpose; carries its HTTP mapping."""

    status_code = 500
    code = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        detail: Sequence[Mapping[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.detail = list(detail) if detail is not None else None
        self.headers = dict(headers or {})
        #: Top-level fields added to the body (e.g. the ``event_ids`` of a failed write).
        self.extra: dict[str, Any] = dict(extra or {})


class Unauthorized(ApiError):
    """No API key, or a key that is not configured."""

    status_code = 401
    code = "unauthorized"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": "X-API-Key"})


class Forbidden(ApiError):
    """A valid key whose role does not allow this endpoint."""

    status_code = 403
    code = "forbidden"


class PayloadTooLarge(ApiError):
    """The request body exceeds ``settings.max_body_bytes``."""

    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaType(ApiError):
    """The body is not JSON."""

    status_code = 415
    code = "unsupported_media_type"


class ValidationFailed(ApiError):
    """The request parsed but is invalid; ``detail`` lists every problem."""

    status_code = 422
    code = "validation_error"


class RateLimited(ApiError):
    """A client is over its rate; ``Retry-After`` says when to come back."""

    status_code = 429
    code = "rate_limited"

    def __init__(self, wait_s: float, *, subject: str = "this API key") -> None:
        self.retry_after_s = max(1, math.ceil(wait_s))
        super().__init__(
            f"rate limit exceeded for {subject}; retry after {self.retry_after_s}s",
            headers={"Retry-After": str(self.retry_after_s)},
        )


class ServiceUnavailable(ApiError):
    """A backend cannot take the request now; the client should retry later."""

    status_code = 503
    code = "unavailable"

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, retry_after_s))})


#: Seconds a client is told to wait (``Retry-After``) when Redis could not answer a request
#: that has no fallback: every such 503 (:class:`RedisUnavailable`) says the same.
REDIS_RETRY_AFTER_S = 2


class RedisUnavailable(ServiceUnavailable):
    """Redis could not answer a request that has no fallback (an admin read or write)."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__(f"Redis unavailable: {type(exc).__name__}",
                         retry_after_s=REDIS_RETRY_AFTER_S)


class BrokerUnavailable(ServiceUnavailable):
    """Kafka did not acknowledge in time (nothing was acknowledged to the client)."""

    code = "broker_unavailable"


def error_body(
    code: str, message: str, detail: Sequence[Mapping[str, Any]] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON error body (``schemas.ErrorBody``), plus ``extra`` top-level fields."""
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    if detail is not None:
        body["detail"] = list(detail)
    if extra:
        body.update(extra)
    return body


def error_response(
    status_code: int,
    code: str,
    message: str,
    *,
    detail: Sequence[Mapping[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> JsonResponse:
    """A response carrying :func:`error_body`."""
    return JsonResponse(
        error_body(code, message, detail, extra), status_code=status_code,
        headers=dict(headers or {}),
    )


def _json_safe(value: Any) -> bool:
    try:
        return len(orjson.dumps(value)) <= _MAX_ECHOED_INPUT
    except TypeError:
        return False


def validation_detail(errors: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """FastAPI/pydantic error entries made JSON-safe: ``type``, ``loc``, ``msg``, plus
    ``input`` (when small and JSON) and ``ctx`` (values as text)."""
    detail = []
    for err in errors:
        entry: dict[str, Any] = {
            "type": str(err.get("type", "value_error")),
            "loc": [p if isinstance(p, int) else str(p) for p in err.get("loc", ())],
            "msg": str(err.get("msg", "")),
        }
        if "input" in err and _json_safe(err["input"]):
            entry["input"] = err["input"]
        ctx = err.get("ctx")
        if isinstance(ctx, Mapping) and ctx:
            entry["ctx"] = {
                str(k): v if isinstance(v, int | float | str | bool) else str(v)
                for k, v in ctx.items()
            }
        detail.append(entry)
    return detail


async def _api_error(request: Request, exc: Exception) -> JsonResponse:
    assert isinstance(exc, ApiError)
    return error_response(
        exc.status_code, exc.code, exc.message, detail=exc.detail, headers=exc.headers,
        extra=exc.extra,
    )


def first_problem(detail: Sequence[Mapping[str, Any]]) -> str:
    """``field: what is wrong`` of the first entry (the message a person reads first;
    ``detail`` lists them all), the location's kind (``body``, ``query``, ...) left out."""
    if not detail:
        return "see detail"
    entry = detail[0]
    loc = list(entry.get("loc", []))
    field = ".".join(str(part) for part in loc[1:]) or (str(loc[0]) if loc else "request")
    more = f" (and {len(detail) - 1} more)" if len(detail) > 1 else ""
    return f"{field}: {entry.get('msg', 'invalid')}{more}"


async def _request_validation(request: Request, exc: Exception) -> JsonResponse:
    assert isinstance(exc, RequestValidationError)
    detail = validation_detail(exc.errors())
    # name the parameter and the problem ("invalid query parameter price_min: Input should
    # be a finite number"), not only "invalid": the client reads the message first
    kind = detail[0]["loc"][0] if detail and detail[0]["loc"] else None
    where = f"{kind} parameter" if kind in ("query", "path", "header") else "request"
    return error_response(
        422, "validation_error", f"invalid {where} {first_problem(detail)}", detail=detail
    )


def _routing_message(request: Request, exc: StarletteHTTPException) -> str | None:
    """What routing's bare "Not Found" / "Method Not Allowed" means for this request."""
    if exc.status_code == 404:
        path = request.url.path
        shown = path if len(path) <= 80 else path[:80] + "..."
        return f"no endpoint at {shown!r}; /openapi.json lists the API's paths"
    allow = (exc.headers or {}).get("Allow")
    if exc.status_code == 405 and allow:
        return f"{request.method} is not allowed here; this path accepts {allow}"
    return None


async def _http_error(request: Request, exc: Exception) -> Any:
    assert isinstance(exc, StarletteHTTPException)
    headers = exc.headers
    if exc.status_code == 405 and headers and "Allow" in headers:  # the router's 405
        # Starlette names the methods of the first route of the path only, and no route
        # takes HEAD: see api.methods (only a 405 pays for it, never a GET).
        allowed = allowed_methods(request.app, request.scope)
        if request.method == "HEAD" and "GET" in allowed:
            return HeadAsGet(request.app)
        if allowed:
            headers = {**headers, "Allow": ", ".join(allowed)}
            exc = StarletteHTTPException(405, exc.detail, headers)
    code = STATUS_CODES.get(exc.status_code, "error" if exc.status_code < 500 else "server_error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    if message in ("Not Found", "Method Not Allowed"):  # Starlette's routing, unexplained
        message = _routing_message(request, exc) or message
    return error_response(exc.status_code, code, message, headers=headers)


async def _unexpected(request: Request, exc: Exception) -> JsonResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "internal server error")


def install_handlers(app: FastAPI) -> None:
    """Route every error of ``app`` to the one JSON error shape."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
