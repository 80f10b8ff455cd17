"""Request bodies: a hard size cap for every request, and JSON parsing into schema models.

``BodyLimitMiddleware`` answers 413 before any parsing: at once when ``Content-Length``
is too large, else while reading the stream (chunked uploads), counting bytes. Routes
with a JSON body call :func:`read_json` and :func:`parse_model`, so a non-JSON body is a
415/422 with the one error shape, whatever the client's ``Content-Type`` habits
(``navigator.sendBeacon`` posts JSON as ``text/plain``, ``curl -d`` as form data: a
body that parses as JSON is accepted). A body that does not parse and declared a
``charset`` other than UTF-8 is a 415 naming it. Bodies are never decompressed: a
``Content-Encoding`` other than ``identity`` is a 415 naming it (RFC 7694), not a
"not valid JSON" 422 about the compressed bytes.
"""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import (
    UnsupportedMediaType,
    ValidationFailed,
    error_response,
    first_problem,
    validation_detail,
)
from core.limits import MAX_JSON_DEPTH, json_depth

M = TypeVar("M", bound=BaseModel)

#: Content types accepted as JSON, besides anything ending in ``+json``.
JSON_TYPES = frozenset({"application/json", "text/plain", "text/json", ""})


class BodyLimitMiddleware:
    """Reject bodies larger than ``max_bytes`` with 413, then replay the buffered body."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._too_large(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413,
            "payload_too_large",
            f"request body larger than {self.max_bytes} bytes",
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _media_type(request: Request) -> str:
    raw = request.headers.get("content-type", "")
    return raw.split(";", 1)[0].strip().lower()


#: ``charset`` values of a body read as JSON (RFC 8259: JSON is exchanged as UTF-8).
UTF8_CHARSETS = frozenset({"", "utf-8", "utf8"})


def _charset(request: Request) -> str:
    """The ``charset`` parameter of ``Content-Type``, lower case ("" when absent)."""
    for param in request.headers.get("content-type", "").split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"').lower()
    return ""


#: ``Content-Encoding`` values of a body read as is.
IDENTITY_CODINGS = frozenset({"", "identity"})


async def read_json(request: Request) -> Any:
    """The request body parsed as JSON (orjson).

    A body that parses is accepted whatever ``Content-Type`` says (SDKs and beacons are
    sloppy about it). One that does not is a 422 when it claimed to be JSON (or claimed
    nothing; "not UTF-8" when its bytes are not), and a 415 when it declared another
    media type (form data, XML, ...), a ``charset`` other than UTF-8 or a
    ``Content-Encoding`` (gzip, ...): bodies are read as uncompressed UTF-8 only.
    """
    coding = request.headers.get("content-encoding", "").strip().lower()
    if coding not in IDENTITY_CODINGS:
        raise UnsupportedMediaType(
            f"Content-Encoding {coding!r} is not supported; send the JSON body "
            "uncompressed", headers={"Accept-Encoding": "identity"})
    body = await request.body()
    media = _media_type(request)
    declared_json = media in JSON_TYPES or media.endswith("+json")
    if not body.strip():
        raise ValidationFailed(
            "the request body is empty",
            detail=[{"type": "missing", "loc": ["body"], "msg": "Field required"}],
        )
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if not declared_json:
            raise UnsupportedMediaType(
                f"expected a JSON body (Content-Type: application/json), got {media!r}"
            ) from exc
        charset = _charset(request)
        if charset not in UTF8_CHARSETS:
            raise UnsupportedMediaType(
                f"charset {charset!r} is not supported; send the JSON body as UTF-8"
            ) from exc
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as bad:
            raise ValidationFailed(
                "the request body is not UTF-8 (JSON is read as UTF-8 only)",
                detail=[{"type": "json_invalid", "loc": ["body", bad.start],
                         "msg": "JSON decode error", "ctx": {"error": "invalid UTF-8"}}],
            ) from exc
        if exc.msg == ORJSON_TOO_DEEP:  # valid JSON, deeper than orjson reads
            raise _too_deep() from exc
        raise ValidationFailed(
            f"the request body is not valid JSON: {exc.msg} (at byte {exc.pos})",
            detail=[
                {"type": "json_invalid", "loc": ["body", exc.pos], "msg": "JSON decode error",
                 "ctx": {"error": exc.msg}}
            ],
        ) from exc
    if json_depth(payload, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise _too_deep()
    return payload


#: ``JSONDecodeError.msg`` of a body nested deeper than orjson parses (1,024 levels).
ORJSON_TOO_DEEP = "depth limit exceeded"


def _too_deep() -> ValidationFailed:
    """The 422 of a body nested more than :data:`MAX_JSON_DEPTH` levels deep, whether it
    is 33 levels or 10,000 (beyond orjson's limit it is still JSON, only too deep)."""
    return ValidationFailed(
        f"the request body is nested more than {MAX_JSON_DEPTH} levels deep",
        detail=[{"type": "too_deep", "loc": ["body"],
                 "msg": f"JSON nested more than {MAX_JSON_DEPTH} levels deep"}],
    )


def parse_model(model: type[M], payload: Any, context: dict[str, Any] | None = None) -> M:
    """Validate a parsed JSON body as ``model`` (with a pydantic validation ``context``);
    422 with FastAPI-style detail if invalid."""
    try:
        return model.model_validate(payload, context=context)
    except ValidationError as exc:
        detail = validation_detail(exc.errors())
        for entry in detail:
            entry["loc"] = ["body", *entry["loc"]]
        raise ValidationFailed(f"invalid {model.__name__}: {first_problem(detail)}",
                               detail=detail) from exc


def json_body_openapi(*schema_names: str, example: Any = None) -> dict[str, Any]:
    """``openapi_extra`` declaring a JSON request body of one of the named component
    schemas (registered by ``api.app``), since these routes parse the body themselves."""
    refs = [{"$ref": f"#/components/schemas/{name}"} for name in schema_names]
    schema = refs[0] if len(refs) == 1 else {"anyOf": refs}
    content: dict[str, Any] = {"schema": schema}
    if example is not None:
        content["example"] = example
    return {"requestBody": {"required": True, "content": {"application/json": content}}}
