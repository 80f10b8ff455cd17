"""URLs whose percent-escapes do not decode to UTF-8 are refused with a 422.

The server decodes a percent-escaped path or query with replacement characters, so
``/v1/items/a%FFb`` and ``/v1/items/a%FEb`` both named the id ``a\\ufffdb``: two ids a
client told apart were stored, served and forgotten as one. API.md's ids are strings,
which such bytes are not; :class:`Utf8Guard` answers them before any route (the
recommendation fast path lets them through to it) with a 422 saying which part.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import error_response


def _utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def undecodable(scope: Scope) -> str | None:
    """``"path"`` or ``"query"`` when that part of the request's URL percent-decodes to
    bytes that are not UTF-8; None otherwise (the common case costs a byte search)."""
    raw = (scope.get("raw_path") or b"").partition(b"?")[0]  # some servers keep the query
    if b"%" in raw and not _utf8(unquote_to_bytes(raw)):
        return "path"
    query = scope.get("query_string") or b""
    if b"%" in query and not _utf8(unquote_to_bytes(query.replace(b"+", b" "))):
        return "query"
    return None


class Utf8Guard:
    """Middleware: a 422 for a URL that is not UTF-8 once percent-decoded."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        part = undecodable(scope) if scope["type"] == "http" else None
        if part is None:
            await self.app(scope, receive, send)
            return
        message = f"the URL's {part} is not UTF-8 once percent-decoded"
        response = error_response(422, "validation_error", message, detail=[
            {"loc": [part], "msg": message, "type": "string_unicode"}])
        await response(scope, receive, send)
