"""OpenAPI fragments shared by the routers: error responses and path parameters."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path
from pydantic import AfterValidator
from starlette.convertors import Convertor, register_url_convertor

from core.limits import MAX_ID_LEN
from schemas import ErrorBody
from schemas.common import valid_id


class IdConvertor(Convertor[str]):
    """``{item_id:id}`` in a route path: any id, ``/`` included (API.md allows
    any string; a client percent-encodes it as ``%2F``). Starlette's default segment
    stops at ``/``, which made such ids unreachable (404) on every id path. Any character
    at all, newlines too: with ``.+`` the route's ``$`` matched before a trailing newline,
    so ``DELETE /v1/users/u1%0A`` forgot ``u1`` (and ``PUT /v1/items/a%0A`` wrote ``a``)
    instead of refusing the id with a 422, and an id with a newline inside was a 404.
    An empty id matches too, so that the route's own check answers it (422 naming the
    parameter): with ``+``, ``GET /v1/items//similar`` fell to ``PUT``/``DELETE
    /v1/items/{item_id}`` (``item_id="/similar"``) and was a 405 "Method Not Allowed"."""

    regex = r"[\s\S]*"

    def convert(self, value: str) -> str:
        """The id as it appears in the decoded path."""
        return value

    def to_string(self, value: str) -> str:
        """The id back into a path (``url_path_for``)."""
        return value


register_url_convertor("id", IdConvertor())

_ERRORS: dict[int, tuple[str, dict[str, Any]]] = {
    401: ("Missing or unknown API key",
          {"error": {"code": "unauthorized", "message": "missing X-API-Key header"}}),
    403: ("The API key's role may not use this endpoint",
          {"error": {"code": "forbidden",
                     "message": "this API key may not use this endpoint (needs the read role)"}}),
    413: ("Request body too large",
          {"error": {"code": "payload_too_large",
                     "message": "request body larger than 1048576 bytes"}}),
    415: ("Body is not JSON",
          {"error": {"code": "unsupported_media_type",
                     "message": "expected a JSON body (Content-Type: application/json)"}}),
    422: ("Invalid request; `detail` lists every problem (per event: `index`)",
          {"error": {"code": "validation_error",
                     "message": "1 of 2 events invalid; none were accepted: event 1, "
                                "item_id: Value error, item_id is required for a view event"},
           "detail": [{"index": 1, "loc": ["item_id"], "type": "value_error",
                       "msg": "Value error, item_id is required for a view event"}]}),
    429: ("This API key is over its request rate; retry after `Retry-After` seconds",
          {"error": {"code": "rate_limited",
                     "message": "rate limit exceeded for this API key; retry after 1s"}}),
    503: ("Kafka did not acknowledge in time; nothing was acknowledged, retry after "
          "`Retry-After` seconds",
          {"error": {"code": "broker_unavailable",
                     "message": "Kafka did not acknowledge within 5s; retry later"}}),
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries documenting the JSON error body for these statuses."""
    responses: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        description, example = _ERRORS[code]
        responses[code] = {
            "model": ErrorBody,
            "description": description,
            "content": {"application/json": {"example": example}},
        }
        if code in (429, 503):
            responses[code]["headers"] = {
                "Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}
            }
    return responses


ItemIdPath = Annotated[
    str, Path(min_length=1, max_length=MAX_ID_LEN, description="item id", examples=["sku-1"])
]
#: The id of an item being written: the id rule of every written id (1–256 characters, no
#: control characters), so a catalog write is a 422, never a record the topic refuses.
WrittenItemIdPath = Annotated[
    str,
    Path(min_length=1, max_length=MAX_ID_LEN, description=f"item id: 1 to {MAX_ID_LEN} characters, "
         "no control characters", examples=["sku-1"]),
    AfterValidator(valid_id),
]
#: Any other id a write names (a promotion, a user to forget): the same id rule.
WrittenIdPath = Annotated[
    str,
    Path(min_length=1, max_length=MAX_ID_LEN, description=f"1 to {MAX_ID_LEN} characters, no "
         "control characters", examples=["u42"]),
    AfterValidator(valid_id),
]
UserIdPath = Annotated[
    str,
    Path(min_length=1, max_length=MAX_ID_LEN, description="user or anonymous id", examples=["u42"]),
]
