"""What the Python client raises: one base class, one class per kind of refusal.

* :class:`InvalidPayload` — the client refused an event or item itself (it would not pass
  the API's schemas), nothing was sent;
* :class:`ApiError` and its subclasses — the API answered with an error status that is
  not worth retrying (4xx), or kept answering a retryable one (429, 5xx) until the retry
  policy gave up; ``status``, ``code``, ``message`` and ``detail`` are the API's;
* :class:`ConnectionFailed` — no answer at all (connection refused, timeout) after every
  retry;
* :class:`DeliveryError` — background batches that could not be delivered, raised by
  ``flush()`` and ``close()`` with the event ids concerned.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import httpx


class StreamrecError(Exception):
    """Base of every error of :mod:`streamrec.client`."""


class ClientClosed(StreamrecError):
    """The client was closed, or (an ``AsyncClient``) used from another event loop than
    the one it first ran on; create a new one."""


class InvalidPayload(StreamrecError, ValueError):
    """An event, identify or item the API would refuse, or a request whose URL is longer
    than the API reads; nothing was sent.

    ``errors`` are pydantic's error entries (``loc``, ``msg``, ``type``).
    """

    def __init__(self, message: str, errors: Sequence[Mapping[str, Any]] = ()) -> None:
        super().__init__(message)
        self.errors = [dict(e) for e in errors]


class ApiError(StreamrecError):
    """The API answered ``status`` with its error body ``{"error": {"code", "message"}}``."""

    def __init__(self, status: int, code: str, message: str, *,
                 detail: list[dict[str, Any]] | None = None,
                 retry_after: str | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail or []
        self.retry_after = retry_after


class BadRequest(ApiError):
    """400, 405, 415 and other 4xx without a class of their own."""


class Unauthorized(ApiError):
    """401: missing or unknown API key."""


class Forbidden(ApiError):
    """403: a valid key of a role that may not use this endpoint."""


class NotFound(ApiError):
    """404."""


class PayloadTooLarge(ApiError):
    """413: the body is over the API's size cap."""


class ValidationFailed(ApiError):
    """422: invalid request; ``detail`` names every problem (per event: ``index``)."""


class RateLimited(ApiError):
    """429 until the retry policy gave up: the key is over its request rate."""


class ServerError(ApiError):
    """5xx until the retry policy gave up."""


class Unavailable(ServerError):
    """503 until the retry policy gave up (e.g. Kafka did not acknowledge)."""


class ConnectionFailed(StreamrecError):
    """No answer from the API (connection error or timeout) after every retry."""


class DeliveryError(StreamrecError):
    """Events that could not be delivered in the background (the API refused them, or the
    retry policy gave up). ``event_ids`` lists them; ``errors`` the underlying errors."""

    def __init__(self, event_ids: Sequence[str], errors: Sequence[StreamrecError]) -> None:
        first = f": {errors[0]}" if errors else ""
        more = f" (and {len(errors) - 1} more errors)" if len(errors) > 1 else ""
        super().__init__(f"{len(event_ids)} event(s) not delivered{first}{more}")
        self.event_ids = list(event_ids)
        self.errors = list(errors)


_BY_STATUS: dict[int, type[ApiError]] = {
    401: Unauthorized, 403: Forbidden, 404: NotFound, 413: PayloadTooLarge,
    422: ValidationFailed, 429: RateLimited, 503: Unavailable,
}


def error_from_response(response: httpx.Response) -> ApiError:
    """The exception for an error answer, carrying the API's code, message and detail."""
    status = response.status_code
    code, message, detail = f"http_{status}", response.reason_phrase or "error", None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            code = str(error.get("code", code))
            message = str(error.get("message", message))
        if isinstance(body.get("detail"), list):
            detail = [d for d in body["detail"] if isinstance(d, dict)]
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else BadRequest)
    return cls(status, code, message, detail=detail,
               retry_after=response.headers.get("Retry-After"))
