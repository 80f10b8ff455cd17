"""uvicorn's httptools protocol with the API's JSON error body and a bound on the head.

uvicorn answers a request that its HTTP parser rejects before the app sees it (an
unknown method, a control character in a header value, a URL over 64 KiB,
``Content-Length`` together with ``Transfer-Encoding``, ...) with a text/plain 400
"Invalid HTTP request received.", and with httptools it buffers a request line and
headers of any size (an 8 MB header was accepted). :class:`JsonHttpToolsProtocol`
answers those requests with ``{"error": {"code", "message"}}`` like every other error:
414 for a URL over ``core.limits.MAX_URL_BYTES``, 431 for a head (request line and
headers) over ``MAX_HEAD_BYTES``, refused while it arrives so it is never buffered whole
(a head that follows a request ending inside a network read counts from the next read,
so a whole request that arrives in one read is never mistaken for a large head), and
400 naming the parser's complaint for anything else malformed.

A request's head and body must also arrive within ``core.limits.REQUEST_READ_TIMEOUT_S``
of the connection's start (its first request) or of the request's first byte (the next
ones; uvicorn's keep-alive timeout covers the wait between requests): else a 408 and the
connection is closed (quietly, when no byte of a request came). Without it a client that
sent part of a body and then nothing held the connection and up to ``max_body_bytes`` of
buffer for ever.

On a graceful shutdown (SIGTERM, as ``up --restart`` stops an API process once its
replacement answers) uvicorn closes at once every connection with no request in progress.
A connection accepted just before the listener closed has its first request on the way,
and its client saw "Server disconnected without sending a response": one lost request
per restart now and then. Such a connection (no request yet) gets
``FIRST_REQUEST_GRACE_S`` for it and is answered with ``connection: close``; idle
keep-alive connections still close at once, as HTTP/1.1 allows.
"""

from __future__ import annotations

import asyncio
import sys
from http import HTTPStatus
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api.errors import STATUS_CODES, error_body
from api.metrics import ANSWERED_KEY
from core.limits import MAX_HEAD_BYTES, MAX_URL_BYTES, REQUEST_READ_TIMEOUT_S

#: Seconds a connection that has sent no request yet has for its first one once a
#: graceful shutdown began (its client connected before the listener closed).
FIRST_REQUEST_GRACE_S = 1.0


class JsonHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` whose own refusals are JSON and whose request head is bounded."""

    _in_head = True  # a connection starts with a request head
    _head_bytes = 0
    _ended_in_read = False  # a request ended inside the read being parsed
    _refusal: tuple[int, str, str] | None = None
    _read_timer: asyncio.TimerHandle | None = None
    _begun = False  # a byte of the request being read has arrived
    _draining = False  # a graceful shutdown began: answer the request at hand, then close
    #: Seconds a request's head and body have to arrive in (tests shorten it).
    read_timeout_s = REQUEST_READ_TIMEOUT_S
    #: Seconds a connection with no request yet has once a shutdown began (tests shorten it).
    first_request_grace_s = FIRST_REQUEST_GRACE_S

    def connection_made(self, transport: Any) -> None:
        """A new connection: its first request must arrive within the read deadline."""
        super().connection_made(transport)
        self._arm_read_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        """The connection is gone: no deadline left to enforce."""
        self._disarm_read_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Parse ``data``; refuse a head that grew past its bound without ending."""
        self._ended_in_read = False
        super().data_received(data)
        if not self._in_head or self.transport.is_closing():
            return
        # Bytes of a head that began after a request ended inside this read are not
        # counted: no overcount of that request (its body, or all of it when a whole
        # request came in one read); the next read of the same head counts in full.
        self._head_bytes = 0 if self._ended_in_read else self._head_bytes + len(data)
        refusal = self._too_large(self._head_bytes)
        if refusal is not None:
            self._send_error(*refusal)

    def on_message_begin(self) -> None:
        """A new request starts: its head is counted from zero."""
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0
        self._refusal = None
        self._begun = True
        if self._read_timer is None:  # the first request keeps the connection's deadline
            self._arm_read_deadline()

    def on_headers_complete(self) -> None:
        """The head is complete: refuse it if too large, else hand it to the app."""
        self._in_head = False
        size = len(self.url) + sum(len(k) + len(v) + 4 for k, v in self.headers)
        self._refusal = self._too_large(size)
        if self._refusal is not None:
            raise ValueError(self._refusal[2])  # uvicorn answers via send_400_response
        super().on_headers_complete()
        if self._draining and self.cycle is not None:
            self.cycle.keep_alive = False  # answered, then closed: the server is stopping

    def shutdown(self) -> None:
        """A graceful shutdown began: a connection that never sent a request gets
        ``FIRST_REQUEST_GRACE_S`` for its first one (it is answered, then closed); the
        others close as uvicorn closes them (idle now, or after their response)."""
        self._draining = True
        if self.cycle is None and not self.transport.is_closing():
            self.loop.call_later(self.first_request_grace_s, self._close_if_idle)
            return
        super().shutdown()

    def _close_if_idle(self) -> None:
        """The shutdown's grace is over: close unless a request is being answered."""
        if self.cycle is None or self.cycle.response_complete:
            self.transport.close()

    def on_message_complete(self) -> None:
        """The request's body ended: the next bytes are the next request's head."""
        super().on_message_complete()
        self._in_head = True
        self._head_bytes = 0
        self._ended_in_read = True
        self._begun = False
        self._disarm_read_deadline()

    def _arm_read_deadline(self) -> None:
        self._disarm_read_deadline()
        self._read_timer = self.loop.call_later(self.read_timeout_s, self._read_timed_out)

    def _disarm_read_deadline(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _read_timed_out(self) -> None:
        """The request did not arrive in time: 408 (unless the app already answered it,
        or no byte of a request came), then close; an app waiting for the rest of the
        body sees a disconnect."""
        self._read_timer = None
        if self.transport.is_closing():
            return
        if not self._begun:  # nothing of a request came: close quietly, as idle
            self.transport.close()
            return
        cycle = self.cycle  # in a head, still the previous request's
        if not self._in_head and cycle is not None and cycle.response_started:
            self.transport.close()
            return
        if not self._in_head and cycle is not None:
            # The app, waiting for the body, sees a disconnect: its metrics count this 408.
            scope: dict[str, Any] = cycle.scope  # type: ignore[assignment]
            scope[ANSWERED_KEY] = 408
        self._send_error(408, STATUS_CODES[408],
                         f"the request did not arrive within {self.read_timeout_s:g} s")

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request its parser refused, as the API's JSON error."""
        refusal = self._refusal or self._too_large(0)
        if refusal is None:
            exc = sys.exception()  # the parser's error that uvicorn is handling
            reason = str(exc.__context__ or exc) if exc is not None else msg
            refusal = (400, STATUS_CODES[400], f"the request is not valid HTTP/1.1 ({reason})")
        self._send_error(*refusal)

    def _too_large(self, head_bytes: int) -> tuple[int, str, str] | None:
        """The refusal for a URL or head over its bound, if it is."""
        url_bytes = len(self.url) if hasattr(self, "url") else 0
        if url_bytes > MAX_URL_BYTES:
            return (414, STATUS_CODES[414],
                    f"the request URL (path and query) is longer than {MAX_URL_BYTES} bytes")
        if head_bytes > MAX_HEAD_BYTES:
            return (431, STATUS_CODES[431],
                    f"the request line and headers are larger than {MAX_HEAD_BYTES} bytes")
        return None

    def _send_error(self, status: int, code: str, message: str) -> None:
        """Write ``{"error": {"code", "message"}}`` with ``status`` and close."""
        body = orjson.dumps(error_body(code, message))
        head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}".encode()]
        head += [name + b": " + value for name, value in self.server_state.default_headers]
        head += [b"content-type: application/json",
                 b"content-length: " + str(len(body)).encode(), b"connection: close"]
        self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        self.transport.close()
