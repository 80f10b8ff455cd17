"""How the Python client puts values on the wire: ids as path segments, query parameters,
and request bodies sized to what the API takes.

The API answers a body over its cap (``STREAMREC_MAX_BODY_BYTES``, 1 MiB by default) with
413 at once and closes the connection while the client is still sending, which the client
mostly sees as a broken connection, not as the 413. So the client never sends such a body:
it splits catalog writes and event batches by their encoded size first.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from core.limits import MAX_URL_BYTES
from streamrec.client.errors import InvalidPayload

QueryValue = str | int | float | bool | Sequence[str] | None

#: Bytes of a body besides its list of entries (``{"items":[...]}``), rounded up.
ENVELOPE_BYTES = 32


def checked_base_url(url: str) -> str:
    """The API's address as the client keeps it: ``http://`` or ``https://`` with a host (a
    path prefix, as behind a proxy, stays; trailing slashes go). Anything else is a
    ``ValueError`` at once: httpx would refuse it as a transport error on every request,
    which the retry rule retried for about a minute before ``ConnectionFailed``."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ValueError(f"base_url {url!r}: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"base_url must be http://HOST[:PORT][/PREFIX] or https://..., "
                         f"not {url!r}")
    return url.rstrip("/")


def build(http: httpx.AsyncClient, method: str, path: str, *, content: bytes | None,
          params: Mapping[str, str], headers: Mapping[str, str]) -> httpx.Request:
    """One request, built once (each retry sends these very bytes). A URL longer than the
    API reads (``MAX_URL_BYTES``, path and query: it answers 414) is refused here with
    :class:`InvalidPayload`, nothing sent; httpx's own refusal of longer ones too."""
    try:
        request = http.build_request(method, path, content=content, params=params,
                                     headers=headers)
    except httpx.InvalidURL as exc:
        raise InvalidPayload(f"{method} {path[:80]}: {exc}") from None
    except UnicodeEncodeError:  # a lone surrogate in a parameter: no URL can carry it
        raise InvalidPayload(f"{method} {path[:80]}: a parameter is not valid Unicode "
                             "(a lone surrogate): no URL can carry it") from None
    size = len(request.url.raw_path)
    if size > MAX_URL_BYTES:
        raise InvalidPayload(f"{method} {path[:80]}: the URL is {size} bytes; the API "
                             f"reads at most {MAX_URL_BYTES}")
    return request


def segment(identifier: str) -> str:
    """An id as one path segment: percent-encoded, ``.``/``..`` too (httpx would resolve
    them as dot segments, sending ``/v1/users/../recommendations`` to ``/v1/recommendations``).
    An id that is not valid Unicode (a lone surrogate) is :class:`InvalidPayload`, as
    ``track`` refuses it, not a bare ``UnicodeEncodeError``."""
    try:
        return quote(identifier, safe="") if identifier.strip(".") else "%2E" * len(identifier)
    except UnicodeEncodeError:
        raise InvalidPayload(f"id {identifier[:40]!r} is not valid Unicode (a lone "
                             "surrogate): no URL can carry it") from None


def id_list(ids: Sequence[str] | None) -> Any:
    """``item_ids`` as sent: a list, or left as given when it is None or one string (the
    schema then refuses it, instead of ``list("sku-1")`` making an id of each letter)."""
    return ids if ids is None or isinstance(ids, str) else list(ids)


def query(params: Mapping[str, QueryValue]) -> dict[str, str]:
    """Query parameters as the API reads them: lists comma-separated, booleans lower-case."""
    out: dict[str, str] = {}
    for name, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            out[name] = "true" if value else "false"
        elif isinstance(value, str | int | float):
            out[name] = str(value)
        else:
            out[name] = ",".join(str(v) for v in value)
    return out


def too_large(entries: Sequence[Any], max_bytes: int) -> bool:
    """Whether a body listing ``entries`` would be over ``max_bytes`` as JSON."""
    return len(orjson.dumps(list(entries))) + ENVELOPE_BYTES > max_bytes


def chunks(entries: Sequence[Any], most: int, max_bytes: int) -> Iterator[list[Any]]:
    """Runs of ``entries``, in order, of at most ``most`` entries whose body stays within
    ``max_bytes`` (an entry larger than that on its own goes alone)."""
    chunk: list[Any] = []
    size = ENVELOPE_BYTES
    for entry in entries:
        grows = len(orjson.dumps(entry)) + 1  # the comma
        if chunk and (len(chunk) >= most or size + grows > max_bytes):
            yield chunk
            chunk, size = [], ENVELOPE_BYTES
        chunk.append(entry)
        size += grows
    if chunk:
        yield chunk
